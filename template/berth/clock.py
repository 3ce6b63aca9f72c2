"""Two small helpers of backups and their service hooks, kept apart so a
service can use them without importing berth/backup.py (`inv up` loads every
service's hooks, and should not pay for the backup machinery)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from berth.errors import BerthError


def timestamp(now: datetime | None = None) -> str:
    """A UTC time stamp for names: 20261122-173000."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def poll(condition: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition()` until it returns something truthy (server state, not time)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise BerthError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)
