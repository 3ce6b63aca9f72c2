"""The one subprocess primitive: argument lists in, text out, errors typed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from berth.errors import BerthError, CommandError

INSTALL_HINTS = {
    "docker": "install Docker Engine >= 25 and the Compose v2 plugin (docs.docker.com/engine)",
}


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = None,
    what: str = "",
    fix: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (never through a shell) and return the completed process.

    With `capture=False` the child writes straight to our terminal (progress
    bars, `--follow`). A non-zero exit raises CommandError when `check`.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=full_env,
            text=True,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        tool = cmd[0]
        raise BerthError(
            f"`{tool}` is not installed or not on PATH",
            fix=INSTALL_HINTS.get(tool, f"install {tool}"),
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise BerthError(
            f"`{' '.join(cmd[:4])} …` did not finish within {timeout:g} s",
            fix=fix or "check `inv status` and `inv logs`",
        ) from exc
    if check and result.returncode != 0:
        raise CommandError(
            cmd, result.returncode, result.stdout or "", result.stderr or "", what=what, fix=fix
        )
    return result
