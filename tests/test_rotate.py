"""Live: `inv secrets --rotate NAME` against real servers, with data written before.

One stack (PostgreSQL + PgBouncer + Valkey + ClickHouse) serves the module; each
case rotates one secret through the real `inv` command and checks, with real
clients and the URLs `inv urls --json --reveal` prints, that the old password
is refused, the new one works, the data is still there, and no `.previous`
file is left behind. Failure cases interrupt a rotation or make ClickHouse
unable to start; the last case adds the project's test stack beside dev.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
import redis
from test_live import removed_afterwards

from berth.project import Project
from harness import free_port_answers, missing_images, render, run_in, tool_env

pytestmark = pytest.mark.live

SERVICES = ["postgres", "pgbouncer", "valkey", "clickhouse"]
Urls = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Project]:
    slug = f"berth-live-rotate-{uuid.uuid4().hex[:6]}"
    root = render(
        tmp_path_factory.mktemp("rotate") / slug,
        project_slug=slug, services=SERVICES, pgvector=False, **free_port_answers(),
    )  # fmt: skip
    missing = missing_images(root)
    if missing:
        pytest.fail(f"images missing locally: {missing}; run `docker pull IMAGE` (CI: provision)")
    with removed_afterwards(Project(root)) as project:
        run_in(root, "invoke", "up")
        yield project


def inv(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=project.root, env=tool_env(),
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def urls(project: Project) -> Urls:
    result = inv(project, "urls", "--json", "--reveal")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rotate(project: Project, name: str, timings: list[str]) -> str:
    started = time.monotonic()
    result = inv(project, "secrets", "--rotate", name)
    assert result.returncode == 0, result.stdout + result.stderr
    timings.append(f"inv secrets --rotate {name}: {time.monotonic() - started:.2f} s")
    assert f"rotated {name}: the new value works, the old one is refused" in result.stdout
    assert_clean_secret(project, name)
    return result.stdout + result.stderr


def assert_clean_secret(project: Project, name: str) -> None:
    assert not (project.secrets_dir / f".{name}.previous").exists()
    assert (project.secrets_dir / name).stat().st_mode & 0o777 == 0o600
    assert not list(project.secrets_dir.glob(".*.tmp-*")), "no temp file left"


def container_ids(project: Project) -> dict[str, str]:
    return {c.service: c.id for c in project.containers()}


def all_healthy(project: Project) -> bool:
    return all(c.state == "running" and c.health == "healthy" for c in project.containers())


# ── PostgreSQL (+ PgBouncer) ────────────────────────────────────────────────
def test_rotate_postgres_password_with_pgbouncer(project: Project, timings: list[str]) -> None:
    before = urls(project)
    direct, pooled = before["postgres"]["DIRECT_DATABASE_URL"], before["pgbouncer"]["DATABASE_URL"]
    session = psycopg.connect(direct, autocommit=True, connect_timeout=5)
    session.execute("CREATE TABLE rotate_kept (v text)")
    session.execute("INSERT INTO rotate_kept VALUES ('kept')")
    # An idle application connection to the pooler, as a real app holds one.
    app = psycopg.connect(pooled, autocommit=True, connect_timeout=5)
    app.execute("SELECT 1")
    ids = container_ids(project)

    out = rotate(project, "postgres_password", timings)
    assert "PgBouncer: recreated with the new auth file" in out

    after = urls(project)
    new_direct, new_pooled = (
        after["postgres"]["DIRECT_DATABASE_URL"],
        after["pgbouncer"]["DATABASE_URL"],
    )
    assert new_direct != direct and new_pooled != pooled
    for old in (direct, pooled):
        with pytest.raises(psycopg.OperationalError, match="authentication failed"):
            psycopg.connect(old, connect_timeout=5)
    for new in (new_direct, new_pooled):
        with psycopg.connect(new, connect_timeout=5) as conn:
            assert conn.execute("SELECT v FROM rotate_kept").fetchone() == ("kept",)
    # An open session survives: ALTER ROLE affects new logins only.
    assert session.execute("SELECT 1").fetchone() == (1,)
    session.close()
    app.close()

    now = container_ids(project)
    assert now["postgres"] == ids["postgres"], "PostgreSQL was not restarted"
    assert now["pgbouncer"] != ids["pgbouncer"], "PgBouncer was recreated to read its auth file"
    assert now["valkey"] == ids["valkey"] and now["clickhouse"] == ids["clickhouse"]
    # The auth file and the role's stored verifier are the same (pooled logins
    # to new databases, i.e. new server logins, work).
    userlist = (project.secrets_dir / "pgbouncer_userlist.txt").read_text()
    with psycopg.connect(new_direct, connect_timeout=5) as conn:
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
        ).fetchone()[0]
        conn.execute("DROP TABLE rotate_kept")
    assert userlist.split()[1].strip('"') == stored
    assert (project.secrets_dir / "postgres_password.scram").read_text() == stored


# ── Valkey ──────────────────────────────────────────────────────────────────
def test_rotate_valkey_password_keeps_data(project: Project, timings: list[str]) -> None:
    before = urls(project)["valkey"]
    key = f"berth:rotate:{uuid.uuid4().hex}"
    for name, url in before.items():
        with redis.Redis.from_url(url, socket_timeout=5) as db:
            db.set(key, name)

    out = rotate(project, "valkey_password", timings)
    assert "Valkey: recreated" in out
    assert all_healthy(project), "the health check reads the new password"

    after = urls(project)["valkey"]
    for name, url in before.items():
        with (
            redis.Redis.from_url(url, socket_timeout=5) as old,
            pytest.raises(redis.AuthenticationError),
        ):
            old.ping()
        with redis.Redis.from_url(after[name], socket_timeout=5, decode_responses=True) as db:
            assert db.get(key) == name, "data written before the rotation is kept"
            db.delete(key)


def test_rotate_valkey_admin_password_in_place(project: Project, timings: list[str]) -> None:
    at = urlsplit(urls(project)["valkey"]["VALKEY_CACHE_URL"])
    old = project.secret("valkey_admin_password")
    ids = container_ids(project)

    out = rotate(project, "valkey_admin_password", timings)
    assert "no restart" in out
    assert container_ids(project) == ids, "nothing was restarted"

    new = project.secret("valkey_admin_password")
    assert new != old

    def admin(password: str) -> redis.Redis:
        return redis.Redis(
            host=at.hostname, port=at.port, username="admin", password=password, socket_timeout=5
        )

    with admin(old) as db, pytest.raises(redis.AuthenticationError):
        db.ping()
    with admin(new) as db:
        acl = db.acl_list()
    # The server's users are exactly the ACL file's, which a restart loads.
    lines = (project.secrets_dir / "valkey_users.acl").read_text().splitlines()
    assert sorted(x.decode() if isinstance(x, bytes) else x for x in acl) == sorted(lines)
    with redis.Redis.from_url(urls(project)["valkey"]["VALKEY_CACHE_URL"]) as app:
        assert app.ping(), "the application password is untouched"


# ── Redis (Valkey's alternative: same rules in berth/keyvalue.py) ─────────────
@pytest.fixture(scope="module")
def redis_project(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Project]:
    slug = f"berth-live-rotate-redis-{uuid.uuid4().hex[:6]}"
    root = render(
        tmp_path_factory.mktemp("rotate-redis") / slug,
        project_slug=slug, services=["redis"], **free_port_answers(),
    )  # fmt: skip
    with removed_afterwards(Project(root)) as project:
        run_in(root, "invoke", "up")
        yield project


def test_rotate_redis_passwords_keep_data(redis_project: Project, timings: list[str]) -> None:
    project = redis_project
    before = urls(project)["redis"]["REDIS_CACHE_URL"]
    key = f"berth:rotate:{uuid.uuid4().hex}"
    with redis.Redis.from_url(before, socket_timeout=5) as db:
        db.set(key, "kept")

    assert "Redis: recreated" in rotate(project, "redis_password", timings)
    assert "no restart" in rotate(project, "redis_admin_password", timings)
    assert all_healthy(project)

    after = urls(project)["redis"]["REDIS_CACHE_URL"]
    with (
        redis.Redis.from_url(before, socket_timeout=5) as old,
        pytest.raises(redis.AuthenticationError),
    ):
        old.ping()
    with redis.Redis.from_url(after, socket_timeout=5, decode_responses=True) as db:
        assert db.get(key) == "kept", "data written before the rotation is kept"
    at = urlsplit(after)
    admin = project.secret("redis_admin_password")
    with redis.Redis(
        host=at.hostname, port=at.port, username="admin", password=admin, socket_timeout=5
    ) as db:
        assert db.acl_whoami() in ("admin", b"admin")


# ── ClickHouse ──────────────────────────────────────────────────────────────
def clickhouse(url: str, sql: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    secret = unquote(parts.password or "") if password is None else password
    request = urllib.request.Request(
        f"http://{parts.hostname}:{parts.port}/?{parts.query}", data=sql.encode(), method="POST"
    )
    token = base64.b64encode(f"{unquote(parts.username or '')}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read().decode()


def test_rotate_clickhouse_password_keeps_data(project: Project, timings: list[str]) -> None:
    old_url = urls(project)["clickhouse"]["CLICKHOUSE_URL"]
    clickhouse(old_url, "CREATE TABLE rotate_kept (v String) ENGINE = MergeTree ORDER BY v")
    clickhouse(old_url, "INSERT INTO rotate_kept VALUES ('kept')")

    out = rotate(project, "clickhouse_password", timings)
    assert "ClickHouse: recreated" in out

    new_url = urls(project)["clickhouse"]["CLICKHOUSE_URL"]
    assert new_url != old_url
    with pytest.raises(urllib.error.HTTPError):
        clickhouse(old_url, "SELECT 1")
    assert clickhouse(new_url, "SELECT v FROM rotate_kept") == "kept\n"
    clickhouse(new_url, "DROP TABLE rotate_kept")


# ── failures ────────────────────────────────────────────────────────────────
def test_interrupted_rotation_restores_the_old_password(
    project: Project, timings: list[str]
) -> None:
    """Ctrl-C while ClickHouse restarts with the new password: the rollback puts
    the old one back in the file and the server, and proves it works."""
    old_url = urls(project)["clickhouse"]["CLICKHOUSE_URL"]
    old = project.secret("clickhouse_password")
    secret_file = project.secrets_dir / "clickhouse_password"
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "secrets", "--rotate", "clickhouse_password"],
        cwd=project.root, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    # The new value is stored before the recreate starts: interrupt then.
    deadline = time.monotonic() + 30
    while secret_file.read_text() == old and process.poll() is None:
        assert time.monotonic() < deadline, "the rotation never stored a new value"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 130, out + err
    assert secret_file.read_text() == old
    assert not (project.secrets_dir / ".clickhouse_password.previous").exists()
    assert clickhouse(old_url, "SELECT 1") == "1\n", "the old password works"
    assert all_healthy(project)


def test_when_restoring_fails_too_previous_keeps_the_old_value(project: Project) -> None:
    """ClickHouse cannot start at all (an open-files limit above the host's):
    the rotation fails, so does restoring, and the error says where the old
    value is; following its fix brings the stack back with the old password."""
    old_url = urls(project)["clickhouse"]["CLICKHOUSE_URL"]
    old = project.secret("clickhouse_password")
    impossible = {**tool_env(), "CLICKHOUSE_NOFILE": str(2**31)}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "secrets", "--rotate", "clickhouse_password"],
        cwd=project.root, env=impossible, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: rotating clickhouse_password failed and restoring the old value failed too:"
    )
    assert "the old value is in secrets/.clickhouse_password.previous" in last
    previous = project.secrets_dir / ".clickhouse_password.previous"
    assert previous.read_text() == old
    assert previous.stat().st_mode & 0o777 == 0o600

    # The fix, as the error gives it.
    previous.replace(project.secrets_dir / "clickhouse_password")
    run_in(project.root, "invoke", "up")
    assert clickhouse(old_url, "SELECT 1") == "1\n", "the old password works again"


def test_errors_name_the_fix(project: Project) -> None:
    result = inv(project, "secrets", "--rotate", "mysql_password")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: cannot rotate 'mysql_password': no service of this project owns a secret by"
        " that name (fix: use one of: clickhouse_password, postgres_password,"
        " valkey_admin_password, valkey_password)"
    )
    other = Project(project.root, env_name="test")  # never started
    result = inv(project, "secrets", "--rotate", "valkey_password", "--env", "test")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: valkey is not running in {other.name}: a password is rotated inside the"
        " running server (fix: start the stack with `inv up --env test`, then rotate again)"
    )


def test_a_running_test_stack_follows_because_it_shares_secrets(
    project: Project, timings: list[str]
) -> None:
    """dev and test read the same secrets/: rotating in one must not strand the other."""
    test_stack = Project(project.root, env_name="test")
    with removed_afterwards(test_stack):
        run_in(project.root, "invoke", "up", "--env", "test")
        key = f"berth:rotate:{uuid.uuid4().hex}"
        test_url = json.loads(inv(project, "urls", "--json", "--reveal", "--env", "test").stdout)
        with redis.Redis.from_url(test_url["valkey"]["VALKEY_CACHE_URL"]) as db:
            db.set(key, "test stack")

        out = rotate(project, "valkey_password", timings)
        assert f"(in {project.name}, {test_stack.name})" in out
        assert "test: Valkey: recreated" in out

        for env in ("dev", "test"):
            result = inv(project, "urls", "--json", "--reveal", "--env", env)
            url = json.loads(result.stdout)["valkey"]["VALKEY_CACHE_URL"]
            assert unquote(urlsplit(url).password or "") == project.secret("valkey_password")
            with redis.Redis.from_url(url, socket_timeout=5, decode_responses=True) as db:
                assert db.ping()
                if env == "test":
                    assert db.get(key) == "test stack"

        # A stopped stack cannot follow; PostgreSQL keeps the password in its
        # volume, so the rotation warns. With PgBouncer, `inv up` repairs it.
        run_in(project.root, "invoke", "down", "--env", "test")
        out = rotate(project, "postgres_password", timings)
        assert (
            "berth: warning: the stopped test stack's PostgreSQL volume still stores the old"
            " password; after `inv up --env test` run `inv secrets --rotate postgres_password`"
            " again"
        ) in out
        run_in(project.root, "invoke", "up", "--env", "test")
        result = inv(project, "urls", "--json", "--reveal", "--env", "test")
        for url in (
            json.loads(result.stdout)["postgres"]["DIRECT_DATABASE_URL"],
            json.loads(result.stdout)["pgbouncer"]["DATABASE_URL"],
        ):
            with psycopg.connect(url, connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
