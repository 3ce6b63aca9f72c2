"""Generated secrets: one random value per file, 0600, written atomically.

Values come from `secrets.token_urlsafe` (256 bits): URL-safe, so they need no
percent-encoding in connection strings and no quoting in config files.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Iterable
from pathlib import Path

from berth.errors import BerthError

SECRET_BYTES = 32


def write_atomic(path: Path, content: str, mode: int = 0o600) -> None:
    """Write `content` to `path` via a same-folder temp file and rename.

    The temp file is created with `mode` from the start, so the value is never
    readable by others even for an instant; a crash leaves the old file whole.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate() -> str:
    """A new random secret value (the one generator for every secret)."""
    return _random.token_urlsafe(SECRET_BYTES)


def ensure_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)


def ensure(folder: Path, names: Iterable[str]) -> list[str]:
    """Create each missing secret; never overwrite. Returns the names created."""
    ensure_dir(folder)
    created = []
    for name in names:
        path = folder / name
        if path.exists():
            continue
        write_atomic(path, generate())
        created.append(name)
    return created


def read(folder: Path, name: str) -> str:
    path = folder / name
    try:
        value = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BerthError(f"secret {name} is missing", fix="run `inv secrets`") from exc
    except PermissionError as exc:
        raise BerthError(
            f"secret {path} is not readable by this user", fix=f"chmod 600 {path}"
        ) from exc
    # A hand-written file usually ends in a newline; containers read secret
    # files with `$(cat ...)`, which drops it, so every derived hash must too.
    value = value.rstrip("\r\n")
    if not value:
        raise BerthError(f"secret {path} is empty", fix=f"delete {path} and run `inv secrets`")
    return value


def write_derived(folder: Path, files: dict[str, tuple[str, int]]) -> list[str]:
    """(Re)write derived files whose content changed; returns the names written."""
    written = []
    for name, (content, mode) in files.items():
        path = folder / name
        if path.exists() and path.read_text(encoding="utf-8") == content:
            if (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
            continue
        write_atomic(path, content, mode)
        written.append(name)
    return written
