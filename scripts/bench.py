"""Benchmark: how fast a rendered stack gets healthy, what `inv` adds, and backups.

Run with `nox -s bench` (not part of the default test run). In ONE run, so
ratios are meaningful on a noisy machine, for each rendered project:
cold `inv up` (no containers, no volumes), warm `inv up` (containers stopped,
volumes kept) and `inv down`, the same with raw `docker compose`, per-service
start -> healthy from `docker inspect`, idle memory after 30 s, and the
`copier copy` render time. Writes bench/results.json and bench/RESULTS.md.
Also backup/restore of a ~1 GB PostgreSQL database vs raw pg_dump/pg_restore
(bench/backup.json, bench/BACKUP.md; `--only backup --backup-mb N`).
Every stack it starts is removed with its volumes, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import (
    REPO,
    VENV_BIN,
    default_services,
    free_port_answers,
    full_catalog,
    tool_env,
)

sys.path.insert(0, str(REPO / "template"))
from berth import engine
from berth.project import Project

OUT = REPO / "bench" / "out"
TARGETS = {
    "cold_s": 8.0,  # full stack cold -> healthy
    "warm_s": 3.0,
    "overhead_ratio": 1.10,  # inv up vs raw compose ...
    "overhead_s": 0.25,  # ... or at most this much slower
    "idle_mem_mb": 1536.0,
    "render_s": 2.0,
}


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def stats(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def bench_env() -> dict[str, str]:
    """The environment of measured commands: a user's. Python writes bytecode
    caches there; sandboxes such as CI often set PYTHONDONTWRITEBYTECODE, which
    would make every `inv` run compile berth from source (tens of ms)."""
    env = tool_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def quiet(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=bench_env(), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")


class Stack:
    """One rendered project, driven through `inv` and through raw compose."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = Project(root)
        self.project.prepare()  # .env + secrets, so raw compose can run too

    def inv(self, *args: str) -> None:
        quiet([sys.executable, "-m", "invoke", *args], self.root)

    def raw(self, *args: str) -> None:
        # The same files, project name and env file as `inv`, minus berth.
        quiet(self.project.compose.argv(*args), self.root)

    def wipe(self) -> None:
        self.raw("down", "--volumes", "--remove-orphans")

    def start_to_healthy(self) -> dict[str, float]:
        """Seconds from container start to its first passing health check."""
        ids = [c.id for c in self.project.compose.ps()]
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True)
        result = {}
        for item in json.loads(out.stdout):
            service = item["Config"]["Labels"]["com.docker.compose.service"]
            state = item["State"]
            passed = [e for e in (state.get("Health") or {}).get("Log", []) if e["ExitCode"] == 0]
            if passed:
                result[service] = round(
                    engine.timestamp(passed[0]["End"]) - engine.timestamp(state["StartedAt"]), 3
                )
        return result

    def memory_mb(self) -> dict[str, float]:
        ids = [c.id for c in self.project.compose.ps()]
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
            capture_output=True,
            text=True,
        )
        result = {}
        for line in out.stdout.splitlines():
            row = json.loads(line)
            service = row["Name"].removeprefix(f"{self.project.name}-").rsplit("-", 1)[0]
            result[service] = round(_mib(row["MemUsage"].split("/")[0]), 1)
        return result


def _mib(text: str) -> float:
    text = text.strip()
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1024, "MB": 1, "GB": 1024, "B": 0}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text) / 2**20


