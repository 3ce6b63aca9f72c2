"""invoke tasks for this project's stack. `inv --list` shows them.

Each task is thin: it loads the Project, calls the compose helper and prints.
Errors are BerthError (one line + details, exit 1); Ctrl-C exits 130.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task

from berth import doctor, lock, report
from berth.errors import BerthError
from berth.project import Project
from berth.rotate import rotate_secret

ROOT = Path(__file__).resolve().parent.parent
ENV_HELP = "environment: dev (default; ports from .env), test (own stack, ephemeral ports), prod"
LOG_LINES_ON_FAILURE = 40
F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """Turn BerthError into one clear line (exit 1) and Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BerthError as error:
            if error.details:
                print(error.details, file=sys.stderr)
            raise Exit(f"error: {error.line()}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def load(env: str = "dev") -> Project:
    return Project(ROOT, env_name=env)


# ── lifecycle ───────────────────────────────────────────────────────────────
@task(
    help={
        "timeout": "seconds to wait for every service to become healthy (default 120)",
        "reveal": "print passwords in connection strings even when output is not a terminal",
        "env": ENV_HELP,
    }
)
@handled
def up(c: Context, timeout: int = 120, reveal: bool = False, env: str = "dev") -> None:
    """Start the stack, wait until every service is healthy, print connection strings."""
    project = load(env)
    with lock.held(project.root, "up"):
        start(project, timeout=timeout, reveal=reveal)


def start(project: Project, *, timeout: int = 120, reveal: bool = False) -> None:
    """`inv up`'s work (also run by `inv reset`, which holds the lock already)."""
    started = time.monotonic()
    for note in project.prepare():
        print(f"berth: {note}")
    for finding in doctor.before_up(project):
        print(f"berth: warning: {finding.detail} (fix: {finding.fix})", file=sys.stderr)
    for warning in project.warnings():
        print(f"berth: warning: {warning}", file=sys.stderr)
    project.up_started = time.time()
    result = project.compose.run(
        "up", "--detach", "--wait", "--wait-timeout", str(timeout), "--remove-orphans",
        capture=False, check=False,
    )  # fmt: skip
    containers = project.containers()
    if result.returncode != 0:
        raise _not_healthy(project, containers)
    for note in project.after_up():
        print(f"berth: {note}")
    elapsed = time.monotonic() - started
    _print_status(containers)
    _print_urls(project, containers, reveal=reveal or sys.stdout.isatty())
    print(f"\nberth: {project.name} healthy in {elapsed:.1f} s")


def _not_healthy(project: Project, containers: list) -> BerthError:
    bad = [c for c in containers if c.state != "running" or c.health not in ("", "healthy")]
    names = sorted({c.service for c in bad}) or [s.name for s in project.services]
    tails = []
    for name in names:
        logs = project.compose.run(
            "logs", "--no-color", "--tail", str(LOG_LINES_ON_FAILURE), name, check=False
        )
        tails.append(f"── last {LOG_LINES_ON_FAILURE} log lines of {name} ──\n{logs.stdout}")
    states = ", ".join(f"{c.service} {c.state}/{c.health or 'no health'}" for c in bad)
    env = project.env_flag
    return BerthError(
        "the stack did not become healthy",
        why=states or "compose up failed",
        fix=f"read the logs above, then `inv logs --service {names[0]}{env}` or `inv status{env}`",
        details="\n".join(tails),
    )


@task(
    help={
        "remove_orphans": "also remove containers of services no longer defined",
        "env": ENV_HELP,
    }
)
@handled
def down(c: Context, remove_orphans: bool = True, env: str = "dev") -> None:
    """Stop and remove the containers; volumes (your data) are kept."""
    project = load(env)
    args = ["down"] + (["--remove-orphans"] if remove_orphans else [])
    with lock.held(project.root, "down"):
        project.compose.run(*args, capture=False)


@task(help={"service": "only this service (default: all)", "env": ENV_HELP})
@handled
def stop(c: Context, service: str = "", env: str = "dev") -> None:
    """Stop containers without removing them (`inv up` starts them again)."""
    project = load(env)
    names = [project.service(service).name] if service else []
    project.compose.run("stop", *names, capture=False)


# ── data safety ─────────────────────────────────────────────────────────────
SERVICE_HELP = "only this stateful service (repeatable; default: all of them)"


@task(
    iterable=["service"],
    help={
        "service": SERVICE_HELP,
        "name": "bundle name under backups/ (default: the UTC time, YYYYmmdd-HHMMSS)",
        "env": ENV_HELP,
    },
)
@handled
def backup(c: Context, service: list[str] | None = None, name: str = "", env: str = "dev") -> None:
    """Back up every stateful service into one verified bundle under backups/."""
    from berth import backup as bundles  # imported here: `inv up` does not need it

    project = load(env)
    chosen = bundles.stateful_services(project, service or ())
    with lock.held(project.root, "backup"):
        started = time.monotonic()
        folder = bundles.create(project, chosen, name=name)
    size = bundles.human_size(bundles.inspect(folder).size)
    print(
        f"berth: backup {folder.name} of {', '.join(s.name for s in chosen)}"
        f" ({size}) written and verified in {time.monotonic() - started:.1f} s"
    )


@task(
    help={
        "check": "also re-read every file against its SHA-256 (default: manifest and sizes)",
        "env": ENV_HELP,
    }
)
@handled
def backups(c: Context, check: bool = False, env: str = "dev") -> None:
    """List backup bundles: name, age, services, size, verified."""
    from berth import backup as bundles  # imported here: `inv up` does not need it

    project = load(env)
    found = bundles.bundles(project, checksums=check)
    if not found:
        print("berth: no backups yet (make one with `inv backup`)")
        return
    now = datetime.now(UTC)
    rows = [
        (
            b.name,
            bundles.human_age((now - b.created).total_seconds()),
            ",".join(b.services) or "-",
            bundles.human_size(b.size),
            "yes" if not b.problem else f"NO: {b.problem}",
        )
        for b in found
    ]
    print(report.table(["NAME", "AGE", "SERVICES", "SIZE", "VERIFIED"], rows))


@task(
    iterable=["service"],
    help={
        "name": "the bundle to restore (`inv backups` lists them)",
        "latest": "restore the newest usable bundle made by `inv backup` (not a safety backup)",
        "service": "only this service's data from the bundle (repeatable; default: all in it)",
        "yes": "do not ask for confirmation (needed when stdin is not a terminal)",
        "env": ENV_HELP,
    },
)
@handled
def restore(
    c: Context,
    name: str = "",
    latest: bool = False,
    service: list[str] | None = None,
    yes: bool = False,
    env: str = "dev",
) -> None:
    """Restore a backup (verified first; the current data is backed up before)."""
    from berth import backup as bundles  # imported here: `inv up` does not need it

    project = load(env)
    with lock.held(project.root, "restore"):
        folder = bundles.resolve(project, name, latest=latest)
        plan = bundles.plan_restore(project, folder, service or ())
        names = ", ".join(s.name for s in plan.services)
        bundles.confirm(
            f"Replace the data of {names} in {project.name} with backup {folder.name}"
            " (a safety backup is taken first)?",
            command=_command("restore", folder.name, service or (), env, yes=True),
            yes=yes,
        )
        for note in bundles.restore(project, plan):
            print(f"berth: {note}")
    print(f"berth: restored {names} from {folder.name}")


@task(
    help={
        "keep": "keep this many newest bundles",
        "older_than": "only delete bundles older than this many days",
        "yes": "really delete (default: print what would be deleted)",
        "env": ENV_HELP,
    }
)
@handled
def prune(
    c: Context, keep: int = -1, older_than: float = -1.0, yes: bool = False, env: str = "dev"
) -> None:
    """Delete old backup bundles; a dry run unless --yes."""
    from berth import backup as bundles  # imported here: `inv up` does not need it

    project = load(env)
    found = bundles.bundles(project)
    doomed = bundles.prune_selection(
        found,
        keep=keep if keep >= 0 else None,
        older_than_days=older_than if older_than >= 0 else None,
        now=datetime.now(UTC),
    )
    stale = bundles.stale_partials(project)
    if not doomed and not stale:
        print(f"berth: nothing to prune ({len(found)} bundles kept)")
        return
    verb = "deleting" if yes else "would delete"
    for path in [b.path for b in doomed] + stale:
        print(f"berth: {verb} {path.relative_to(project.root)}")
        if yes:
            shutil.rmtree(path)
    if not yes:
        print("berth: dry run; add --yes to delete")


@task(
    iterable=["service"],
    help={
        "service": "only this service (repeatable; default: every stateful service)",
        "yes": "do not ask for confirmation (needed when stdin is not a terminal)",
        "no_backup": "skip the safety backup (the data is gone for good)",
        "timeout": "seconds to wait for the services to become healthy again (default 120)",
        "env": ENV_HELP,
    },
)
@handled
def reset(
    c: Context,
    service: list[str] | None = None,
    yes: bool = False,
    no_backup: bool = False,
    timeout: int = 120,
    env: str = "dev",
) -> None:
    """Delete the data of stateful services (after a safety backup) and start them fresh."""
    from berth import backup as bundles  # imported here: `inv up` does not need it

    project = load(env)
    chosen = bundles.stateful_services(project, service or ())
    names = ", ".join(s.name for s in chosen)
    extra = ["--no-backup"] if no_backup else []
    with lock.held(project.root, "reset"):
        volumes = bundles.owned_volumes(project, chosen)
        bundles.confirm(
            f"Delete the data of {names} in {project.name}"
            + (" for good (no safety backup)" if no_backup else " (a safety backup is taken first)")
            + "?",
            command=_command("reset", "", service or (), env, yes=True, extra=extra),
            yes=yes,
        )
        if not no_backup:
            kept = bundles.create(project, chosen, name=bundles.safety_name("reset"))
            print(f"berth: safety backup of the current data: {kept.name}")
        bundles.remove(project, chosen, volumes)
        print(f"berth: removed {names} and volumes {', '.join(volumes) or '(none)'}")
        start(project, timeout=timeout)


def _command(
    task_name: str,
    name: str,
    services: Sequence[str],
    env: str,
    *,
    yes: bool,
    extra: Sequence[str] = (),
) -> str:
    """The exact command line to repeat a task non-interactively."""
    parts = ["inv", task_name] + (["--name", name] if name else [])
    for service in services:
        parts += ["--service", service]
    parts += list(extra)
    if env != "dev":
        parts += ["--env", env]
    if yes:
        parts.append("--yes")
    return shlex.join(parts)


# ── inspection ──────────────────────────────────────────────────────────────
@task(help={"json": "print machine-readable JSON instead of a table", "env": ENV_HELP})
@handled
def status(c: Context, json: bool = False, env: str = "dev") -> None:
    """Show each service: state, health, restarts, uptime, published ports."""
    project = load(env)
    containers = project.containers()
    rows = report.statuses(containers)
    if json:
        print(report.statuses_json(rows))
    elif rows:
        _print_rows(rows)
    else:
        print(f"berth: {project.name} is not running (start it with `inv up`)")


@task(
    help={
        "service": "only this service (default: all)",
        "follow": "keep printing new lines until Ctrl-C",
        "tail": "number of lines from the end of each log (default 100)",
        "env": ENV_HELP,
    }
)
@handled
def logs(
    c: Context, service: str = "", follow: bool = False, tail: int = 100, env: str = "dev"
) -> None:
    """Print container logs of one or all services."""
    project = load(env)
    args = ["logs", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    if service:
        args.append(project.service(service).name)
    project.compose.run(*args, capture=False)


@task(
    help={
        "reveal": "print passwords (default: only when output is a terminal)",
        "json": "print JSON: {service: {name: url}}",
        "env": ENV_HELP,
    }
)
@handled
def urls(c: Context, reveal: bool = False, json: bool = False, env: str = "dev") -> None:
    """Print connection strings of the running services."""
    project = load(env)
    containers = project.containers()
    if json:
        import json as _json

        print(_json.dumps(project.urls(containers, reveal=reveal), indent=2))
    else:
        _print_urls(project, containers, reveal=reveal or sys.stdout.isatty())


@task(
    help={
        "rotate": "replace this password in the running stack, e.g. postgres_password"
        " (the old one keeps working until the new one is proven)",
        "env": ENV_HELP,
    }
)
@handled
def secrets(c: Context, rotate: str = "", env: str = "dev") -> None:
    """Create missing secrets under secrets/ (never overwrites), or rotate one with --rotate."""
    project = load(env)
    # Rotation restarts containers and rewrites files that `up` also writes.
    with lock.held(project.root, f"secrets --rotate {rotate}" if rotate else "secrets"):
        notes = rotate_secret(project, rotate) if rotate else project.prepare()
    notes = notes or ["all secrets present"]
    for note in notes:
        print(f"berth: {note}", file=sys.stderr if note.startswith("warning:") else sys.stdout)


@task(help={"renew": "replace the existing CA and certificates (clients must trust the new CA)"})
@handled
def certs(c: Context, renew: bool = False) -> None:
    """Create the local CA and TLS certificates in secrets/tls/ (kept unless --renew)."""
    project = load()
    notes = [n for n in project.prepare() if "certificate" in n]
    if renew:
        notes += project.generate(renew=True)
    for note in notes or ["certificates present (use --renew to replace them)"]:
        print(f"berth: {note}")
    if renew and notes:
        print("berth: run `inv up` to load them; nginx reads certificates at start")


@task(help={"env": ENV_HELP})
@handled
def doctor_(c: Context, env: str = "dev") -> None:
    """Check Docker, Compose, ports, disk, .env and secrets; one table, exit 1 on any ERROR."""
    project = load(env)
    found = doctor.examine(project)
    print(doctor.table(found))
    errors = [f for f in found if f.level == doctor.ERROR]
    if errors:
        raise BerthError(
            f"doctor found {len(errors)} problem{'s' if len(errors) > 1 else ''}",
            why=errors[0].detail,
            fix=errors[0].fix or "see the FIX column above",
        )


# ── security ────────────────────────────────────────────────────────────────
@task(
    help={
        "fail_on": "exit 1 on a finding of this severity or worse: low, medium, high (default),"
        " critical",
        "json": "also write machine-readable results to this file",
        "sarif": "also write SARIF 2.1.0 (one run per scanner) to this file",
        "offline": "do not try to download trivy's vulnerability DB (use a cached one if any)",
    }
)
@handled
def scan(
    c: Context, fail_on: str = "HIGH", json: str = "", sarif: str = "", offline: bool = False
) -> None:
    """Scan for leaked secrets, Dockerfile/shell problems and image vulnerabilities (trivy)."""
    from berth import scan as scanner

    started = time.monotonic()
    result = scanner.run(ROOT, fail_on=fail_on, offline=offline)
    for note in result.notes:
        print(f"berth: {note}")
    print(scanner.summary(result))
    if json:
        scanner.write(Path(json), scanner.to_json(result))
    if sarif:
        scanner.write(Path(sarif), scanner.to_sarif(result))
    elapsed = time.monotonic() - started
    if not result.passed:
        raise BerthError(
            f"scan failed ({elapsed:.1f} s)",
            why=scanner.verdict(result),
            fix="fix the findings listed above, or raise --fail-on if they are accepted"
            if result.over_threshold()
            else "fix the scanner error above, then run `inv scan` again",
            details=scanner.details(result),
        )
    print(f"berth: scan passed in {elapsed:.1f} s ({scanner.verdict(result)})")


# ── output ──────────────────────────────────────────────────────────────────
def _print_status(containers: list) -> None:
    _print_rows(report.statuses(containers))


def _print_rows(rows: list[report.Status]) -> None:
    print(
        report.table(
            ["SERVICE", "STATE", "HEALTH", "RESTARTS", "UPTIME", "PORTS"],
            [(r.service, r.state, r.health, r.restarts, r.uptime, r.ports) for r in rows],
        )
    )


def _print_urls(project: Project, containers: list, *, reveal: bool) -> None:
    found = project.urls(containers, reveal=reveal)
    if not found:
        return
    print("\nConnection strings" + ("" if reveal else " (passwords hidden: `inv urls --reveal`)"))
    rows = [(svc, name, url) for svc, named in found.items() for name, url in named.items()]
    print(report.table(["SERVICE", "NAME", "URL"], rows))


ns = Collection(
    up, down, stop, status, logs, urls, secrets, certs, backup, backups, restore, prune, reset
)
ns.add_task(doctor_, name="doctor")
ns.add_task(scan)
