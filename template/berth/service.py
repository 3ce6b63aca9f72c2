"""What berth knows about one service, declared in services/<name>/service.py.

Each service folder holds its compose fragments, config, tests and a
`service.py` that sets `SERVICE = Service(...)`: the secrets it needs, files
derived from them, and the connection strings `inv up` prints.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

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


#: Facts a backup hook records about its server and payload (JSON-able).
Info = dict[str, Any]


@dataclass(frozen=True)
class Backup:
    """How `inv backup`/`inv restore` save and load one stateful service.

    berth/backup.py runs these; services/<name>/backup.py implements them.
    server: facts about the running server, e.g. {"version": "18.6", "major": 18}.
    dump: writes the payload into the (empty) folder, verifies it, and
      returns facts for the manifest (server facts included).
    incompatible: given the manifest's facts and the current server's,
      why the payload cannot be restored here ("" when it can).
    restore: loads a payload verified against the manifest; it must switch
      over only once the new data is complete, leaving the old data intact
      on failure. Returns notes.
    """

    server: Callable[[Project], Info]
    dump: Callable[[Project, Path], Info]
    incompatible: Callable[[Info, Info], str]
    restore: Callable[[Project, Path, Info], list[str]]


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
    backup: how `inv backup`/`inv restore` save and load its data; required
      when stateful (berth/backup.py refuses a stateful service without one).
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
    backup: Backup | None = None


def load_module(path: Path) -> ModuleType:
    """Import a Python file of a service folder (e.g. its backup.py) by path:
    service folders are not packages, so service.py cannot `import` siblings."""
    return _import(f"berth_services.{path.parent.name}.{path.stem}", path)


def _import(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise BerthError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as `import` does: dataclasses look their
    # module up in sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_services(services_dir: Path) -> tuple[Service, ...]:
    """Import every services/<name>/service.py, in folder-name order."""
    found = []
    for path in sorted(services_dir.glob("*/service.py")):
        folder = path.parent.name
        module = _import(f"berth_services.{folder}", path)
        service = getattr(module, "SERVICE", None)
        if not isinstance(service, Service) or service.name != folder:
            raise BerthError(
                f"{path} must define SERVICE = Service(name={folder!r}, ...)",
                fix="see berth/service.py for the fields",
            )
        found.append(service)
    return tuple(found)