def measure_stack(root: Path, reps: int, idle_seconds: int) -> dict[str, Any]:
    stack = Stack(root)
    runs: dict[str, list[float]] = {k: [] for k in (
        "inv_cold", "inv_warm", "inv_down", "raw_cold", "raw_warm", "raw_down")}  # fmt: skip
    healthy: dict[str, list[float]] = {}
    try:
        for _ in range(reps):
            # Interleave inv and raw so machine noise hits both alike.
            for tool, up, stop, down in (
                ("inv", lambda: stack.inv("up"), lambda: stack.inv("stop"),
                 lambda: stack.inv("down")),
                ("raw", lambda: stack.raw("up", "--detach", "--wait"), lambda: stack.raw("stop"),
                 lambda: stack.raw("down")),
            ):  # fmt: skip
                stack.wipe()
                runs[f"{tool}_cold"].append(timed(up))
                if tool == "inv":
                    for service, seconds in stack.start_to_healthy().items():
                        healthy.setdefault(service, []).append(seconds)
                stop()
                runs[f"{tool}_warm"].append(timed(up))
                runs[f"{tool}_down"].append(timed(down))
        stack.wipe()
        stack.inv("up")
        time.sleep(idle_seconds)  # idle memory is by definition measured after waiting
        memory = stack.memory_mb()
    finally:
        stack.wipe()
    summary = {name: stats(values) for name, values in runs.items()}
    for phase in ("cold", "warm", "down"):
        inv, raw = summary[f"inv_{phase}"]["median"], summary[f"raw_{phase}"]["median"]
        summary[f"overhead_{phase}"] = {
            "ratio": round(inv / raw, 3),
            "ms": round(1000 * (inv - raw)),
        }
    summary["start_to_healthy"] = {s: stats(v) for s, v in sorted(healthy.items())}
    summary["idle_memory_mb"] = {"per_service": memory, "total": round(sum(memory.values()), 1)}
    return summary


def measure_backup(work: Path, megabytes: int, reps: int) -> dict[str, Any]:
    """`inv backup`/`inv restore` of a PostgreSQL database of about `megabytes`
    vs raw `pg_dump -Fc` to a host file and `pg_restore -j` in the same container.

    Raw restore = copy the dump in + createdb + pg_restore -j into a side copy;
    raw replace = the same after dropping that 1 GB copy, which is what
    replacing a live database takes and what berth's switch-over also does
    (DROP DATABASE of the old one). berth's restore is timed twice: as `inv restore --yes`
    (which first takes a safety backup of the current data, i.e. a second
    dump) and through the same code without the safety backup, so the ratio
    compares like with like.
    """
    from harness import render

    slug = f"berth-bench-backup-{uuid.uuid4().hex[:6]}"
    root = render(work / slug, project_slug=slug, services=["postgres"], pgvector=False,
                  **free_port_answers())  # fmt: skip
    stack = Stack(root)
    project = stack.project
    env = project.values
    user, db = env["POSTGRES_USER"], env["POSTGRES_DB"]

    def psql(query: str) -> str:
        return project.compose.run(
            "exec", "-T", "postgres", "psql", "-X", "-At", "-U", user, "-d", db, "-c", query
        ).stdout.strip()

    try:
        stack.inv("up")
        rows = megabytes * 1024 * 1024 // 110  # ~110 bytes per row on disk
        fill = (
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b,"  # noqa: S608 - rows is an int
            f" now() AS at FROM generate_series(1, {int(rows)}) g"
        )
        psql(fill)
        size = int(psql("SELECT pg_database_size(current_database())"))
        print(f"bench: backup of a {size / 2**20:.0f} MiB database", flush=True)
        raw_file = work / f"{slug}-raw.dump"
        inside = "/tmp/raw.dump"  # noqa: S108 - a path inside the container
        jobs = max(1, min(4, os.cpu_count() or 1))  # as berth's PostgreSQL hook

        def raw_dump() -> None:
            with raw_file.open("wb") as out:
                project.compose.stream("exec", "-T", "postgres", "pg_dump", "-Fc", "-U", user,
                                       "-d", db, stdout=out)  # fmt: skip

        def raw_restore() -> None:
            project.compose.run("cp", str(raw_file), f"postgres:{inside}")
            psql("CREATE DATABASE rawcopy")
            project.compose.run("exec", "-T", "postgres", "pg_restore", "--exit-on-error",
                                f"--jobs={jobs}", "-U", user, "-d", "rawcopy", inside)  # fmt: skip

        def raw_replace() -> None:
            # What replacing a live database takes by hand: drop the one
            # restored just before (1 GB, like berth's switch-over drops),
            # create it anew and pg_restore into it.
            project.compose.run("cp", str(raw_file), f"postgres:{inside}")
            psql("DROP DATABASE rawcopy WITH (FORCE)")
            psql("CREATE DATABASE rawcopy")
            project.compose.run("exec", "-T", "postgres", "pg_restore", "--exit-on-error",
                                f"--jobs={jobs}", "-U", user, "-d", "rawcopy", inside)  # fmt: skip

        def cleanup_raw() -> None:
            psql("DROP DATABASE IF EXISTS rawcopy")
            project.compose.run("exec", "-T", "postgres", "rm", "-f", inside)

        def berth_restore_only(name: str) -> None:
            from berth import backup

            plan = backup.plan_restore(project, root / "backups" / name)
            backup.restore(project, plan, safety=False)

        runs: dict[str, list[float]] = {"raw_dump": [], "inv_backup": [], "raw_restore": [],
                                        "raw_replace": [], "berth_restore": []}  # fmt: skip
        for rep in range(reps):
            # Interleaved, so load from anything else on the machine hits both alike.
            runs["raw_dump"].append(timed(raw_dump))
            name = f"bench-{rep}"
            runs["inv_backup"].append(timed(lambda name=name: stack.inv("backup", "--name", name)))
            runs["raw_restore"].append(timed(raw_restore))
            runs["raw_replace"].append(timed(raw_replace))
            cleanup_raw()
            runs["berth_restore"].append(timed(lambda name=name: berth_restore_only(name)))
        inv_restore_s = timed(lambda: stack.inv("restore", "--name", "bench-0", "--yes"))
        dump_mb = raw_file.stat().st_size / 2**20
    finally:
        stack.wipe()
    mb = size / 2**20
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "database_mib": round(mb, 1),
        "dump_mib": round(dump_mb, 1),
        "reps": reps,
        "pg_restore_jobs": jobs,
        "runs_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "raw_pg_dump_s": round(med["raw_dump"], 2),
        "inv_backup_s": round(med["inv_backup"], 2),
        "raw_pg_restore_s": round(med["raw_restore"], 2),
        "berth_restore_without_safety_backup_s": round(med["berth_restore"], 2),
        "inv_restore_with_safety_backup_s": round(inv_restore_s, 2),
        "backup_throughput_ratio": round(med["raw_dump"] / med["inv_backup"], 3),
        "restore_throughput_ratio": round(med["raw_restore"] / med["berth_restore"], 3),
        "raw_replace_s": round(med["raw_replace"], 2),
        "replace_throughput_ratio": round(med["raw_replace"] / med["berth_restore"], 3),
        "backup_mib_per_s": round(mb / med["inv_backup"], 1),
        "restore_mib_per_s": round(mb / med["berth_restore"], 1),
        "load_average": os.getloadavg()[0],
    }


