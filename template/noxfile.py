"""Checks for this project: `nox -l` lists them; CI runs `nox -s lint compose scan integration`.

Each session installs requirements.txt into its own virtualenv. To reuse an
environment that already has them: `nox --no-venv --no-install -s ...`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from berth import envfile, policy  # noqa: E402 - needs ROOT on sys.path
from berth.compose import Compose  # noqa: E402
from berth.project import ENVIRONMENTS, Project  # noqa: E402
from berth.service import load_services  # noqa: E402

nox.options.sessions = ["lint", "compose", "scan", "integration"]
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
    """Validate the base file and every overlay (against .env.example): policy, compose-lint."""
    session.install(*REQUIREMENTS)
    example = envfile.load(ROOT / ".env.example")
    stateful = [s.name for s in load_services(ROOT / "services") if s.stateful]
    public_ok = example.get("BIND_ADDRESS") == "0.0.0.0"  # noqa: S104 - the explicit opt-in
    combinations = {"base": ("compose.yaml",), **{k: e.files for k, e in ENVIRONMENTS.items()}}
    violations = []
    for label, files in combinations.items():
        helper = Compose(
            project_dir=ROOT,
            project_name=f"{ROOT.name.lower()}-config-check",
            files=tuple(ROOT / name for name in files),
            env_file=ROOT / ".env.example",
        )
        session.log(f"{label}: {' + '.join(files)}")
        session.run(*helper.argv("config", "--quiet"), external=True)
        text = helper.config()
        config = json.loads(text)
        with tempfile.TemporaryDirectory(prefix="compose-lint-") as tmp:
            resolved = Path(tmp) / f"{label}.json"
            resolved.write_text(text, encoding="utf-8")
            session.run(*policy.compose_lint_argv(ROOT, resolved))
        violations += [
            (label, v) for v in policy.check(config, stateful=stateful, public_ok=public_ok)
        ]
    if violations:
        session.error(f"compose policy violations:\n{policy.table(violations)}")
    session.log(f"policy: {len(combinations)} configurations, 0 violations")


@nox.session
def scan(session: nox.Session) -> None:
    """Security scan, as `inv scan` (pass its options after --, e.g. -- --fail-on medium)."""
    session.install(*REQUIREMENTS)
    session.run("inv", "scan", *session.posargs)


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
