"""Live tests for PostgreSQL: the secret logs in, data round-trips, nothing leaks."""

from __future__ import annotations

import re
import uuid

import docker
import psycopg
import pytest
from psycopg import sql

from berth.project import Project


def direct(urls: dict[str, str]) -> str:
    """PostgreSQL itself (named DIRECT_DATABASE_URL when PgBouncer is in front)."""
    return urls.get("DIRECT_DATABASE_URL") or urls["DATABASE_URL"]


@pytest.fixture(scope="module")
def dsn(urls: dict[str, dict[str, str]]) -> str:
    return direct(urls["postgres"])


def test_login_with_secret_create_write_read(dsn: str) -> None:
    table = sql.Identifier(f"berth_it_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, body text)").format(table))
        rows = [(i, f"row {i}") for i in range(100)]
        with conn.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table), rows)
            cur.execute(sql.SQL("SELECT id, body FROM {} ORDER BY id").format(table))
            assert cur.fetchall() == rows
        conn.execute(sql.SQL("DROP TABLE {}").format(table))


def test_server_major_matches_the_pinned_image_and_uses_scram(dsn: str, stack: list) -> None:
    container = next(c for c in stack if c.service == "postgres")
    image = docker.from_env().containers.get(container.id).attrs["Config"]["Image"]
    pinned_major = int(re.sub(r"\D", "", image.rsplit(":", 1)[1]))  # postgres:18, …:pg18
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.info.server_version // 10000 == pinned_major
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


def test_wrong_password_is_refused(dsn: str) -> None:
    head, _, tail = dsn.partition("@")
    wrong = head.rsplit(":", 1)[0] + ":not-the-password@" + tail
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_plaintext_password_never_enters_the_container(project: Project, stack: list) -> None:
    container = docker.from_env().containers.get(
        next(c for c in stack if c.service == "postgres").id
    )
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_scram"
    assert "POSTGRES_PASSWORD" not in env
    secret = project.secret("postgres_password")
    assert secret not in str(container.attrs), "not in the container config"
    mounted = container.exec_run(["cat", "/run/secrets/postgres_scram"], user="root").output
    assert mounted.decode().startswith("SCRAM-SHA-256$4096:") and secret not in mounted.decode()
    for name in ("postgres_password", "postgres_password.scram"):
        assert (project.secrets_dir / name).stat().st_mode & 0o777 == 0o600


# ── restart probe (used by tests/test_restart.py) ──────────────────────────
def write_marker(urls: dict[str, str], token: str) -> None:
    with psycopg.connect(direct(urls), connect_timeout=5) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS berth_marker (token text)")
        conn.execute("INSERT INTO berth_marker VALUES (%s)", (token,))


def read_marker(urls: dict[str, str]) -> str | None:
    with psycopg.connect(direct(urls), connect_timeout=5) as conn:
        row = conn.execute("SELECT token FROM berth_marker ORDER BY ctid DESC LIMIT 1").fetchone()
        return row[0] if row else None