def backup_markdown(data: dict[str, Any], created: str) -> str:
    return "\n".join([
        "# berth backup benchmark",
        "",
        f"Measured {created} with `nox -s bench -- --only backup --backup-mb N`; medians of"
        f" {data['reps']} interleaved runs (all runs in backup.json), database"
        f" {data['database_mib']} MiB (`pg_database_size`), dump {data['dump_mib']} MiB;"
        f" load average {data['load_average']:.1f} at the end.",
        "",
        "berth's restore does more than the raw one: it verifies every checksum and the"
        " server's major, restores the roles, loads every database (also `postgres`) into a"
        " fresh one, then switches them all over and drops the old ones. That takes five"
        " `docker compose exec`/`cp` calls (~0.15 s each): server version, cp, one psql"
        " session for roles + CREATE DATABASEs, pg_restore per non-empty dump, one psql"
        " session for the switch-over.",
        "",
        "| step | raw (s) | berth (s) | throughput ratio (target >= 0.9) |",
        "| --- | --- | --- | --- |",
        f"| backup: `pg_dump -Fc` to a host file vs `inv backup` | {data['raw_pg_dump_s']} |"
        f" {data['inv_backup_s']} | {data['backup_throughput_ratio']} |",
        f"| restore: cp + createdb + `pg_restore -j{data.get('pg_restore_jobs', '')}` vs berth"
        " restore (no safety backup) |"
        f" {data['raw_pg_restore_s']} | {data['berth_restore_without_safety_backup_s']} |"
        f" {data['restore_throughput_ratio']} |",
        f"| restore replacing the database: cp + DROP (the 1 GB copy) + CREATE +"
        f" `pg_restore -j{data.get('pg_restore_jobs', '')}` vs berth restore |"
        f" {data.get('raw_replace_s', '')} | {data['berth_restore_without_safety_backup_s']} |"
        f" {data.get('replace_throughput_ratio', '')} |",
        f"| `inv restore --yes` (takes a safety backup first) | | "
        f"{data['inv_restore_with_safety_backup_s']} | |",
        "",
    ])  # fmt: skip


