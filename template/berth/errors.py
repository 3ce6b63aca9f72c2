"""The one fatal error type: what failed, why, and the command to run next."""

from __future__ import annotations

from collections.abc import Sequence


class BerthError(Exception):
    """A failure the user can act on.

    `str(error)` is a single line: "<what>: <why> (fix: <fix>)". `details`
    (log tails, tables) are printed after it by the task runner.
    """

    def __init__(self, what: str, *, why: str = "", fix: str = "", details: str = "") -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.details = details
        super().__init__(self.line())

    def line(self) -> str:
        text = self.what
        if self.why:
            text += f": {self.why}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class CommandError(BerthError):
    """A command exited non-zero; carries everything needed to debug it."""

    def __init__(
        self,
        cmd: Sequence[str],
        returncode: int,
        stdout: str = "",
        stderr: str = "",
        *,
        what: str = "",
        fix: str = "",
    ) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        last = _last_line(stderr) or _last_line(stdout) or f"exit status {returncode}"
        super().__init__(
            what or f"`{' '.join(self.cmd[:4])} …` failed",
            why=last,
            fix=fix,
            details=stderr.strip(),
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
