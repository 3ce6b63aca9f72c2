"""Fixtures for live tests against this project's running stack.

Service tests live next to their service (services/<name>/test_<name>.py);
each also defines `write_marker(url, token)` / `read_marker(url)` so that
tests/test_restart.py can prove every service keeps its data across restarts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from berth.compose import Container
from berth.project import Project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project() -> Project:
    return Project(ROOT)


def healthy_containers(project: Project) -> list[Container]:
    containers = project.compose.ps()
    states = {c.service: (c.state, c.health) for c in containers}
    expected = {s.name for s in project.services}
    bad = {
        name: states.get(name, ("missing", ""))
        for name in expected
        if states.get(name, ("missing", "")) != ("running", "healthy")
    }
    if bad:
        pytest.fail(f"stack {project.name} is not healthy ({bad}); run `inv up` first")
    return containers


@pytest.fixture(scope="session")
def stack(project: Project) -> list[Container]:
    return healthy_containers(project)


@pytest.fixture(scope="session")
def urls(project: Project, stack: list[Container]) -> dict[str, dict[str, str]]:
    """{service: {name: url}} with real passwords, from the published ports."""
    return project.urls(stack, reveal=True)


def service_test_modules() -> dict[str, ModuleType]:
    """Each services/<name>/test_<name>.py, imported under a private name."""
    modules = {}
    for path in sorted(ROOT.glob("services/*/test_*.py")):
        spec = importlib.util.spec_from_file_location(f"_berth_probe_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[path.parent.name] = module
    return modules