def measure_render(reps: int, work: Path) -> dict[str, float]:
    times = []
    for i in range(reps):
        dst = work / f"render-{i}"
        cmd = [str(VENV_BIN / "copier"), "copy", "--defaults", "--quiet", "--vcs-ref", "HEAD",
               str(REPO), str(dst)]  # fmt: skip
        times.append(timed(lambda cmd=cmd: quiet(cmd, work)))
    return stats(times)


def measure_startup(reps: int, project: Path) -> dict[str, dict[str, float]]:
    """Interpreter alone, and interpreter + invoke + berth listing the tasks."""
    python = [timed(lambda: quiet([sys.executable, "-c", "pass"], project)) for _ in range(reps)]
    inv = [
        timed(lambda: quiet([sys.executable, "-m", "invoke", "--list"], project))
        for _ in range(reps)
    ]
    return {"python": stats(python), "inv_list": stats(inv)}


def machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        result = subprocess.run(cmd, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else "?"

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "docker": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "compose": out(["docker", "compose", "version", "--short"]),
        "python": platform.python_version(),
    }


def verdicts(projects: dict[str, Any], render: dict[str, float]) -> list[dict[str, Any]]:
    full = projects["full"]
    rows = [
        ("full stack cold inv up -> healthy (median)", full["inv_cold"]["median"], "s",
         f"<= {TARGETS['cold_s']}", full["inv_cold"]["median"] <= TARGETS["cold_s"]),
        ("full stack warm inv up (median)", full["inv_warm"]["median"], "s",
         f"<= {TARGETS['warm_s']}", full["inv_warm"]["median"] <= TARGETS["warm_s"]),
        ("inv up overhead vs raw compose, cold", full["overhead_cold"]["ratio"], "x",
         f"<= {TARGETS['overhead_ratio']}x or <= {TARGETS['overhead_s']} s over",
         full["overhead_cold"]["ratio"] <= TARGETS["overhead_ratio"]
         or full["overhead_cold"]["ms"] <= 1000 * TARGETS["overhead_s"]),
        ("inv up overhead vs raw compose, warm", full["overhead_warm"]["ratio"], "x",
         f"<= {TARGETS['overhead_ratio']}x or <= {TARGETS['overhead_s']} s over",
         full["overhead_warm"]["ratio"] <= TARGETS["overhead_ratio"]
         or full["overhead_warm"]["ms"] <= 1000 * TARGETS["overhead_s"]),
        ("idle memory of the full stack after 30 s", full["idle_memory_mb"]["total"], "MiB",
         f"<= {TARGETS['idle_mem_mb']:.0f}",
         full["idle_memory_mb"]["total"] <= TARGETS["idle_mem_mb"]),
        ("copier copy render (median)", render["median"], "s", f"<= {TARGETS['render_s']}",
         render["median"] <= TARGETS["render_s"]),
    ]  # fmt: skip
    return [
        {"what": w, "value": v, "unit": u, "target": t, "met": bool(m)} for w, v, u, t, m in rows
    ]


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# berth benchmark results",
        "",
        f"Measured {results['created']} with `nox -s bench` ({results['reps']} repetitions"
        f" each, interleaved inv/raw). Regenerate with `nox -s bench`. Commands run as on"
        " a user's machine: Python's bytecode cache on (PYTHONDONTWRITEBYTECODE unset).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in results["machine"].items()),
        "",
        "## Targets",
        "",
        "| measure | value | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for row in results["verdicts"]:
        mark = "yes" if row["met"] else "**no**"
        lines.append(f"| {row['what']} | {row['value']} {row['unit']} | {row['target']} | {mark} |")
    for label, data in results["projects"].items():
        services = ", ".join(data["services"])
        header = "| step | inv (min/median/max s) | raw compose (min/median/max s) | overhead |"
        lines += ["", f"## {label}: {services}", "", header, "| --- | --- | --- | --- |"]
        for phase in ("cold", "warm", "down"):
            inv, raw, over = data[f"inv_{phase}"], data[f"raw_{phase}"], data[f"overhead_{phase}"]
            lines.append(
                f"| {phase} | {inv['min']} / {inv['median']} / {inv['max']} | "
                f"{raw['min']} / {raw['median']} / {raw['max']} | "
                f"{over['ratio']}x ({over['ms']:+d} ms) |"
            )
        lines += ["", "| service | start -> healthy (min/median/max s) | idle memory (MiB) |",
                  "| --- | --- | --- |"]  # fmt: skip
        memory = data["idle_memory_mb"]["per_service"]
        for service, s in data["start_to_healthy"].items():
            lines.append(
                f"| {service} | {s['min']} / {s['median']} / {s['max']} | {memory.get(service)} |"
            )
        lines.append(f"| **total** | | {data['idle_memory_mb']['total']} |")
    r = results["render"]
    lines += [
        "",
        f"Render (`copier copy --defaults`): {r['min']} / {r['median']} / {r['max']} s.",
        "",
    ]
    if results.get("notes"):
        lines += ["## Where the time goes", "", *results["notes"], ""]
    return "\n".join(lines)


