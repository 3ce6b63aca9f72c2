"""The one subprocess primitive: argument lists in, text out, errors typed."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from berth.errors import BerthError, CommandError

#: Seconds a child gets to wind down after Ctrl-C before it is killed. Killing
#: compose at once (what subprocess.run does) can leave a half-done recreate
#: behind: the old container renamed, the new one holding the name.
INTERRUPT_GRACE = 30

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
    process = _spawn(
        cmd,
        cwd=cwd,
        env=env,
        text=True,
        stdin=subprocess.PIPE if input is not None else None,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    with process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise BerthError(
                f"`{' '.join(cmd[:4])} …` did not finish within {timeout:g} s",
                fix=fix or "check `inv status` and `inv logs`",
            ) from exc
        except KeyboardInterrupt:
            _let_finish(process)
            raise
    result = subprocess.CompletedProcess(list(cmd), process.returncode or 0, stdout, stderr)
    if check and result.returncode != 0:
        raise CommandError(
            cmd, result.returncode, result.stdout or "", result.stderr or "", what=what, fix=fix
        )
    return result


def _spawn(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, **options: Any
) -> subprocess.Popen[Any]:
    """Start `cmd` with `env` over our environment; a missing program is a
    BerthError naming how to install it."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        return subprocess.Popen(list(cmd), env=full_env, **options)
    except FileNotFoundError as exc:
        tool = cmd[0]
        raise BerthError(
            f"`{tool}` is not installed or not on PATH",
            fix=INSTALL_HINTS.get(tool, f"install {tool}"),
        ) from exc


def _let_finish(process: subprocess.Popen[str]) -> None:
    """After Ctrl-C: let the child stop cleanly, then make sure it is gone.

    On a terminal the child got the same SIGINT from the process group; when
    only we were signalled (`kill -INT <pid>`), pass it on.
    """
    try:
        process.communicate(timeout=0.5)
        return
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=INTERRUPT_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def stream(
    cmd: Sequence[str],
    *,
    stdout: IO[bytes] | int | None = None,
    stdin: IO[bytes] | int | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "",
    fix: str = "",
) -> bytes:
    """Run `cmd` with binary stdin/stdout connected to open files (or DEVNULL/PIPE).

    For dumps and restores: the data flows between the child and the file in
    the kernel, never through our memory. stderr is kept for the error
    message. On any exception (Ctrl-C included) the child is killed first, so
    an interrupted backup stops writing at once. Returns stdout when PIPE.
    """
    child = _spawn(cmd, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    try:
        out, err = child.communicate()
    except BaseException:
        child.kill()
        child.wait()
        raise
    if child.returncode != 0:
        text = (err or b"").decode(errors="replace")
        raise CommandError(cmd, child.returncode, "", text, what=what, fix=fix)
    return out or b""
