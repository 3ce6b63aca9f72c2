"""Backups of the stack's data: bundles under backups/, verified, restored safely.

A bundle is a folder `backups/<name>/` with one subfolder of payload files per
stateful service and a `manifest.json` that lists every file with its size and
SHA-256, the services' server versions and the berth template version.

Nothing half-written ever looks like a bundle: a backup is written to
`backups/.<name>.partial-<pid>`, verified, checksummed and only then renamed;
any failure or Ctrl-C removes the partial folder. A restore checks the whole
bundle (manifest, every checksum, server versions) before it touches anything,
then takes a safety backup of the current data. How each service saves and
loads its data is its `Backup` hook (services/<name>/backup.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth import proc, secrets
from berth.clock import timestamp
from berth.errors import BerthError
from berth.project import Project
from berth.service import Service

KIND = "berth-backup"
FORMAT = 1
MANIFEST = "manifest.json"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
CHUNK = 1 << 20


def backups_dir(project: Project) -> Path:
    return project.root / "backups"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BerthError(
            f"{name!r} is not a usable backup name",
            fix="use letters, digits, '.', '_' and '-' (starting with a letter or digit)",
        )
    return name


# ── which services ──────────────────────────────────────────────────────────
def stateful_services(project: Project, only: Iterable[str] = ()) -> list[Service]:
    """The stateful services to back up (all, or those named); each needs a hook."""
    wanted = list(only)
    chosen = [project.service(n) for n in wanted] if wanted else list(project.services)
    if wanted:
        stateless = [s.name for s in chosen if not s.stateful]
        if stateless:
            raise BerthError(
                f"{', '.join(stateless)} keeps no data, so there is nothing to back up",
                fix="name a stateful service, or leave out --service",
            )
    chosen = [s for s in chosen if s.stateful]
    missing = [s.name for s in chosen if s.backup is None]
    if missing:
        # A stateful service without a hook would silently be left out of
        # every backup: refuse instead.
        raise BerthError(
            f"stateful service {', '.join(missing)} has no backup hook",
            fix="add `backup=Backup(...)` to its services/<name>/service.py, "
            "or set stateful=False if it keeps no data",
        )
    if not chosen:
        raise BerthError("this project has no stateful service to back up")
    return chosen


def require_running(project: Project, services: Sequence[Service]) -> None:
    states = {c.service: (c.state, c.health) for c in project.containers()}
    down = [s.name for s in services if states.get(s.name, ("", ""))[0] != "running"]
    if down:
        env = project.env_flag
        raise BerthError(
            f"{', '.join(down)} is not running",
            why="backups and restores talk to the running servers",
            fix=f"start the stack with `inv up{env}`",
        )


# ── writing ─────────────────────────────────────────────────────────────────
def create(project: Project, services: Sequence[Service], name: str = "") -> Path:
    """Write one verified bundle of `services`; returns its folder."""
    require_running(project, services)
    root = backups_dir(project)
    root.mkdir(mode=0o700, exist_ok=True)
    name = check_name(name or unique_name(root, timestamp()))
    final = root / name
    if final.exists():
        raise BerthError(f"backup {name!r} exists already", fix="choose another --name")
    partial = root / f".{name}.partial-{os.getpid()}"
    images = service_images(project)
    try:
        partial.mkdir(mode=0o700)
        entries: dict[str, Any] = {}
        for service in services:
            assert service.backup is not None  # checked by stateful_services
            folder = partial / service.name
            folder.mkdir(mode=0o700)
            info = service.backup.dump(project, folder)
            entries[service.name] = {"image": images.get(service.name, ""), "info": info}
        manifest = {
            "kind": KIND,
            "format": FORMAT,
            "name": name,
            "project": project.values["COMPOSE_PROJECT_NAME"],
            "env": project.env_name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "berth": template_version(project.root),
            "services": entries,
            "files": file_table(partial),
        }
        secrets.write_atomic(partial / MANIFEST, json.dumps(manifest, indent=2) + "\n", 0o600)
        fsync_tree(partial)
        os.rename(partial, final)
        fsync_dir(root)
    except BaseException as exc:
        # Ctrl-C, a failed dump, a full disk: no partial bundle stays behind.
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
            raise BerthError(
                f"writing backup {name} failed",
                why=f"{exc.strerror} ({exc.filename or root})",
                fix=f"free disk space where backups go (`df -h {root}`), then run it again",
            ) from exc
        raise
    return final


#: A write that failed for want of room, not because of a bug: said in one line.
WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def unique_name(root: Path, base: str) -> str:
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every payload file under `folder`."""
    table = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            table[rel] = {"size": path.stat().st_size, "sha256": sha256(path)}
    return table


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(path)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def service_images(project: Project) -> dict[str, str]:
    config = json.loads(project.compose.config())
    return {name: spec.get("image", "") for name, spec in config.get("services", {}).items()}


