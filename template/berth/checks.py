"""Pre-flight checks run by `inv up`: fast, and each failure names the fix."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from berth import engine, proc
from berth.compose import Container
from berth.errors import BerthError, CommandError
from berth.project import Project

MIN_ENGINE = 25  # healthcheck start_interval needs Docker Engine 25


def engine_version() -> str:
    """Server version of the reachable Docker engine, or BerthError."""
    version = engine.query(engine.server_version) or ""
    if not version:
        try:
            out = proc.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=20)
        except CommandError as exc:
            raise BerthError(
                "the Docker engine is not reachable",
                why=exc.why,
                fix="start Docker (e.g. `sudo systemctl start docker`) and check `docker info`",
            ) from exc
        version = out.stdout.strip()
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_ENGINE:
        raise BerthError(
            f"Docker Engine {version or '?'} is too old",
            why=f"health checks with start_interval need >= {MIN_ENGINE}",
            fix="upgrade Docker Engine",
        )
    return version


def ports(project: Project, running: list[Container]) -> None:
    """Every dev host port is free, or already published by this project's stack."""
    for problem in port_problems(project, running):
        raise problem


def port_problems(project: Project, running: list[Container]) -> list[BerthError]:
    """Each taken or doubly used dev host port, as the error `inv up` would raise."""
    if not project.environment.fixed_ports:
        return []  # test: the engine picks free ports; prod: nothing is published
    ours = {port for c in running for _ip, port, _t in c.publishers}
    seen: dict[int, str] = {}
    problems = []
    for spec in (p for service in project.services for p in service.ports):
        port, var = project.host_port(spec), spec.env_var
        if port in seen:
            problems.append(
                BerthError(
                    f".env: {var} and {seen[port]} are both {port}",
                    fix=f"give {var} another port, e.g. {free_port_near(port + 1)}",
                )
            )
            continue
        seen[port] = var
        if port in ours:
            continue
        holder = port_in_use(project.bind_address, port)
        if holder is not None:
            problems.append(
                BerthError(
                    f"port {port} ({var}) on {project.bind_address} is taken by {holder}",
                    fix=f"stop it, or set {var}={free_port_near(port + 1)} in .env",
                )
            )
    return problems


def port_in_use(address: str, port: int) -> str | None:
    """None if `address:port` can be bound now, else who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers (docker-proxy included) do: without SO_REUSEADDR, connections
        # in TIME_WAIT after a restart would make a free port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return describe_listener(port)
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BerthError(
                    f"BIND_ADDRESS {address} is not an address of this machine",
                    fix="set BIND_ADDRESS=127.0.0.1 in .env",
                ) from exc
            raise
    return None


def free_port_near(start: int) -> int:
    for port in range(start, min(start + 200, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return start


def describe_listener(port: int) -> str:
    """Best effort 'process NAME (pid N)' for a TCP listener on `port` (Linux /proc)."""
    inodes = _listening_inodes(port)
    if inodes:
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                fds = list((pid_dir / "fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    comm = (pid_dir / "comm").read_text().strip()
                    detail = f"process {comm} (pid {pid_dir.name})"
                    if comm == "docker-proxy":
                        detail += f", i.e. container {_container_publishing(port)}"
                    return detail
    return "another process (see `ss -ltnp`)"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _container_publishing(port: int) -> str:
    out = proc.run(
        ["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"], check=False
    )
    return out.stdout.strip().replace("\n", ", ") or "unknown"
