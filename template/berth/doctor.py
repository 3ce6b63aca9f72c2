"""`inv doctor`: is this machine and this project ready to run the stack?

Each check yields Findings (OK / WARN / ERROR, what, fix). `inv doctor` prints
them all as one table and exits 1 on any ERROR; `inv up` runs the fast subset
first (`before_up`) and stops at the first ERROR. The fast subset asks the
Engine API socket (a few ms per request) and never spawns the docker CLI,
which costs 60-150 ms a call; only `inv doctor` checks the Compose version.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from berth import checks, engine, envfile, proc, report
from berth.compose import Container
from berth.errors import BerthError, CommandError
from berth.project import Project

OK, WARN, ERROR = "OK", "WARN", "ERROR"
#: `include` needs Compose 2.20 and the test overlay's `!override` tag 2.24.4.
MIN_COMPOSE = (2, 24, 4)
#: Below this much free space PostgreSQL/ClickHouse writes and backups start failing.
DISK_WARN_BYTES = 5 * 1024**3
#: Public certificates in secrets/tls/: readable by others on purpose. (Hash
#: files a container's service user must read are declared 0644 by their
#: service's `derived`; see `_shareable`.)
PUBLIC = {"ca.crt", "server.crt"}
#: Documentation that lives in secrets/ and holds nothing secret.
NOT_SECRETS = {".gitignore", "README.md"}
#: Passwords whose protocol cannot carry every character, and why.
ASCII_ONLY = {
    "clickhouse_password": "ClickHouse's HTTP interface takes it in a Basic auth header,"
    " which HTTP clients (requests, urllib) encode as Latin-1 or refuse",
}
COMPOSE_MISSING = re.compile(r"'compose' is not a docker command|unknown command:? .*compose")


@dataclass(frozen=True)
class Finding:
    level: str
    check: str
    detail: str
    fix: str = ""

    @classmethod
    def of(cls, check: str, error: BerthError, level: str = ERROR) -> Finding:
        detail = error.what + (f": {error.why}" if error.why else "")
        return cls(level, check, detail, error.fix)


# ── the checks ──────────────────────────────────────────────────────────────
@dataclass
class Engine:
    """What the engine says about itself (`Engine.ask` asks it once per run)."""

    version: dict[str, Any] | None = None  # GET /version
    info: dict[str, Any] | None = None  # GET /info
    error: BerthError | None = None
    cli_version: str = ""  # from `docker version` when there is no local socket

    @classmethod
    def ask(cls, project: Project) -> Engine:
        sock = engine.socket_path(project.environ)
        if sock:
            try:
                return cls(dict(engine.get("/version", sock)), dict(engine.get("/info", sock)))
            except OSError as exc:
                why = f"cannot talk to {sock} ({getattr(exc, 'strerror', None) or exc})"
                return cls(error=_unreachable(why, project.environ))
        try:  # a remote engine or a docker context: the CLI knows how to reach it
            return cls(cli_version=checks.engine_version())
        except BerthError as exc:
            return cls(error=exc)

    @property
    def reachable(self) -> bool:
        return self.error is None

    def findings(self) -> Iterator[Finding]:
        if self.error:
            yield Finding.of("engine", self.error)
            return
        version = str((self.version or {}).get("Version", "")) or self.cli_version
        components = [c.get("Name", "") for c in (self.version or {}).get("Components") or ()]
        if any("podman" in name.lower() for name in components):
            yield Finding(
                WARN,
                "engine",
                f"Podman {version} answers the Docker API, not Docker Engine",
                "berth is built for Docker Engine >= 25 (health checks with start_interval,"
                " compose include); use Docker Engine, or expect differences",
            )
            return
        major = version.split(".", 1)[0]
        if not major.isdigit() or int(major) < checks.MIN_ENGINE:
            yield Finding(
                ERROR,
                "engine",
                f"Docker Engine {version or '?'} is too old",
                f"upgrade to Docker Engine >= {checks.MIN_ENGINE} (health checks use"
                " start_interval)",
            )
            return
        yield Finding(OK, "engine", f"Docker Engine {version}")
        options = " ".join((self.info or {}).get("SecurityOptions") or ())
        if "name=rootless" in options:
            yield Finding(
                OK,
                "rootless",
                "rootless Docker: root in a container is your own user;"
                " berth publishes only ports >= 1024, which rootless allows",
            )


def _unreachable(why: str, environ: Any) -> BerthError:
    host = environ.get("DOCKER_HOST", "")
    fix = (
        f"DOCKER_HOST is {host}: start that engine or unset DOCKER_HOST"
        if host
        else "start Docker (e.g. `sudo systemctl start docker`) and check `docker info`"
    )
    return BerthError("the Docker engine is not reachable", why=why, fix=fix)


def compose_version() -> Finding:
    """`docker compose version` (spawns the CLI: `inv doctor` only)."""
    try:
        out = proc.run(["docker", "compose", "version", "--short"], timeout=20)
    except CommandError as exc:
        if COMPOSE_MISSING.search(exc.stderr + exc.stdout):
            return Finding.of("compose", compose_missing(exc.stderr))
        return Finding.of("compose", exc)
    except BerthError as exc:
        return Finding.of("compose", exc)
    text = out.stdout.strip().lstrip("v")
    numbers = tuple(int(n) for n in re.findall(r"\d+", text)[:3])
    wanted = ".".join(map(str, MIN_COMPOSE))
    if numbers < MIN_COMPOSE:
        return Finding(
            ERROR,
            "compose",
            f"Docker Compose {text} is too old",
            f"install Compose v2 >= {wanted} (docker-compose-plugin)",
        )
    return Finding(OK, "compose", f"Docker Compose {text}")


def compose_missing(stderr: str) -> BerthError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return BerthError(
        "Docker Compose v2 is not installed",
        why=lines[0] if lines else "`docker compose` is not a docker command",
        fix="install the docker-compose-plugin package (docs.docker.com/compose/install/linux),"
        " then check `docker compose version`",
    )


def env_file(project: Project) -> list[Finding]:
    """.env parses strictly and has every key of .env.example."""
    if not project.env_path.exists():
        return [Finding(WARN, ".env", ".env does not exist yet", "`inv up` creates it")]
    try:
        values = envfile.load(project.env_path)
        example = envfile.load(project.example_path)
    except BerthError as exc:
        return [Finding.of(".env", exc)]
    missing = envfile.missing_keys(values, example)
    if missing:
        return [
            Finding(
                ERROR,
                ".env",
                f".env lacks {', '.join(missing)}",
                "copy those lines from .env.example into .env (after `copier update`:"
                " `inv migrate` adds them)",
            )
        ]
    fresh = Project(project.root, project.env_name, project.environ)  # values are cached
    try:
        for service in fresh.services:
            for port in service.ports:
                fresh.host_port(port)
    except BerthError as exc:
        return [Finding.of(".env", exc)]
    return [Finding(OK, ".env", f"{len(values)} settings, none missing")]


def secret_files(project: Project) -> list[Finding]:
    folder = project.secrets_dir
    if not folder.is_dir():
        return [Finding(WARN, "secrets", "secrets/ does not exist yet", "`inv up` creates it")]
    found = []
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        found.append(Finding(WARN, "secrets", f"secrets/ is mode {mode:04o}", "chmod 700 secrets"))
    for name in project.secret_names():
        found += _password(folder / name)
    names = set(project.secret_names())
    skip = names | _shareable(project) | NOT_SECRETS
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name in skip or ".tmp-" in path.name:
            continue
        found += _private(path)
    problems = [f for f in found if f.level != OK]
    if problems:
        return problems
    return [Finding(OK, "secrets", f"{len(names)} passwords present, private, usable")]


def _shareable(project: Project) -> set[str]:
    """Files in secrets/ that may be readable by others: public certificates and
    the derived files a service declares so (hashes, never passwords)."""
    names = set(PUBLIC)
    for service in project.services:
        if not service.derived:
            continue
        try:
            # Names and modes do not depend on the values: ask with a placeholder.
            files = service.derived(project.values, lambda _name: "placeholder")
        except BerthError:  # .env problems are reported by their own check
            continue
        names |= {name for name, (_text, mode) in files.items() if mode & 0o044}
    return names


def _private(path: Path) -> list[Finding]:
    """A file that must be readable by its owner only."""
    where = _relative(path)
    if not os.access(path, os.R_OK):
        return [
            Finding(
                ERROR,
                "secrets",
                f"{where} is not readable by this user",
                f"`sudo chown $USER {where}` (another user created it)",
            )
        ]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return [
            Finding(
                ERROR,
                "secrets",
                f"{where} is readable by others (mode {mode:04o})",
                f"chmod 600 {where}",
            )
        ]
    return []


def _password(path: Path) -> list[Finding]:
    where = _relative(path)
    if not path.exists():
        return [Finding(WARN, "secrets", f"{where} does not exist yet", "`inv up` generates it")]
    problems = _private(path)
    if problems:
        return problems
    value = path.read_text(encoding="utf-8", errors="replace").rstrip("\r\n")
    if not value:
        return [
            Finding(
                ERROR,
                "secrets",
                f"{where} is empty",
                "write a password into it, or delete it and run `inv secrets`",
            )
        ]
    bad = sorted({f"U+{ord(ch):04X}" for ch in value if unicodedata.category(ch) == "Cc"})
    if bad:
        return [
            Finding(
                ERROR,
                "secrets",
                f"{where} contains control characters ({', '.join(bad)}), which config files,"
                " health checks and URLs cannot carry",
                f"write the password on one line (quotes, $, #, spaces, unicode are fine), or"
                f" delete {where} and run `inv secrets`",
            )
        ]
    reason = ASCII_ONLY.get(path.name)
    if reason and not value.isascii():
        return [
            Finding(
                ERROR, "secrets", f"{where} has non-ASCII characters: {reason}",
                f"use ASCII only in {where} (quotes, $, #, spaces are fine), or delete it and"
                " run `inv secrets`",
            )
        ]  # fmt: skip
    if "\ufffd" in value:
        return [
            Finding(
                ERROR,
                "secrets",
                f"{where} is not valid UTF-8",
                "save it as UTF-8, or delete it and run `inv secrets`",
            )
        ]
    return []


def _relative(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("secrets") :]) if "secrets" in parts else str(path)


def disk_space(project: Project, info: dict[str, Any] | None) -> list[Finding]:
    """Free space where volumes live (the engine's root) and where backups go."""
    places = {"backups": project.root}
    root = (info or {}).get("DockerRootDir")
    if root:
        places["volumes"] = Path(root)
    found = []
    for label, path in places.items():
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            continue  # e.g. a remote engine's directory
        gib = free / 1024**3
        if free < DISK_WARN_BYTES:
            found.append(
                Finding(
                    WARN,
                    "disk",
                    f"{gib:.1f} GiB free for {label} ({path})",
                    "free space (`docker system df`, `docker image prune`)",
                )
            )
        else:
            found.append(Finding(OK, "disk", f"{gib:.0f} GiB free for {label}"))
    return found


def ports(project: Project, running: list[Container]) -> list[Finding]:
    if not project.environment.fixed_ports:
        return [Finding(OK, "ports", f"{project.env_name}: no fixed host ports")]
    try:
        problems = checks.port_problems(project, running)
    except BerthError as exc:  # e.g. BIND_ADDRESS not on this machine
        return [Finding.of("ports", exc)]
    if problems:
        return [Finding.of("ports", p) for p in problems]
    count = sum(len(s.ports) for s in project.services)
    return [Finding(OK, "ports", f"{count} host ports free on {project.bind_address}")]


def volume_owners(project: Project) -> list[Finding]:
    """This project's name used by a stack in another directory: its containers
    carry that directory (Compose labels containers, not volumes, with it)."""
    filters = quote(f'{{"label":["com.docker.compose.project={project.name}"]}}')
    rows = engine.query(
        lambda sock: engine.get(f"/containers/json?all=1&filters={filters}", sock),
        project.environ,
    )
    here = str(project.root.resolve())
    others = sorted(
        {
            label
            for row in rows or ()
            if (label := (row.get("Labels") or {}).get("com.docker.compose.project.working_dir"))
            and str(Path(label).resolve()) != here
        }
    )
    live = [other for other in others if Path(other).is_dir()]
    if live:
        return [
            Finding(
                ERROR,
                "volumes",
                f"project name {project.name} (its volumes) is in use by {live[0]}",
                "give this project its own COMPOSE_PROJECT_NAME in .env, or stop the other:"
                f" `cd {live[0]} && inv down`",
            )
        ]
    if others:  # that directory is gone: most likely this project was moved here
        return [
            Finding(
                WARN,
                "volumes",
                f"containers of {project.name} were started from {others[0]}, which is gone",
                "if this project moved here, nothing to do: `inv up` recreates them here",
            )
        ]
    return [Finding(OK, "volumes", f"project name {project.name} belongs to this directory")]


# ── entry points ────────────────────────────────────────────────────────────
def examine(project: Project) -> list[Finding]:
    """Every check (`inv doctor`)."""
    eng = Engine.ask(project)
    found = [*eng.findings(), compose_version()]
    found += env_file(project)
    found += secret_files(project)
    found += disk_space(project, eng.info)
    env_ok = not any(f.check == ".env" and f.level != OK for f in found)
    if env_ok and eng.reachable:
        found += ports(project, project.containers())
        found += volume_owners(project)
    elif env_ok:
        found += ports(project, [])
    return found


def before_up(project: Project) -> list[Finding]:
    """The fast checks for `inv up` (after it created .env and secrets): raise
    the first ERROR as a BerthError; return the warnings."""
    eng = Engine.ask(project)
    found = list(eng.findings())
    _raise_first(found)
    running = [c for c in project.containers() if c.state == "running"]
    found += secret_files(project) + disk_space(project, eng.info)
    found += ports(project, running) + volume_owners(project)
    _raise_first(found)
    return [f for f in found if f.level == WARN]


def _raise_first(found: list[Finding]) -> None:
    for f in found:
        if f.level == ERROR:
            raise BerthError(f.detail, fix=f.fix)


def table(found: list[Finding]) -> str:
    return report.table(
        ["STATUS", "CHECK", "DETAIL", "FIX"], [(f.level, f.check, f.detail, f.fix) for f in found]
    )
