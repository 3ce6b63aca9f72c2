"""The single path to `docker compose`: every call is built here.

`Compose.argv()` adds the project name, project directory, env file and `-f`
files of the chosen environment, so no task ever assembles a compose command
line by hand (and none is a shell string).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from berth import proc
from berth.errors import CommandError

#: Host addresses of a port published on every interface.
ALL_INTERFACES = ("", "0.0.0.0", "::")  # noqa: S104 - values to recognise, not to bind


@dataclass(frozen=True)
class Container:
    """One row of `docker compose ps --format json`."""

    service: str
    name: str
    state: str
    health: str
    exit_code: int
    publishers: tuple[tuple[str, int, int], ...]  # (host ip, host port, container port)
    id: str = ""

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Container:
        publishers = tuple(
            sorted(
                {
                    (p.get("URL") or "", int(p["PublishedPort"]), int(p["TargetPort"]))
                    for p in row.get("Publishers") or ()
                    if p.get("PublishedPort")
                }
            )
        )
        return cls(
            service=row.get("Service", ""),
            name=row.get("Name", ""),
            state=row.get("State", ""),
            health=row.get("Health", "") or "",
            exit_code=int(row.get("ExitCode") or 0),
            publishers=publishers,
            id=row.get("ID", ""),
        )

    def host_port(self, container_port: int) -> tuple[str, int] | None:
        """The host (ip, port) publishing `container_port`, preferring IPv4."""
        matches = [(ip, port) for ip, port, target in self.publishers if target == container_port]
        matches.sort(key=lambda pair: ":" in pair[0])
        return matches[0] if matches else None


@dataclass(frozen=True)
class Compose:
    project_dir: Path
    project_name: str
    files: tuple[Path, ...]
    env_file: Path
    profiles: tuple[str, ...] = field(default=())
    #: Variables set for compose over the process environment and the env file.
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        cmd = [
            "docker", "compose",
            "--project-name", self.project_name,
            "--project-directory", str(self.project_dir),
            "--env-file", str(self.env_file),
        ]  # fmt: skip
        for path in self.files:
            cmd += ["--file", str(path)]
        for profile in self.profiles:
            cmd += ["--profile", profile]
        return [*cmd, *args]

    def run(
        self,
        *args: str,
        capture: bool = True,
        check: bool = True,
        timeout: float | None = None,
        input: str | None = None,
        what: str = "",
        fix: str = "",
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = proc.run(
                self.argv(*args),
                cwd=self.project_dir,
                env=self.env,
                capture=capture,
                check=check,
                timeout=timeout,
                input=input,
                what=what,
                fix=fix,
            )
        except CommandError as exc:
            self.require(exc.stderr if capture else None)
            raise
        if result.returncode != 0:
            self.require(result.stderr if capture else None)
        return result

    def require(self, stderr: str | None = None) -> None:
        """Raise a clear error when `docker compose` itself is missing (only
        called after a failure, so a working setup never pays for the probe)."""
        from berth.doctor import COMPOSE_MISSING, compose_missing

        if stderr is None:
            stderr = proc.run(["docker", "compose", "version"], check=False).stderr or ""
        if COMPOSE_MISSING.search(stderr):
            raise compose_missing(stderr)

    def stream(
        self,
        *args: str,
        stdout: IO[bytes] | int | None = None,
        stdin: IO[bytes] | int | None = None,
        what: str = "",
        fix: str = "",
    ) -> bytes:
        """Binary data to/from a compose command (e.g. `exec -T postgres pg_dump`)."""
        return proc.stream(
            self.argv(*args), stdout=stdout, stdin=stdin, cwd=self.project_dir, env=self.env,
            what=what, fix=fix,
        )  # fmt: skip

    def ps(self, *, all_containers: bool = True) -> list[Container]:
        args = ["ps", "--format", "json"]
        if all_containers:
            args.append("--all")
        out = self.run(*args, what="listing the stack's containers").stdout
        return [Container.from_json(row) for row in parse_json_rows(out)]

    def config(self, *, fmt: str = "json") -> str:
        return self.run("config", "--format", fmt, what="validating the compose files").stdout


def parse_json_rows(text: str) -> list[dict[str, Any]]:
    """Compose prints one JSON object per line (>= 2.21) or one array (older)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]