def template_version(root: Path) -> dict[str, str]:
    """berth's version from .copier-answers.yml (`_commit`, `_src_path`), if present."""
    found = {}
    path = root / ".copier-answers.yml"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key in ("_commit", "_src_path"):
                found[key.lstrip("_")] = value.strip().strip("'\"")
    return found


# ── reading and verifying ───────────────────────────────────────────────────
@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, Any] | None
    problem: str = ""  # why it is not a usable bundle ("" when it looks whole)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def created(self) -> datetime:
        if self.manifest:
            try:
                return datetime.fromisoformat(str(self.manifest["created_at"]))
            except (KeyError, ValueError):
                pass
        return datetime.fromtimestamp(self.path.stat().st_mtime, UTC)

    @property
    def services(self) -> list[str]:
        return sorted((self.manifest or {}).get("services", {}))

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def read_manifest(folder: Path) -> dict[str, Any]:
    """The parsed manifest of `folder`, or a BerthError saying why it is unusable."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BerthError(
            f"{folder.name} is not a berth backup",
            why=f"it has no {MANIFEST}",
            fix="pick a bundle listed by `inv backups`",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BerthError(
            f"{folder.name}/{MANIFEST} is damaged", why=f"not valid JSON ({exc})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BerthError(f"{folder.name} is not a berth backup", why=f"{MANIFEST} is foreign")
    if manifest.get("format") != FORMAT:
        raise BerthError(
            f"{folder.name} has backup format {manifest.get('format')!r}",
            why=f"this berth reads format {FORMAT}",
            fix="restore it with the berth version that wrote it",
        )
    if not isinstance(manifest.get("files"), dict) or not isinstance(
        manifest.get("services"), dict
    ):
        raise BerthError(f"{folder.name}/{MANIFEST} is damaged", why="files/services missing")
    return manifest


def inspect(folder: Path) -> Bundle:
    """A cheap look (manifest + file sizes), as `inv backups` shows it."""
    try:
        manifest = read_manifest(folder)
    except BerthError as error:
        return Bundle(folder, None, error.why or error.what)
    problem = ""
    for rel, entry in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problem = f"{rel} is missing"
            break
        if path.stat().st_size != entry.get("size"):
            problem = (
                f"{rel} has {path.stat().st_size} bytes, the manifest says {entry.get('size')}"
            )
            break
    return Bundle(folder, manifest, problem)


def verify(folder: Path) -> dict[str, Any]:
    """Check the manifest and every file's size and SHA-256; returns the manifest."""
    manifest = read_manifest(folder)
    listed = set(manifest["files"])
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {
        MANIFEST
    }
    fix = "restore another bundle (`inv backups` lists them)"
    for rel in sorted(listed - present):
        raise BerthError(f"backup {folder.name} is incomplete", why=f"{rel} is missing", fix=fix)
    for rel in sorted(present - listed):
        raise BerthError(
            f"backup {folder.name} was changed", why=f"{rel} is not in its manifest", fix=fix
        )
    for rel, entry in sorted(manifest["files"].items()):
        path = folder / rel
        size = path.stat().st_size
        if size != entry.get("size"):
            raise BerthError(
                f"backup {folder.name} is damaged",
                why=f"{rel} has {size} bytes, the manifest says {entry.get('size')} (truncated?)",
                fix=fix,
            )
        if sha256(path) != entry.get("sha256"):
            raise BerthError(
                f"backup {folder.name} is damaged",
                why=f"{rel} does not match its SHA-256 in the manifest",
                fix=fix,
            )
    return manifest


