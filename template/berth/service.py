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

from berth.errors import BerthError

#: Looks up a secret by name (returns a mask instead when printing masked).
SecretLookup = Callable[[str], str]


@dataclass(frozen=True)
class Endpoint:
    """A published port as seen from the host."""

    host: str
    port: int


@dataclass(frozen=True)
class Service:
    """Declaration of one compose service.

    name: the compose service name (and folder name).
    port: the container port apps connect to; its host side is published by
      the overlay and found with `docker compose ps`.
    port_var: the .env variable holding the dev host port.
    secrets: files under secrets/ generated when missing.
    derived: builds files from the secrets (e.g. an ACL with hashes) that are
      rewritten on every `inv up`; returns {file name: (content, mode)}.
    urls: named connection strings for an endpoint.
    """

    name: str
    port: int
    port_var: str
    secrets: tuple[str, ...] = ()
    derived: Callable[[SecretLookup], dict[str, tuple[str, int]]] | None = None
    urls: Callable[[Mapping[str, str], SecretLookup, Endpoint], dict[str, str]] | None = None


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
