"""Migrations that `copier update` runs inside a generated project (`inv` tasks).

copier.yml's `_migrations` call these as argument lists, from the *new*
template version (`invoke --search-root <template> --collection migrations`),
with the project as the working directory. They change only what copier
cannot: files the project owns and the template never renders, above all
`.env`. Every step is idempotent (an update may be retried) and writes
atomically; none deletes a value.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from invoke import Context, Exit, task

PROJECT = Path.cwd()
sys.path.insert(0, str(PROJECT))  # the project's own berth package

from berth import envfile  # noqa: E402 - needs PROJECT on sys.path
from berth.errors import BerthError  # noqa: E402
from berth.secrets import write_atomic  # noqa: E402

ENV = PROJECT / ".env"
EXAMPLE = PROJECT / ".env.example"


def _say(text: str) -> None:
    print(f"berth migrate: {text}")


def _fail(error: BerthError) -> Exit:
    return Exit(f"berth migrate: error: {error.line()}", code=1)


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^(\s*(?:export\s+)?){re.escape(key)}(\s*=)", re.MULTILINE)


@task(help={"old": "the variable's name in the old template", "new": "its new name"})
def rename_env(c: Context, old: str, new: str) -> None:
    """Rename a variable in .env, keeping its value (a template renamed it)."""
    if not ENV.exists():
        _say(f".env does not exist; nothing to rename ({old} -> {new})")
        return
    text = ENV.read_text(encoding="utf-8")
    try:
        values = envfile.parse(text)
    except BerthError as error:
        raise _fail(error) from None
    if old not in values:
        _say(f".env has no {old}; nothing to rename")
        return
    if new in values:
        raise _fail(
            BerthError(
                f".env has both {old} and {new}",
                why=f"the template renamed {old} to {new}",
                fix=f"keep the value you want under {new}, delete the {old} line, update again",
            )
        )
    write_atomic(ENV, _key_line(old).sub(rf"\g<1>{new}\g<2>", text), mode=0o600)
    _say(f".env: renamed {old} to {new} (value kept)")


@task
def env_sync(c: Context) -> None:
    """Add to .env the variables the new .env.example defines (your values stay)."""
    if not ENV.exists():
        _say(".env does not exist yet; `inv up` creates it from .env.example")
        return
    try:
        values = envfile.load(ENV)
        example_text = EXAMPLE.read_text(encoding="utf-8")
        example = envfile.parse(example_text, source=EXAMPLE.name)
    except BerthError as error:
        raise _fail(error) from None
    missing = envfile.missing_keys(values, example)
    if not missing:
        _say(".env has every variable of .env.example")
        return
    # The example's own lines, so quoting and values are exactly as documented.
    lines = [
        line for line in example_text.splitlines() for key in missing if _key_line(key).match(line)
    ]
    text = ENV.read_text(encoding="utf-8")
    addition = "\n# Added by `copier update` from .env.example (documented there):\n"
    write_atomic(ENV, text.rstrip("\n") + "\n" + addition + "\n".join(lines) + "\n", mode=0o600)
    _say(f".env: added {', '.join(missing)} with the documented defaults")


@task(help={"src": "path in the project, as the old template named it", "dst": "its new path"})
def move(c: Context, src: str, dst: str) -> None:
    """Move a file or folder the project owns to where the new template expects it."""
    source, target = PROJECT / src, PROJECT / dst
    if not source.exists():
        _say(f"{src} does not exist; nothing to move")
        return
    if target.exists():
        raise _fail(
            BerthError(
                f"cannot move {src} to {dst}: {dst} exists",
                fix=f"merge {src} into {dst} by hand, delete {src}, then update again",
            )
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    _say(f"moved {src} to {dst}")
