"""Backup hook of Valkey and Redis: an RDB snapshot taken by the server (BGSAVE).

`KeyValue(name).service()` (berth/keyvalue.py) attaches it, so both servers
share one implementation; only the tool names differ (`valkey-cli` or
`redis-cli`, `valkey-check-rdb` or `redis-check-rdb`, both shipped in the
upstream images).

The admin user's commands go to the CLI on stdin inside the container, so its
password is never on a command line. A backup asks for BGSAVE and polls the
server until its count of completed snapshots goes up, then copies the
snapshot out.

A restore cannot load a snapshot into a running server, so it stops the
server, moves the current files aside inside the volume, puts the snapshot in
place and starts it again. With `appendonly yes` the server loads the
append-only files, not dump.rdb, at start: the snapshot is therefore also
installed as the base of a fresh append-only directory (the multi-part AOF
manifest of Redis 7+ and Valkey). If the server does not come back healthy
with the expected keys, the old files are put back.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from berth.clock import poll, timestamp
from berth.errors import BerthError
from berth.service import Backup, Info

if TYPE_CHECKING:
    from berth.keyvalue import KeyValue
    from berth.project import Project

SNAPSHOT = "dump.rdb"
SAVE_TIMEOUT = 3600.0
#: First bytes of an RDB file (Valkey 9 may write either).
RDB_MAGICS = (b"REDIS", b"VALKEY")


def fields(text: str) -> dict[str, str]:
    """`INFO` output as a dict."""
    pairs = (line.strip().partition(":") for line in text.splitlines() if ":" in line)
    return {key: value for key, _sep, value in pairs}


def matching(names: list[str]) -> list[str]:
    """find(1) tests selecting any of `names`: ( -name a -o -name b )."""
    tests: list[str] = []
    for name in names:
        tests += (["-o"] if tests else []) + ["-name", name]
    return ["(", *tests, ")"]


def stage(
    tmp: Path, snapshot_file: Path, filename: str, aof: bool, aof_dir: str, aof_file: str
) -> Path:
    """Host folders to copy in: new/ (the files the server will load) and an empty old/."""
    new = tmp / "new"
    new.mkdir()
    (tmp / "old").mkdir()
    shutil.copyfile(snapshot_file, new / filename)
    (new / filename).chmod(0o600)  # the images' umask 0077, kept
    if aof:
        # The snapshot becomes the base of a fresh append-only directory; the
        # server starts a new increment file on top of it.
        base = f"{aof_file}.1.base.rdb"
        (new / aof_dir).mkdir()
        shutil.copyfile(snapshot_file, new / aof_dir / base)
        (new / aof_dir / f"{aof_file}.manifest").write_text(f"file {base} seq 1 type b\n")
        for path in (new / aof_dir).iterdir():
            path.chmod(0o600)
        (new / aof_dir).chmod(0o700)
    return tmp


@dataclass(frozen=True)
class SnapshotBackup:
    """The backup hook of the Redis-protocol server `kv`."""

    kv: KeyValue

    @property
    def name(self) -> str:
        return self.kv.name

    @property
    def title(self) -> str:
        return self.kv.title

    def hook(self) -> Backup:
        return Backup(
            server=self.server, dump=self.dump, incompatible=self.incompatible,
            restore=self.restore,
        )  # fmt: skip

    # ── talking to the server ──────────────────────────────────────────────
    def cli(self, project: Project, *commands: str) -> str:
        """Run commands as the admin user; returns the CLI's output."""
        password = project.secret(self.kv.admin_password)
        script = "".join(f"{line}\n" for line in (f"AUTH admin {password}", *commands))
        out = project.compose.run(
            "exec", "-T", self.name, f"{self.name}-cli", input=script,
            what=f"talking to {self.title}",
        ).stdout  # fmt: skip
        lines = out.splitlines()
        if not lines or lines[0].strip() != "OK":
            raise BerthError(
                f"{self.title} refused the admin login", why=lines[0] if lines else "no answer",
                fix="run `inv up` so the ACL file matches secrets/",
            )  # fmt: skip
        return "\n".join(lines[1:])

    def config(self, project: Project, *names: str) -> list[str]:
        values = []
        for name in names:
            lines = self.cli(project, f"CONFIG GET {name}").splitlines()
            values.append(lines[1] if len(lines) > 1 else "")
        return values

    def server(self, project: Project) -> Info:
        info = fields(self.cli(project, "INFO server"))
        version = info.get(f"{self.name}_version") or info.get("redis_version", "0")
        return {"version": version, "major": int(version.split(".")[0])}

    def incompatible(self, saved: Info, current: Info) -> str:
        if int(current["major"]) < int(saved["major"]):
            return (
                f"its snapshot was written by {self.title} {saved['version']} and this server"
                f" is {current['version']}; a server loads snapshots of its own or older"
                " versions only"
            )
        return ""

    # ── backup ─────────────────────────────────────────────────────────────
    def dump(self, project: Project, folder: Path) -> Info:
        info = self.server(project)
        self.snapshot(project)
        directory, filename = self.config(project, "dir", "dbfilename")
        keys = self.check_rdb(project, f"{directory}/{filename}")
        target = folder / SNAPSHOT
        project.compose.run(
            "cp", f"{self.name}:{directory}/{filename}", str(target),
            what=f"copying the {self.title} snapshot",
        )  # fmt: skip
        with target.open("rb") as handle:
            if not handle.read(6).startswith(RDB_MAGICS):
                raise BerthError(f"the {self.title} snapshot copied out is not an RDB file")
        return {**info, "snapshot": SNAPSHOT, "keys": keys}

    def check_rdb(self, project: Project, path: str) -> int:
        """<name>-check-rdb reads the whole file (checksum included); returns its key count."""
        result = project.compose.run(
            "exec", "-T", self.name, f"{self.name}-check-rdb", path, check=False,
            what="checking a snapshot",
        )  # fmt: skip
        found = re.search(r"^\[info\] (\d+) keys read", result.stdout, re.MULTILINE)
        if result.returncode != 0 or not found:
            output = (result.stdout + result.stderr).strip().splitlines()
            errors = [line for line in output if "ERROR" in line or "Wrong" in line]
            raise BerthError(
                f"the {self.title} snapshot {path} is damaged",
                why=(errors or output or [f"exit status {result.returncode}"])[-1],
            )
        return int(found.group(1))

    def snapshot(self, project: Project) -> None:
        """BGSAVE, then wait until the server reports one more completed snapshot."""
        before = int(fields(self.cli(project, "INFO persistence")).get("rdb_saves", "0"))

        def started() -> bool:
            answer = self.cli(project, "BGSAVE SCHEDULE")
            # A snapshot already running may predate this backup: wait, then ask again.
            return "already in progress" not in answer

        poll(started, timeout=SAVE_TIMEOUT, what=f"starting a {self.title} snapshot")

        def finished() -> dict[str, str]:
            state = fields(self.cli(project, "INFO persistence"))
            done = state.get("rdb_bgsave_in_progress") == "0" and int(state["rdb_saves"]) > before
            return state if done else {}

        state = poll(finished, timeout=SAVE_TIMEOUT, what=f"the {self.title} snapshot")
        if state.get("rdb_last_bgsave_status") != "ok":
            raise BerthError(
                f"{self.title} could not write its snapshot",
                why=f"rdb_last_bgsave_status:{state.get('rdb_last_bgsave_status')}",
                fix=f"check free disk space and `inv logs --service {self.name}`",
            )

    # ── restore ────────────────────────────────────────────────────────────
    def restore(self, project: Project, folder: Path, info: Info) -> list[str]:
        stamp = timestamp()
        directory, filename, aof, aof_dir, aof_file = self.config(
            project, "dir", "dbfilename", "appendonly", "appenddirname", "appendfilename"
        )
        new, old = f"{directory}/.berth-new-{stamp}", f"{directory}/.berth-old-{stamp}"
        names = [filename, aof_dir] if aof == "yes" else [filename]
        with tempfile.TemporaryDirectory() as tmp:
            staged = stage(Path(tmp), folder / info["snapshot"], filename, aof == "yes", aof_dir,
                           aof_file)  # fmt: skip
            # Copied in while the server runs: new names it does not know about.
            for part, path in (("new", new), ("old", old)):
                project.compose.run(
                    "cp", str(staged / part), f"{self.name}:{path}", what="copying in"
                )
        try:
            expected = self.check_rdb(project, f"{new}/{filename}")
        except BaseException:
            project.compose.run("exec", "-T", self.name, "rm", "-rf", new, old, check=False)
            raise
        # Stopping makes the server write its own final files; only then are they moved.
        project.compose.run("stop", self.name, what=f"stopping {self.title}")
        try:
            self.helper(project, "find", directory, "-mindepth", "1", "-maxdepth", "1",
                        *matching(names), "-exec", "mv", "{}", f"{old}/", ";")  # fmt: skip
            self.helper(project, "find", new, "-mindepth", "1", "-maxdepth", "1",
                        "-exec", "mv", "{}", f"{directory}/", ";")  # fmt: skip
            self.start(project)
            self.check_keys(project, expected)
        except BaseException:
            self.roll_back(project, directory, names, old, stamp)
            raise
        project.compose.run("exec", "-T", self.name, "rm", "-rf", new, old, check=False)
        return [f"{self.name}: restored {expected} keys"]

    def helper(self, project: Project, *argv: str) -> None:
        """Run a file command in a one-off container of the stopped service (same volume)."""
        project.compose.run(
            "run", "--rm", "--no-deps", "-T", "--entrypoint", argv[0], self.name, *argv[1:],
            what=f"moving {self.title}'s files in its volume",
        )  # fmt: skip

    def start(self, project: Project) -> None:
        project.compose.run(
            "up", "--detach", "--wait", "--no-deps", self.name, what=f"starting {self.title}",
            fix=f"`inv logs --service {self.name}` shows why",
        )  # fmt: skip

    def check_keys(self, project: Project, expected: int) -> None:
        """The server loaded every key of the snapshot (keys past their TTL excepted)."""
        state = fields(self.cli(project, "INFO persistence"))
        loaded = int(state.get("rdb_last_load_keys_loaded", "-1"))
        expired = int(state.get("rdb_last_load_keys_expired", "0"))
        if loaded + expired != expected:
            raise BerthError(
                f"{self.title} did not load the snapshot as expected",
                why=f"it loaded {loaded} keys ({expired} expired), the snapshot holds {expected}",
            )

    def roll_back(
        self, project: Project, directory: str, names: list[str], old: str, stamp: str
    ) -> None:
        """Put the files from before the restore back and start the server on them."""
        failed = f"{directory}/.berth-failed-{stamp}"
        project.compose.run("stop", self.name, check=False)
        self.helper(project, "mkdir", "-p", failed)
        self.helper(project, "find", directory, "-mindepth", "1", "-maxdepth", "1",
                    *matching(names), "-exec", "mv", "{}", f"{failed}/", ";")  # fmt: skip
        self.helper(project, "find", old, "-mindepth", "1", "-maxdepth", "1",
                    "-exec", "mv", "{}", f"{directory}/", ";")  # fmt: skip
        self.start(project)
        # The rejected files are the bundle's payload, which stays in backups/.
        new = f"{directory}/.berth-new-{stamp}"
        project.compose.run("exec", "-T", self.name, "rm", "-rf", failed, old, new, check=False)
