"""The project lock: one stack-changing task at a time per project folder.

`inv up`, `down`, `reset`, `backup` and `restore` take it, so a backup never
reads a database that a reset is deleting. It is an `flock` on `.berth/lock`
(released by the kernel when the process dies, so it never goes stale); the
holder writes who it is into the file, so a waiting task can name it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from berth.errors import BerthError

#: Seconds a second task waits for the lock before giving up (env: BERTH_LOCK_WAIT).
DEFAULT_WAIT = 30.0
POLL_SECONDS = 0.1


def lock_path(root: Path) -> Path:
    return root / ".berth" / "lock"


def wait_seconds(environ: dict[str, str] | None = None) -> float:
    raw = (environ if environ is not None else os.environ).get("BERTH_LOCK_WAIT", "")
    try:
        return float(raw) if raw else DEFAULT_WAIT
    except ValueError:
        raise BerthError(
            f"BERTH_LOCK_WAIT={raw!r} is not a number of seconds", fix="unset it or set e.g. 30"
        ) from None


@contextmanager
def held(root: Path, task: str, *, wait: float | None = None) -> Iterator[None]:
    """Hold the project lock for the block; wait up to `wait` seconds for it."""
    path = lock_path(root)
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, wait_seconds() if wait is None else wait)
        holder = {"pid": os.getpid(), "task": task, "started": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise busy(path, wait) from None
            # The lock has no wake-up signal to wait on; polling its state is the wait.
            time.sleep(POLL_SECONDS)


def holder(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def busy(path: Path, wait: float) -> BerthError:
    info = holder(path)
    who = (
        f"pid {info.get('pid', '?')} is running `inv {info.get('task', '?')}`"
        f" since {info.get('started', '?')}"
        if info
        else "another berth task holds it"
    )
    return BerthError(
        f"the project is locked by another task (waited {wait:g} s)",
        why=who,
        fix="wait for it to finish and run this again (BERTH_LOCK_WAIT=SECONDS waits longer)",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
