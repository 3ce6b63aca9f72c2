"""Shared fixtures: import paths, Docker availability, live timing summary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))  # harness
sys.path.insert(0, str(REPO / "template"))  # berth, the generated projects' tooling

TIMINGS: list[str] = []


def _docker_problem(need_engine: bool) -> str:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if not need_engine:
        probe = ["docker", "compose", "version"]
    else:
        probe = ["docker", "info", "--format", "{{.ServerVersion}}"]
    result = subprocess.run(probe, capture_output=True, text=True, check=False)
    return "" if result.returncode == 0 else f"`{' '.join(probe)}` failed: {result.stderr.strip()}"


def require_docker(need_engine: bool) -> None:
    """Docker tests fail (never skip) under CI; elsewhere they skip with the reason."""
    problem = _docker_problem(need_engine)
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"Docker is required in CI: {problem}")
        pytest.skip(f"Docker unavailable: {problem}")


@pytest.fixture(scope="session")
def compose_cli() -> None:
    """`docker compose` can run (no engine needed: config validation)."""
    require_docker(need_engine=False)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A reachable Docker engine."""
    require_docker(need_engine=True)


@pytest.fixture(scope="session")
def timings() -> list[str]:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("berth timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)
