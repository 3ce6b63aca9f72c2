"""Fast tests: render every service subset into tmp_path and check the result."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from berth import policy
from berth.project import ENVIRONMENTS
from berth.service import load_services
from harness import (
    ALTERNATIVES,
    copier_config,
    default_services,
    free_port_answers,
    full_catalog,
    render,
    service_choices,
)

CHOICES = service_choices()
SUBSETS = [
    list(combo)
    for size in range(1, len(CHOICES) + 1)
    for combo in itertools.combinations(CHOICES, size)
    if "pgbouncer" not in combo or "postgres" in combo  # the pooler needs its server
    if not any(set(pair) <= set(combo) for pair in ALTERNATIVES)  # valkey or redis
]


def test_matrix_comes_from_copier_yml() -> None:
    assert CHOICES == ["postgres", "pgbouncer", "valkey", "redis", "clickhouse", "nginx"]
    assert full_catalog() == ["postgres", "pgbouncer", "valkey", "clickhouse", "nginx"]
    assert not [s for s in SUBSETS if {"valkey", "redis"} <= set(s)]
    assert default_services() == ["postgres", "valkey"]
    assert copier_config()["_subdirectory"] == "template"


@pytest.fixture(scope="module", params=SUBSETS, ids=lambda s: "+".join(s))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("render")
    return render(dst / "proj", project_slug="matrix-test", services=request.param)


def selected(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "services").iterdir())


def test_tree_has_exactly_the_chosen_services(rendered: Path) -> None:
    chosen = selected(rendered)
    for name in CHOICES:
        folder = rendered / "services" / name
        assert folder.is_dir() == (name in chosen)
        if name in chosen:
            parts = ("compose.dev.yaml", "compose.test.yaml", "compose.prod.yaml", "service.py")
            for part in (*parts, f"test_{name}.py"):
                assert (folder / part).is_file(), f"{name}/{part} missing"
            assert list(folder.glob("compose.yaml*")), f"{name}/compose.yaml missing"
    assert not list(rendered.rglob("*.jinja")), "no template leftovers"
    assert not list(rendered.glob("services/*/_*")), "render-time partials are not copied"
    for required in (
        "compose.yaml", "compose.override.yaml", "compose.test.yaml", "compose.prod.yaml",
        ".env.example", ".gitignore", "README.md",
        "tasks.py", "noxfile.py", "conftest.py", "requirements.txt", "pyproject.toml",
        ".copier-answers.yml", "secrets/.gitignore", "berth/tasks.py",
    ):  # fmt: skip
        assert (rendered / required).is_file(), required
    assert not (rendered / ".env").exists(), ".env is created by `inv up`, not by copier"


def test_compose_includes_and_env_sections_match(rendered: Path) -> None:
    chosen = selected(rendered)
    compose = (rendered / "compose.yaml").read_text()
    example = (rendered / ".env.example").read_text()
    overlays = {env: (rendered / f"compose.{env}.yaml").read_text() for env in ("test", "prod")}
    for name in CHOICES:
        assert (f"services/{name}/compose.yaml" in compose) == (name in chosen)
        for env, text in overlays.items():
            assert (f"services/{name}/compose.{env}.yaml" in text) == (name in chosen)
        assert (f"# ── {name} " in example) == (name in chosen)
    assert "PASSWORD=" not in example, "passwords are files, never .env values"


def test_secrets_and_env_are_git_ignored(rendered: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=rendered, check=True)
    (rendered / ".env").write_text("X=1\n")
    (rendered / "secrets" / "postgres_password").write_text("s3cret")
    ignored = subprocess.run(
        ["git", "check-ignore", ".env", "secrets/postgres_password", "backups/x"],
        cwd=rendered, capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    assert ignored == [".env", "secrets/postgres_password", "backups/x"]


def test_compose_config_validates(rendered: Path, compose_cli: None) -> None:
    for files in (("compose.yaml",), *(env.files for env in ENVIRONMENTS.values())):
        cmd = ["docker", "compose", "--project-directory", str(rendered)]
        cmd += ["--env-file", str(rendered / ".env.example")]
        for name in files:
            cmd += ["-f", str(rendered / name)]
        result = subprocess.run(
            [*cmd, "config", "--format", "json"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        stateful = [s.name for s in load_services(rendered / "services") if s.stateful]
        assert policy.check(config, stateful=stateful) == [], "compose policy"
        services = set(config["services"])
        assert set(selected(rendered)) <= services
        helpers = {"upstream-stub"} if "compose.test.yaml" in files else set()
        assert services - set(selected(rendered)) <= helpers, "no unexpected services"


def test_rendered_project_is_lint_clean(rendered: Path) -> None:
    for cmd in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", *cmd], cwd=rendered, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "."],
        cwd=rendered, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_answers_are_recorded(tmp_path: Path) -> None:
    project = render(tmp_path / "p", project_slug="answers-test", postgres_port=15432)
    answers = (project / ".copier-answers.yml").read_text()
    assert "project_slug: answers-test" in answers
    assert "postgres_port: 15432" in answers
    assert "_src_path:" in answers


def test_readme_diagram_shows_the_chosen_stack(rendered: Path) -> None:
    readme = (rendered / "README.md").read_text()
    diagram = readme.split("```mermaid\n", 1)[1].split("```", 1)[0]
    chosen = selected(rendered)
    for name in CHOICES:
        assert (f'    {name}["{name}"]' in diagram) == (name in chosen)
    answers = (rendered / ".copier-answers.yml").read_text()
    for line in answers.splitlines():
        key, _, value = line.partition(": ")
        if key.endswith("_port"):
            assert f'host -- "{value}" --> {key.split("_")[0]}' in diagram
    assert ("pgbouncer -- " in diagram) == ("pgbouncer" in chosen)
    assert "{{" not in readme and "{%" not in readme


def test_readme_task_table_is_one_table(rendered: Path) -> None:
    """A blank line inside a Markdown table splits it; rows after it show as text."""
    lines = (rendered / "README.md").read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("| `inv ")]
    assert rows, "the task table is there"
    assert all(lines[i].startswith("|") for i in range(rows[0], rows[-1] + 1))
    for task in ("up", "down", "doctor", "scan", "backup", "restore", "reset"):
        assert any(lines[i].startswith(f"| `inv {task}") for i in rows), task


def test_free_port_answers_reach_every_published_port(tmp_path: Path) -> None:
    answers = free_port_answers()
    # The full catalog, then the alternatives it leaves out (e.g. redis).
    selections = [full_catalog(), [alternative for _first, alternative in ALTERNATIVES]]
    example = "".join(
        (render(tmp_path / f"p{i}", services=services, **answers) / ".env.example").read_text()
        for i, services in enumerate(selections)
    )
    assert len(set(answers.values())) == len(answers)
    for question, port in answers.items():
        assert f"={port}\n" in example, f"{question} does not reach .env.example"