def bundles(project: Project, *, checksums: bool = False) -> list[Bundle]:
    """Every bundle folder under backups/, oldest first (partial folders excluded).

    Without `checksums` a bundle counts as verified when its manifest is whole
    and every file has the recorded size (a backup is only published after a
    full check); with it, every file is re-read against its SHA-256.
    """
    root = backups_dir(project)
    if not root.is_dir():
        return []
    found = []
    for path in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        bundle = inspect(path)
        if checksums and not bundle.problem:
            try:
                verify(path)
            except BerthError as error:
                bundle = Bundle(path, bundle.manifest, error.why or error.what)
        found.append(bundle)
    return sorted(found, key=lambda b: (b.created, b.name))


def resolve(project: Project, name: str, *, latest: bool) -> Path:
    if name and latest:
        raise BerthError("give a backup NAME or --latest, not both")
    if latest:
        # Safety backups are restored by name: "latest" means the newest one
        # the user made, not the state just replaced by a restore or reset.
        usable = [b for b in bundles(project) if not b.problem and not is_safety(b.name)]
        if not usable:
            raise BerthError("there is no usable backup", fix="make one with `inv backup`")
        return usable[-1].path
    if not name:
        raise BerthError(
            "which backup?", fix="give its NAME (`inv backups` lists them) or --latest"
        )
    folder = backups_dir(project) / check_name(name)
    if not folder.is_dir():
        raise BerthError(f"no backup named {name!r}", fix="`inv backups` lists them")
    return folder


# ── restoring ───────────────────────────────────────────────────────────────
@dataclass(frozen=True)
class Plan:
    """A verified bundle and what restoring it will do."""

    folder: Path
    manifest: dict[str, Any]
    services: list[Service]


def plan_restore(project: Project, folder: Path, only: Sequence[str] = ()) -> Plan:
    """Verify `folder` and check it against the running servers; changes nothing."""
    manifest = verify(folder)
    saved = manifest["services"]
    names = list(only) or sorted(saved)
    absent = [n for n in names if n not in saved]
    if absent:
        raise BerthError(
            f"backup {folder.name} holds no data of {', '.join(absent)}",
            fix=f"it holds: {', '.join(sorted(saved)) or 'nothing'}",
        )
    services = stateful_services(project, names)
    require_running(project, services)
    for service in services:
        assert service.backup is not None
        why = service.backup.incompatible(
            saved[service.name]["info"], service.backup.server(project)
        )
        if why:
            raise BerthError(
                f"backup {folder.name} cannot be restored into this {service.name}",
                why=why,
                fix="restore it into a server of the same or a newer version",
            )
    return Plan(folder, manifest, services)


def restore(project: Project, plan: Plan, *, safety: bool = True) -> list[str]:
    """Take a safety backup of the same services, then load each payload."""
    notes = []
    if safety:
        kept = create(
            project, plan.services, name=unique_name(backups_dir(project), safety_name("restore"))
        )
        notes.append(f"safety backup of the current data: {kept.name}")
    for service in plan.services:
        assert service.backup is not None
        info = plan.manifest["services"][service.name]["info"]
        notes += service.backup.restore(project, plan.folder / service.name, info)
    return notes


SAFETY_PREFIX = "safety-before-"


def safety_name(action: str) -> str:
    return f"{SAFETY_PREFIX}{action}-{timestamp()}"


def is_safety(name: str) -> bool:
    return name.startswith(SAFETY_PREFIX)