def notes(projects: dict[str, Any], startup: dict[str, dict[str, float]]) -> list[str]:
    """Plain statements about where the time goes, from the data."""
    full = projects["full"]
    health = full["start_to_healthy"]
    out = []
    if health:
        slowest = max(health, key=lambda s: health[s]["median"])
        out.append(
            f"- Cold start is bounded by the slowest service: {slowest} needs "
            f"{health[slowest]['median']} s from container start to its first passing health "
            "check (for PostgreSQL a cold start includes initdb of the empty volume)."
        )
    floor = round(1000 * (startup["inv_list"]["median"] - startup["python"]["median"]))
    out.append(
        f"- `inv up` adds {full['overhead_cold']['ms']:+d} ms (cold) and "
        f"{full['overhead_warm']['ms']:+d} ms (warm) over raw compose. Of that, {floor} ms is "
        "loading invoke and the task module (`inv --list` minus a bare interpreter; invoke"
        " alone imports importlib.metadata, unittest.mock and its vendored yaml). berth's own"
        " checks and output read state from the Engine API socket (a few ms per request)"
        " instead of spawning `docker compose ps`/`docker inspect`."
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--idle", type=int, default=30, help="seconds idle before memory")
    parser.add_argument("--backup-reps", type=int, default=3,
                        help="repetitions of each backup/restore measurement")  # fmt: skip
    parser.add_argument(
        "--backup-mb",
        type=int,
        default=1024,
        help="size of the PostgreSQL database for the backup benchmark",
    )
    parser.add_argument(
        "--only",
        choices=["stacks", "backup"],
        help="run only the stack benchmark or only the backup benchmark",
    )
    args = parser.parse_args()

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    if args.only != "stacks":
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        data = {
            "created": created,
            "machine": machine(),
            **measure_backup(OUT, args.backup_mb, args.backup_reps),
        }
        (REPO / "bench" / "backup.json").write_text(json.dumps(data, indent=2) + "\n")
        (REPO / "bench" / "BACKUP.md").write_text(backup_markdown(data, created))
        print(backup_markdown(data, created))
        if args.only == "backup":
            return 0
    sets = {"defaults": default_services(), "full": full_catalog()}
    projects: dict[str, Any] = {}
    measured: dict[tuple[str, ...], dict[str, Any]] = {}
    from harness import render

    for label, services in sets.items():
        key = tuple(sorted(services))
        if key in measured:  # the defaults may already be the full catalog
            projects[label] = measured[key]
            continue
        slug = f"berth-bench-{label}-{uuid.uuid4().hex[:6]}"
        root = render(OUT / slug, project_slug=slug, services=services, **free_port_answers())
        print(f"bench: {label} ({', '.join(services)}) x{args.reps}", flush=True)
        data = measure_stack(root, args.reps, args.idle)
        data["services"] = services
        projects[label] = measured[key] = data
    print("bench: render", flush=True)
    render_stats = measure_render(args.reps, OUT)
    startup = measure_startup(args.reps, next(OUT.glob("berth-bench-*")))

    results = {
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "reps": args.reps,
        "machine": machine(),
        "targets": TARGETS,
        "projects": projects,
        "render": render_stats,
        "startup": startup,
        "verdicts": verdicts(projects, render_stats),
        "notes": notes(projects, startup),
    }
    (REPO / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (REPO / "bench" / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
