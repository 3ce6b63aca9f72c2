"""Helpers for the live tests (conftest.py, tests/, services/*/test_*.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from berth.compose import Container
from berth.project import Project


def inv(project: Project, *args: str) -> None:
    """Run an `inv` task in the project, against the stack under test (its --env)."""
    subprocess.run(
        [sys.executable, "-m", "invoke", *args, "--env", project.env_name],
        cwd=project.root,
        check=True,
    )


def healthy_containers(project: Project) -> tuple[list[Container], str]:
    """The stack's containers, and a problem description unless all are healthy."""
    containers = project.containers()
    states = {c.service: (c.state, c.health) for c in containers}
    bad = {
        s.name: states.get(s.name, ("missing", ""))
        for s in project.services
        if states.get(s.name) != ("running", "healthy")
    }
    problem = f"stack {project.name} is not healthy ({bad}); run `inv up` first" if bad else ""
    return containers, problem


def service_test_modules(project: Project) -> dict[str, ModuleType]:
    """Restart probes: services/<name>/test_<name>.py modules with write/read_marker."""
    modules = {}
    for path in sorted(project.root.glob("services/*/test_*.py")):
        if path.stem != f"test_{path.parent.name}":
            continue  # extra tests (e.g. test_pgvector.py) have no restart probe
        spec = importlib.util.spec_from_file_location(f"_berth_probe_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "write_marker"):
            modules[path.parent.name] = module
    return modules
