"""`copier update` of a generated project from template v1 to v2.

A throwaway git copy of this repository (working tree, uncommitted changes
included) is tagged v1; a project is rendered from it and customised as a
user would; then the copy gets a v2 with real changes (a renamed .env
variable with its versioned migration, a new variable, a renamed file,
changed files the user owns) and the project is updated. The fast test checks
the files; the live one that the stack comes back healthy with its data.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import copier
import docker
import psycopg
import pytest
import yaml
from plumbum import local

from berth.project import Project
from harness import REPO, free_port, run_in, tool_env

#: Hand-written by the "user" before the first `inv up`.
PASSWORD = "own pass 'q' \"dq\" $HOME #not-a-comment ü€"
CUSTOM_SQL = "CREATE TABLE kept_by_update (id int PRIMARY KEY, note text);\n"
ROUTE = "\n# my route\nserver { listen 8081; location / { return 204; } }\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def copy_working_tree(dst: Path) -> None:
    """Tracked and untracked-but-not-ignored files, as they are on disk now."""
    listed = git(REPO, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dst / name)


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def make_v2(template: Path) -> None:
    """Real changes, of the kinds a template release makes."""
    tpl = template / "template"
    # 1. A renamed variable: every template file switches; the user's .env is
    #    migrated by a versioned step that keeps its value.
    for path in tpl.rglob("*"):
        if path.is_file() and "POSTGRES_PORT" in path.read_text(errors="ignore"):
            path.write_text(path.read_text().replace("POSTGRES_PORT", "POSTGRES_HOST_PORT"))
    config = yaml.safe_load((template / "copier.yml").read_text())
    config["_migrations"].insert(0, {
        "version": "2",
        "command": ["invoke", "--search-root", "{{ _copier_conf.src_path }}", "--collection",
                    "migrations", "rename-env", "--old", "POSTGRES_PORT",
                    "--new", "POSTGRES_HOST_PORT"],
        "when": "{{ _stage == 'before' }}",
    })  # fmt: skip
    (template / "copier.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    # 2. A new variable with a default (synced into .env by the every-update step).
    postgres = tpl / "services" / "postgres"
    replace_in(postgres / "_env.jinja", "POSTGRES_DB={{ postgres_db }}\n",
               "POSTGRES_DB={{ postgres_db }}\n# Shared memory for parallel queries.\n"
               "POSTGRES_SHM_SIZE=256mb\n")  # fmt: skip
    replace_in(postgres / "compose.yaml.jinja", "shm_size: 128mb",
               "shm_size: ${POSTGRES_SHM_SIZE:?set POSTGRES_SHM_SIZE in .env}")  # fmt: skip
    # 3. A renamed file.
    (postgres / "initdb" / "README.md").rename(postgres / "initdb" / "README.txt")
    # 4. The template's own documentation inside secrets/ still updates.
    replace_in(tpl / "secrets" / "README.md", "# secrets/\n", "# secrets/\n\nv2 note.\n")
    # 5. Changes to files the user owns (they keep their version).
    sql = next((postgres / "initdb").glob("*pgvector.sql*"))
    sql.write_text(sql.read_text() + "-- v2: a comment the user never sees\n")
    conf = tpl / "services" / "nginx" / "templates" / "default.conf.template"
    conf.write_text(conf.read_text().replace("server_tokens off;", "server_tokens off;\n# v2"))
    git(template, "add", "-A")
    git(template, "commit", "-qm", "v2")
    git(template, "tag", "v2")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    repo = tmp_path / "template-repo"
    repo.mkdir()
    copy_working_tree(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "v1")
    git(repo, "tag", "v1")
    return repo


def render_v1(template: Path, dst: Path, **answers: Any) -> Path:
    copier.run_copy(str(template), str(dst), data=answers, defaults=True, vcs_ref="v1",
                    quiet=True)  # fmt: skip
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-qm", "from berth v1")
    return dst


def customise(root: Path, port: int) -> dict[str, bytes]:
    """What a user does after the first copy; returns the secret files' bytes."""
    project = Project(root)
    project.prepare()  # .env and secrets, as the first `inv up` would
    initdb = root / "services" / "postgres" / "initdb"
    (initdb / "100-app.sql").write_text(CUSTOM_SQL)
    pgvector = next(initdb.glob("*pgvector.sql"))
    pgvector.write_text(pgvector.read_text() + "CREATE EXTENSION IF NOT EXISTS pg_trgm;\n")
    conf = root / "services" / "nginx" / "templates" / "default.conf.template"
    conf.write_text(conf.read_text() + ROUTE)
    env = project.env_path.read_text()
    env = env.replace(f"POSTGRES_PORT={project.values['POSTGRES_PORT']}", f"POSTGRES_PORT={port}")
    project.env_path.write_text(env + "MY_APP_SETTING='kept $literally'\n")
    (project.secrets_dir / "postgres_password").write_text(PASSWORD + "\n")
    (project.secrets_dir / "app_token").write_text("my own token")
    os.chmod(project.secrets_dir / "app_token", 0o600)
    Project(root).prepare()  # derived files from the hand-written password
    git(root, "add", "-A")
    git(root, "commit", "-qm", "my changes")
    return {p.name: p.read_bytes() for p in project.secrets_dir.rglob("*") if p.is_file()}


