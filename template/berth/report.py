"""Plain-text tables and status rows for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from berth import engine, proc
from berth.compose import Container


@dataclass(frozen=True)
class Status:
    service: str
    state: str
    health: str
    restarts: int
    uptime: str
    ports: str


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def statuses(containers: list[Container], now: datetime | None = None) -> list[Status]:
    """Rows for `inv status`; restart counts and start times come from `docker inspect`."""
    details = _inspect([c.id for c in containers if c.id])
    now = now or datetime.now(UTC)
    rows = []
    for c in sorted(containers, key=lambda c: c.service):
        info = next((v for k, v in details.items() if c.id and k.startswith(c.id)), {})
        started = (info.get("State") or {}).get("StartedAt", "")
        rows.append(
            Status(
                service=c.service,
                state=c.state,
                health=c.health or "-",
                restarts=int(info.get("RestartCount", 0)),
                uptime=_age(started, now) if c.state == "running" else "-",
                ports=", ".join(
                    f"{ip or '*'}:{port}->{target}" for ip, port, target in c.publishers
                )
                or "-",
            )
        )
    return rows


def statuses_json(rows: list[Status]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2)


def _inspect(ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    found = engine.query(lambda sock: {i: engine.inspect(i, sock) for i in ids})
    if found is not None:
        return {item["Id"]: item for item in found.values()}
    out = proc.run(["docker", "inspect", *ids], check=False)
    if out.returncode != 0:
        return {}
    return {item["Id"]: item for item in json.loads(out.stdout or "[]")}


def _age(started: str, now: datetime) -> str:
    try:
        seconds = int(now.timestamp()) - int(engine.timestamp(started))  # whole seconds
    except ValueError:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
