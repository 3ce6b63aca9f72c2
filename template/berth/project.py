"""One generated project on disk: its settings, secrets, services and stack."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from berth import engine, envfile, secrets
from berth.compose import ALL_INTERFACES, Compose, Container
from berth.errors import BerthError
from berth.service import Endpoint, Port, Service, load_services


@dataclass(frozen=True)
class Environment:
    """One way to run the stack.

    files: compose files, in order (compose.yaml includes services/*/compose.yaml;
      each overlay includes the services' own compose.<env>.yaml).
    suffix: appended to COMPOSE_PROJECT_NAME, so stacks of different
      environments never share containers or volumes.
    fixed_ports: publishes the .env host ports (checked before starting).
    """

    files: tuple[str, ...]
    suffix: str = ""
    fixed_ports: bool = False


ENVIRONMENTS: dict[str, Environment] = {
    "dev": Environment(("compose.yaml", "compose.override.yaml"), fixed_ports=True),
    "test": Environment(("compose.yaml", "compose.test.yaml"), suffix="-test"),
    "prod": Environment(("compose.yaml", "compose.prod.yaml"), suffix="-prod"),
}
MASK = "****"


@dataclass
class Project:
    root: Path
    env_name: str = "dev"
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    #: Set by `inv up` before starting containers (seconds since the epoch).
    up_started: float | None = None

    def __post_init__(self) -> None:
        if self.env_name not in ENVIRONMENTS:
            raise BerthError(
                f"unknown environment {self.env_name!r}",
                fix=f"use one of: {', '.join(ENVIRONMENTS)}",
            )

    # ── files ──────────────────────────────────────────────────────────────
    @property
    def env_path(self) -> Path:
        return self.root / ".env"

    @property
    def example_path(self) -> Path:
        return self.root / ".env.example"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @cached_property
    def services(self) -> tuple[Service, ...]:
        return load_services(self.root / "services")

    def service_names(self) -> list[str]:
        return [service.name for service in self.services]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise BerthError(
            f"no service named {name!r} in this project",
            fix=f"use one of: {', '.join(self.service_names())}",
        )

    # ── settings ───────────────────────────────────────────────────────────
    @cached_property
    def values(self) -> dict[str, str]:
        """Effective .env values (the process environment overrides the file)."""
        file_values = envfile.load(self.env_path)
        missing = envfile.missing_keys(file_values, envfile.load(self.example_path))
        if missing:
            raise BerthError(
                f".env lacks {', '.join(missing)}",
                fix="copy those lines from .env.example into .env",
            )
        return envfile.effective(file_values, self.environ)

    @property
    def environment(self) -> Environment:
        return ENVIRONMENTS[self.env_name]

    @property
    def env_flag(self) -> str:
        """What `inv` commands in messages need to reach this environment."""
        return "" if self.env_name == "dev" else f" --env {self.env_name}"

    @property
    def name(self) -> str:
        return self.values["COMPOSE_PROJECT_NAME"] + self.environment.suffix

    @property
    def bind_address(self) -> str:
        return self.values.get("BIND_ADDRESS", "127.0.0.1")

    def host_port(self, port: Port) -> int:
        raw = self.values.get(port.env_var, "")
        if not raw.isdigit() or not 1024 <= int(raw) <= 65535:
            raise BerthError(
                f".env: {port.env_var}={raw!r} is not a port from 1024 to 65535",
                fix=f"set {port.env_var} to a free port such as {port.container + 10000}",
            )
        return int(raw)

    # ── compose ────────────────────────────────────────────────────────────
    @cached_property
    def compose(self) -> Compose:
        return Compose(
            project_dir=self.root,
            project_name=self.name,
            files=tuple(self.root / name for name in self.environment.files),
            env_file=self.env_path,
            env=cpu_ceilings(self.values, os.cpu_count() or 1),
        )

    def containers(self) -> list[Container]:
        """The stack's containers: from the Engine API when local, else `compose ps`."""
        found = engine.query(lambda sock: engine.containers(self.name, sock), self.environ)
        return self.compose.ps() if found is None else found

    # ── secrets ────────────────────────────────────────────────────────────
    def secret_names(self) -> list[str]:
        return [name for service in self.services for name in service.secrets]

    def secret(self, name: str) -> str:
        return secrets.read(self.secrets_dir, name)

    def prepare(self) -> list[str]:
        """Create .env and missing secrets; refresh derived files. Returns notes."""
        notes = []
        if envfile.ensure(self.env_path, self.example_path):
            notes.append("created .env from .env.example")
        created = secrets.ensure(self.secrets_dir, self.secret_names())
        notes += [f"generated secrets/{name}" for name in created]
        notes += [f"wrote secrets/{name}" for name in self.write_derived()]
        return notes + self.generate(renew=False)

    def write_derived(self) -> list[str]:
        """Rewrite files derived from the secrets (hashes, auth files) that changed."""
        written = []
        for service in self.services:
            if service.derived:
                files = service.derived(self.values, self.secret)
                written += secrets.write_derived(self.secrets_dir, files)
        return written

    def generate(self, *, renew: bool) -> list[str]:
        """Files such as TLS certificates: created when missing, or anew when `renew`."""
        return [n for s in self.services if s.generate for n in s.generate(self, renew)]

    # ── connection strings ─────────────────────────────────────────────────
    def urls(self, containers: list[Container], *, reveal: bool) -> dict[str, dict[str, str]]:
        """Connection strings of every running service, from its published port."""
        lookup = self.secret if reveal else (lambda _name: MASK)
        by_service = {c.service: c for c in containers}
        result: dict[str, dict[str, str]] = {}
        for service in self.services:
            container = by_service.get(service.name)
            if not service.urls or container is None:
                continue
            endpoints = {}
            for port in service.ports:
                published = container.host_port(port.container)
                if published:
                    host, number = published
                    if host in ALL_INTERFACES:
                        host = "127.0.0.1"
                    endpoints[port.name] = Endpoint(host, number)
            if len(endpoints) == len(service.ports):
                result[service.name] = service.urls(self.values, lookup, endpoints)
        return result

    def after_up(self) -> list[str]:
        return [note for s in self.services if s.after_up for note in s.after_up(self)]

    def warnings(self) -> list[str]:
        return [w for s in self.services if s.preflight for w in s.preflight(self.values)]


def cpu_ceilings(values: Mapping[str, str], cpus: int) -> dict[str, str]:
    """The `*_CPUS` settings that exceed this machine's CPU count, lowered to it.

    Docker refuses a CPU limit above the machine's count ("Range of CPUs is
    from 0.01 to 1.00"), so the production size of 2 would stop `inv up` on a
    one-CPU machine, where a ceiling of 2 means the same as a ceiling of 1.
    """
    lowered = {}
    for key, raw in values.items():
        if not key.endswith("_CPUS"):
            continue
        try:
            wanted = float(raw)
        except ValueError:
            continue  # not ours to judge: compose names the bad value
        if wanted > cpus:
            lowered[key] = str(cpus)
    return lowered
