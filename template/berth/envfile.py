"""Read `.env` strictly, the way Docker Compose will, and fail with file:line.

Compose interpolates `$` inside unquoted and double-quoted values, so a value
such as `pa$word` silently loses characters there; we refuse it instead and
say how to write it. Values from the process environment win over the file,
as they do for Compose.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from berth.errors import BerthError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def parse(text: str, source: str = ".env") -> dict[str, str]:
    """Parse dotenv text into a dict; raise BerthError naming file:line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise BerthError(
                f"{where}: malformed line {raw.strip()[:40]!r}",
                fix="write KEY=value (letters, digits and _ in KEY) or start the line with #",
            )
        values[key] = _value(rest.strip(), where, key)
    return values


def _value(text: str, where: str, key: str) -> str:
    if text.startswith("'"):
        end = text.find("'", 1)
        if end < 0:
            raise BerthError(f"{where}: {key} has no closing single quote", fix="add the closing '")
        _only_comment(text[end + 1 :], where, key)
        return text[1:end]
    if text.startswith('"'):
        out, i = [], 1
        while i < len(text):
            char = text[i]
            if char == "\\" and i + 1 < len(text):
                out.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
                i += 2
                continue
            if char == '"':
                _only_comment(text[i + 1 :], where, key)
                value = "".join(out)
                _no_dollar(value, where, key)
                return value
            out.append(char)
            i += 1
        raise BerthError(f"{where}: {key} has no closing double quote", fix='add the closing "')
    value = re.split(r"\s+#", text, maxsplit=1)[0].strip()
    _no_dollar(value, where, key)
    return value


def _only_comment(rest: str, where: str, key: str) -> None:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise BerthError(
            f"{where}: unexpected text after the quoted value of {key}",
            fix="quote the whole value or start a comment with #",
        )


def _no_dollar(value: str, where: str, key: str) -> None:
    if "$" in value:
        raise BerthError(
            f"{where}: {key} contains '$', which Docker Compose would interpolate",
            fix=f"wrap the value in single quotes: {key}='...'",
        )


def load(path: Path) -> dict[str, str]:
    """Parse one dotenv file (missing file: BerthError with the fix)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BerthError(f"{path.name} is missing", fix="run `inv up`, which creates it") from exc
    return parse(text, source=path.name)


def ensure(env_path: Path, example_path: Path) -> bool:
    """Create `.env` from `.env.example` when missing; True if it was created."""
    if env_path.exists():
        return False
    tmp = env_path.with_name(env_path.name + ".tmp")
    shutil.copyfile(example_path, tmp)
    os.replace(tmp, env_path)
    return True


def effective(file_values: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Values as Compose sees them: the process environment overrides the file."""
    return {key: environ.get(key, value) for key, value in file_values.items()}


def missing_keys(values: Mapping[str, str], example: Mapping[str, str]) -> list[str]:
    """Keys documented in .env.example but absent from .env."""
    return sorted(set(example) - set(values))