def confirm(question: str, command: str, *, yes: bool) -> None:
    """Ask before destroying data; refuse when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BerthError(
            "refusing to change data without confirmation",
            why="stdin is not a terminal, so nobody can answer",
            fix=f"run `{command}`",
        )
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise BerthError("cancelled; nothing was changed")


# ── reset ───────────────────────────────────────────────────────────────────
def owned_volumes(project: Project, services: Sequence[Service]) -> list[str]:
    """The named volumes of `services` that exist, after checking they are ours.

    Two folders rendered with the same project name share Compose's project
    (and so its volume names); volumes carry no folder label, but containers
    carry `com.docker.compose.project.working_dir`. Refuse when any container
    of this project name, or any container using one of the volumes, was
    created from another folder.
    """
    config = json.loads(project.compose.config())
    declared = config.get("volumes", {})
    wanted = []
    for service in services:
        for mount in config["services"].get(service.name, {}).get("volumes", []):
            if mount.get("type") == "volume" and mount.get("source") in declared:
                wanted.append(declared[mount["source"]].get("name") or mount["source"])
    existing = [v for v in wanted if _docker("volume", "inspect", v, check=False).returncode == 0]
    filters = [f"label=com.docker.compose.project={project.name}"]
    filters += [f"volume={v}" for v in existing]
    here = project.root.resolve()
    ours = False
    for flt in filters:
        out = _docker(
            "ps", "--all", "--filter", flt, "--format",
            '{{.Names}}\t{{.Label "com.docker.compose.project.working_dir"}}',
        ).stdout  # fmt: skip
        for line in out.splitlines():
            container, _, folder = line.partition("\t")
            if folder and Path(folder).resolve() != here:
                raise BerthError(
                    f"refusing to delete volumes of project {project.name}",
                    why=f"container {container} of that name belongs to {folder}, not {here}",
                    fix="give this project its own COMPOSE_PROJECT_NAME in .env",
                )
            ours = ours or bool(folder)
    if existing and not ours:
        # No container vouches for the volumes: they may be another folder's.
        raise BerthError(
            f"cannot tell whether volumes {', '.join(existing)} belong to this folder",
            why="no container of this project exists to show where it was created",
            fix="run `inv up` first (then reset takes a safety backup too)",
        )
    return existing


def remove(project: Project, services: Sequence[Service], volumes: Sequence[str]) -> None:
    """Remove the services' containers, then their named volumes."""
    names = [s.name for s in services]
    project.compose.run(
        "rm", "--stop", "--force", "--volumes", *names, what="removing the containers"
    )
    if volumes:
        _docker("volume", "rm", *volumes, what="removing the data volumes")


def _docker(*args: str, check: bool = True, what: str = "") -> subprocess.CompletedProcess[str]:
    return proc.run(["docker", *args], check=check, what=what)


# ── pruning ─────────────────────────────────────────────────────────────────
def prune_selection(
    found: Sequence[Bundle], *, keep: int | None, older_than_days: float | None, now: datetime
) -> list[Bundle]:
    """Bundles to delete: all but the newest `keep`, and of those only ones older than
    `older_than_days` when given (either rule alone works too)."""
    if keep is None and older_than_days is None:
        raise BerthError("say what to prune", fix="give --keep N and/or --older-than DAYS")
    if keep is not None and keep < 0:
        raise BerthError(f"--keep {keep} is negative", fix="give --keep 0 or more")
    newest_first = sorted(found, key=lambda b: (b.created, b.name), reverse=True)
    candidates = newest_first[keep:] if keep is not None else newest_first
    if older_than_days is not None:
        limit = older_than_days * 86400
        candidates = [b for b in candidates if (now - b.created).total_seconds() > limit]
    return candidates


def stale_partials(project: Project) -> list[Path]:
    """Partial folders left by a process that no longer runs (killed hard)."""
    root = backups_dir(project)
    stale = []
    for path in root.glob(".*.partial-*") if root.is_dir() else ():
        pid = path.name.rpartition("-")[2]
        if not pid.isdigit() or not _alive(int(pid)):
            stale.append(path)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ── output helpers ──────────────────────────────────────────────────────────
def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop returns


def human_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"
