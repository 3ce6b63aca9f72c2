"""Live: render a project, run its stack and its own checks, always tear down.

Each case uses a unique project name and free ports, so a developer's own
stack (even one rendered from this template) is never touched.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.project import Project
from harness import free_port, missing_images, render, run_in

pytestmark = pytest.mark.live

CASES = {
    "defaults": {},
    "postgres-only": {"services": ["postgres"]},
    "valkey-only": {"services": ["valkey"]},
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def project_dir(
    request: pytest.FixtureRequest, tmp_path: Path, docker_engine: None
) -> Iterator[Path]:
    slug = f"berth-live-{request.param}-{uuid.uuid4().hex[:6]}"
    answers = {"project_slug": slug, "postgres_port": free_port(), "valkey_port": free_port()}
    root = render(tmp_path / slug, **answers, **CASES[request.param])
    missing = missing_images(Project(root).service_names())
    if missing:
        pytest.fail(f"images missing locally: {missing}; run `docker pull IMAGE` (CI: provision)")
    try:
        yield root
    finally:
        # Always, also on failure: remove containers, networks and volumes.
        Project(root).compose.run("down", "--volumes", "--remove-orphans", check=False)


def timed_up(root: Path) -> float:
    started = time.monotonic()
    run_in(root, "invoke", "up")
    return time.monotonic() - started


def test_render_up_check_down(project_dir: Path, timings: list[str]) -> None:
    cold = timed_up(project_dir)
    run_in(project_dir, "invoke", "stop")
    warm = timed_up(project_dir)
    timings.append(f"{project_dir.name}: cold inv up -> healthy {cold:.2f} s, warm {warm:.2f} s")

    project = Project(project_dir)
    assert {c.service for c in project.compose.ps()} == {s.name for s in project.services}

    run_in(project_dir, "nox", "--no-venv", "--no-install", "-s", "lint", "compose", "integration")

    run_in(project_dir, "invoke", "down")
    assert project.compose.ps() == []
    label = f"label=com.docker.compose.project={project.name}"
    volumes = subprocess.run(
        ["docker", "volume", "ls", "--quiet", "--filter", label],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(volumes) == len(project.services), "inv down keeps every data volume"

    assert_no_secret_reaches_git(project)


def assert_no_secret_reaches_git(project: Project) -> None:
    root = project.root
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only"], cwd=root, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    assert ".env" not in staged
    assert [p for p in staged if p.startswith("secrets/")] == [
        "secrets/.gitignore",
        "secrets/README.md",
    ]
    values = [project.secret(name) for name in project.secret_names()]
    for path in staged:
        text = (root / path).read_text(errors="replace")
        assert not any(value in text for value in values), f"a secret leaked into {path}"
