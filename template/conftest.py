"""Fixtures for live tests against this project's running stack.

Service tests live next to their service (services/<name>/test_<name>.py);
each also defines `write_marker(urls, token)` / `read_marker(urls)` so that
tests/test_restart.py can prove every service keeps its data across restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.compose import Container
from berth.project import Project
from berth.testing import healthy_containers

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def project() -> Project:
    """The stack under test: BERTH_ENV (set to `test` by `nox -s integration`), else dev."""
    return Project(ROOT, env_name=os.environ.get("BERTH_ENV", "dev"))


@pytest.fixture(scope="session")
def stack(project: Project) -> list[Container]:
    containers, problem = healthy_containers(project)
    if problem:
        pytest.fail(problem)
    return containers


@pytest.fixture(scope="session")
def urls(project: Project, stack: list[Container]) -> dict[str, dict[str, str]]:
    """{service: {name: url}} with real passwords, from the published ports."""
    return project.urls(stack, reveal=True)