def update(root: Path) -> None:
    # Migrations run `invoke` from the project's environment (here: this venv).
    # copier runs them with plumbum's copy of the environment, not os.environ.
    with local.env(PATH=tool_env()["PATH"]):
        copier.run_update(str(root), defaults=True, overwrite=True, unsafe=True, vcs_ref="v2",
                          quiet=True)  # fmt: skip


def assert_updated_cleanly(root: Path, port: int, secrets_before: dict[str, bytes]) -> None:
    files = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]
    assert not [p for p in files if p.suffix == ".rej" or p.name.endswith(".orig")]
    for path in files:
        text = path.read_text(errors="ignore")
        assert "<<<<<<<" not in text and ">>>>>>>" not in text, f"conflict markers in {path}"
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v2"
    # The template's changes arrived ...
    initdb = root / "services" / "postgres" / "initdb"
    assert (initdb / "README.txt").is_file() and not (initdb / "README.md").exists()
    dev = (root / "services/postgres/compose.dev.yaml").read_text()
    assert "${POSTGRES_HOST_PORT:-5432}" in dev
    # ... the migrations moved the user's value and added the new variable ...
    env = (root / ".env").read_text()
    assert f"\nPOSTGRES_HOST_PORT={port}\n" in env
    assert "POSTGRES_PORT=" not in env.replace("POSTGRES_HOST_PORT=", "")
    assert "\nPOSTGRES_SHM_SIZE=256mb\n" in env
    assert "\nMY_APP_SETTING='kept $literally'\n" in env
    # ... and everything the user owns is theirs, byte for byte.
    assert (initdb / "100-app.sql").read_text() == CUSTOM_SQL
    pgvector = next(initdb.glob("*pgvector.sql")).read_text()
    assert "pg_trgm" in pgvector and "v2:" not in pgvector
    conf = (root / "services/nginx/templates/default.conf.template").read_text()
    assert conf.endswith(ROUTE) and "# v2" not in conf
    secrets_dir = root / "secrets"
    after = {p.name: p.read_bytes() for p in secrets_dir.rglob("*") if p.is_file()}
    assert b"v2 note." in after.pop("README.md"), "template-owned docs in secrets/ update"
    assert after == {k: v for k, v in secrets_before.items() if k != "README.md"}
    assert stat.S_IMODE((secrets_dir / "postgres_password").stat().st_mode) == 0o600


def test_update_migrates_and_keeps_customisations(template: Path, tmp_path: Path) -> None:
    root = render_v1(template, tmp_path / "proj", services=["postgres", "nginx"])
    port = free_port()
    before = customise(root, port)
    make_v2(template)
    update(root)
    assert_updated_cleanly(root, port, before)
    # Updating again is a no-op for the migrations (idempotent), not an error.
    run = subprocess.run(
        ["invoke", "--search-root", str(template), "--collection", "migrations", "rename-env",
         "--old", "POSTGRES_PORT", "--new", "POSTGRES_HOST_PORT"],
        cwd=root, env=tool_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "nothing to rename" in run.stdout


@pytest.mark.live
def test_updated_stack_comes_back_healthy_with_its_data(
    template: Path, tmp_path: Path, docker_engine: None
) -> None:
    slug = f"berth-live-update-{uuid.uuid4().hex[:6]}"
    root = render_v1(template, tmp_path / slug, project_slug=slug, services=["postgres"],
                     pgvector=False, postgres_port=free_port())  # fmt: skip
    port = free_port()
    try:
        secrets_before = customise_postgres_only(root, port)
        run_in(root, "invoke", "up")
        with psycopg.connect(database_url(root)) as conn:
            conn.execute("INSERT INTO kept_by_update VALUES (1, 'before the update')")
        make_v2(template)
        update(root)
        after = {p.name: p.read_bytes() for p in (root / "secrets").rglob("*") if p.is_file()}
        del after["README.md"], secrets_before["README.md"]  # template docs may update
        assert after == secrets_before
        run_in(root, "invoke", "up")
        project = Project(root)
        assert {(c.service, c.health) for c in project.containers()} == {("postgres", "healthy")}
        url = database_url(root)
        assert f":{port}/" in url, "the user's port survived the variable's rename"
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id, note FROM kept_by_update").fetchall()
        assert rows == [(1, "before the update")]
        [container] = project.containers()
        host = docker.from_env().containers.get(container.id).attrs["HostConfig"]
        assert host["ShmSize"] == 256 * 1024**2, "v2's new variable reached the container"
    finally:
        Project(root).compose.run("down", "--volumes", "--remove-orphans", check=False)


def customise_postgres_only(root: Path, port: int) -> dict[str, bytes]:
    project = Project(root)
    project.prepare()
    (root / "services/postgres/initdb/100-app.sql").write_text(CUSTOM_SQL)
    env = project.env_path.read_text()
    env = env.replace(f"POSTGRES_PORT={project.values['POSTGRES_PORT']}", f"POSTGRES_PORT={port}")
    project.env_path.write_text(env)
    (project.secrets_dir / "postgres_password").write_text(PASSWORD + "\n")
    Project(root).prepare()
    git(root, "add", "-A")
    git(root, "commit", "-qm", "my changes")
    return {p.name: p.read_bytes() for p in project.secrets_dir.rglob("*") if p.is_file()}


def database_url(root: Path) -> str:
    out = subprocess.run(
        ["invoke", "urls", "--json", "--reveal"],
        cwd=root, env=tool_env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)["postgres"]["DATABASE_URL"])
