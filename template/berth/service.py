"""What berth knows about one service, declared in services/<name>/service.py.

Each service folder holds its compose fragments, config, tests and a
`service.py` that sets `SERVICE = Service(...)`: the secrets it needs, files
derived from them, and the connection strings `inv up` prints.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from berth.errors import BerthError

if TYPE_CHECKING:
    from berth.project import Project
    from berth.rotate import Rotation

#: Looks up a secret by name (returns a mask instead when printing masked).
SecretLookup = Callable[[str], str]


@dataclass(frozen=True)
class Endpoint:
    """A published port as seen from the host."""

    host: str
    port: int


#: Published endpoints of one service, by port name.
Endpoints = Mapping[str, Endpoint]


@dataclass(frozen=True)
class Port:
    """A container port that the dev overlay publishes on the host.

    name: key of the endpoint handed to `urls` ("main", "http", ...).
    container: the port inside the container.
    env_var: the .env variable holding the dev host port.
    """

    name: str
    container: int
    env_var: str


@dataclass(frozen=True)
class Service:
    """Declaration of one compose service.

    name: the compose service name (and folder name).
    ports: published ports; their host side is read back from the running
      containers, so connection strings are right for any overlay.
    secrets: files under secrets/ generated when missing.
    derived: builds files from .env values and secrets (e.g. an ACL of hashes)
      that are rewritten on every `inv up`; returns {file name: (content, mode)}.
    urls: named connection strings, given an Endpoint per port name.
    preflight: warnings about .env values, printed by `inv up` before starting.
    generate: creates files that are not derived from passwords (e.g. TLS
      certificates) when missing, or anew when `renew`; returns notes.
    after_up: runs once the stack is healthy (e.g. to sync a role); returns notes.
    stateful: keeps data in a volume (its test module must have a restart probe).
    rotate: applies `inv secrets --rotate` in the running stack (berth/rotate.py):
      called for the secret's owner first, then for every other service that
      has a hook (which returns [] for names it does not depend on); stores the
      new value with `rotation.store()` where the service needs it and proves
      it with a real client; returns notes. Its secrets are rotatable only
      when the owner has this hook.
    """

    name: str
    ports: tuple[Port, ...] = ()
    secrets: tuple[str, ...] = ()
    derived: Callable[[Mapping[str, str], SecretLookup], dict[str, tuple[str, int]]] | None = None
    urls: Callable[[Mapping[str, str], SecretLookup, Endpoints], dict[str, str]] | None = None
    preflight: Callable[[Mapping[str, str]], list[str]] | None = None
    generate: Callable[[Project, bool], list[str]] | None = None
    after_up: Callable[[Project], list[str]] | None = None
    stateful: bool = True
    rotate: Callable[[Rotation], list[str]] | None = None


def load_services(services_dir: Path) -> tuple[Service, ...]:
    """Import every services/<name>/service.py, in folder-name order."""
    found = []
    for path in sorted(services_dir.glob("*/service.py")):
        folder = path.parent.name
        spec = importlib.util.spec_from_file_location(f"berth_services.{folder}", path)
        if spec is None or spec.loader is None:  # pragma: no cover - defensive
            raise BerthError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        service = getattr(module, "SERVICE", None)
        if not isinstance(service, Service) or service.name != folder:
            raise BerthError(
                f"{path} must define SERVICE = Service(name={folder!r}, ...)",
                fix="see berth/service.py for the fields",
            )
        found.append(service)
    return tuple(found)
