"""Read-only Docker Engine API over the local unix socket, for fast state queries.

Spawning `docker compose ps` or `docker inspect` costs 60-150 ms each (a Go
binary starting up); one HTTP GET on the socket costs a few milliseconds, and
`inv up` asks several times. Anything that changes state still goes through
the compose helper. `socket_path()` returns None (callers then use the CLI)
when the CLI would talk to another engine: DOCKER_HOST not unix://, or a
docker context other than the default.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from berth.compose import Container

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 10.0
T = TypeVar("T")


def query(call: Callable[[str], T], environ: Mapping[str, str] | None = None) -> T | None:
    """`call(socket)` on the local engine; None when there is no usable socket or
    the request fails, so the caller falls back to the CLI (whose errors users know)."""
    sock = socket_path(environ)
    if not sock:
        return None
    try:
        return call(sock)
    except OSError:
        return None


def socket_path(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONTEXT", "default") != "default":
        return None
    host = env.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    config = Path(env.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        context = json.loads(config.read_text()).get("currentContext", "default")
    except (OSError, ValueError):
        context = "default"
    if context not in ("", "default"):
        return None
    return DEFAULT_SOCKET if Path(DEFAULT_SOCKET).exists() else None


def get(path: str, sock: str) -> Any:
    """GET an Engine API path and decode the JSON body (OSError if unreachable).

    HTTP/1.0 on purpose: the engine then answers with a plain body and closes
    the connection, so a socket is all we need (http.client alone costs more
    import time than the whole request).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(TIMEOUT)
        conn.connect(sock)
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    if len(parts) < 2 or parts[1] != "200":
        raise OSError(f"engine answered {status_line!r} to GET {path}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise OSError(f"engine sent an unreadable answer to GET {path}") from exc


def timestamp(text: str) -> float:
    """Seconds since the epoch of an Engine API time (RFC 3339, maybe nanoseconds)."""
    from datetime import datetime

    head, _, rest = text.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6]
    stamp = f"{head}.{fraction or '0'}" if "+" not in head[10:] else head
    value = datetime.fromisoformat(stamp + ("" if "+" in stamp[10:] else "+00:00"))
    return value.timestamp()


def server_version(sock: str) -> str:
    return str(get("/version", sock).get("Version", ""))


def containers(project: str, sock: str) -> list[Container]:
    """Containers of a compose project, as `docker compose ps --all` lists them."""
    filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
    rows = get(f"/containers/json?all=1&filters={quote(filters)}", sock)
    return [_container(row) for row in rows if _is_service(row)]


def inspect(container_id: str, sock: str) -> dict[str, Any]:
    return dict(get(f"/containers/{quote(container_id)}/json", sock))


def _is_service(row: dict[str, Any]) -> bool:
    return (row.get("Labels") or {}).get("com.docker.compose.oneoff", "False") != "True"


def _container(row: dict[str, Any]) -> Container:
    status = row.get("Status", "")
    health = ""
    for word, value in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"),
                        ("(health: starting)", "starting")):  # fmt: skip
        if word in status:
            health = value
    ports = tuple(
        (p.get("IP", ""), int(p["PublicPort"]), int(p["PrivatePort"]))
        for p in row.get("Ports") or ()
        if p.get("PublicPort")
    )
    return Container(
        service=(row.get("Labels") or {}).get("com.docker.compose.service", ""),
        name=(row.get("Names") or ["/"])[0].lstrip("/"),
        state=row.get("State", ""),
        health=health,
        exit_code=int(match.group(1)) if (match := re.search(r"Exited \((\d+)\)", status)) else 0,
        publishers=tuple(sorted(set(ports))),
        id=row.get("Id", "")[:12],  # the short form `docker compose ps` prints
    )
