"""Checks for this project: `nox -l` lists them; CI runs `nox -s lint compose integration`.

Each session installs requirements.txt into its own virtualenv. To reuse an
environment that already has them: `nox --no-venv --no-install -s ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from berth.compose import Compose  # noqa: E402 - needs ROOT on sys.path
from berth.project import ENVIRONMENTS, Project  # noqa: E402

nox.options.sessions = ["lint", "compose", "integration"]
nox.options.default_venv_backend = "uv|virtualenv"
REQUIREMENTS = ("-r", "requirements.txt")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) on the Python, yamllint on every YAML file."""
    session.install(*REQUIREMENTS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("yamllint", "--strict", ".")


@nox.session
def compose(session: nox.Session) -> None:
    """`docker compose config` for the base file and every overlay, against .env.example."""
    session.install(*REQUIREMENTS)
    combinations = {"base": ("compose.yaml",), **{k: e.files for k, e in ENVIRONMENTS.items()}}
    for label, files in combinations.items():
        helper = Compose(
            project_dir=ROOT,
            project_name=f"{ROOT.name.lower()}-config-check",
            files=tuple(ROOT / name for name in files),
            env_file=ROOT / ".env.example",
        )
        session.log(f"{label}: {' + '.join(files)}")
        session.run(*helper.argv("config", "--quiet"), external=True)


@nox.session
def integration(session: nox.Session) -> None:
    """Live pytest against a separate test stack (<name>-test), removed afterwards.

    The test stack has its own project name and ephemeral ports, so this runs
    beside a dev stack started with `inv up` without touching it.
    """
    session.install(*REQUIREMENTS)
    env = {"BERTH_ENV": "test"}
    try:
        session.run("inv", "up", "--env", "test", env=env)
        session.run("pytest", *(session.posargs or ["-q"]), env=env)
    finally:
        test_stack = Project(ROOT, env_name="test").compose
        session.run(*test_stack.argv("down", "--volumes", "--remove-orphans"), external=True)
