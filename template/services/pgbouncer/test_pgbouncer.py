"""Live tests for PgBouncer: SCRAM login through the pooler, transaction pooling."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from berth.project import Project
from berth.testing import inv

CLIENTS = 30


@pytest.fixture(scope="module")
def pooled(urls: dict[str, dict[str, str]]) -> str:
    return urls["pgbouncer"]["DATABASE_URL"]


def console(dsn: str) -> psycopg.Connection:
    """PgBouncer's own console (database `pgbouncer`); our user is in stats_users."""
    parts = urlsplit(dsn)
    return psycopg.connect(
        urlunsplit(parts._replace(path="/pgbouncer")), autocommit=True, prepare_threshold=None
    )


def pools(dsn: str, database: str) -> dict[str, int | str]:
    with console(dsn) as admin, admin.cursor() as cur:
        cur.execute("SHOW POOLS")
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return next(r for r in rows if r["database"] == database)


def test_login_through_the_pooler_with_scram(pooled: str) -> None:
    with psycopg.connect(pooled, connect_timeout=5) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        # Prepared statements in transaction mode (psycopg prepares after 5 runs).
        for _ in range(8):
            assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)


def test_transaction_pooling_serves_many_clients_with_few_server_connections(
    pooled: str, project: Project
) -> None:
    database = project.values["POSTGRES_DB"]
    pool_size = int(project.values["PGBOUNCER_DEFAULT_POOL_SIZE"])
    assert pool_size < CLIENTS
    clients = [psycopg.connect(pooled, autocommit=True, connect_timeout=5) for _ in range(CLIENTS)]
    try:
        for conn in clients:
            conn.execute("SELECT 1")
        assert pools(pooled, database)["pool_mode"] == "transaction"

        def slow(conn: psycopg.Connection) -> int:
            return conn.execute("SELECT 1 FROM pg_sleep(0.2)").fetchone()[0]

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as workers:
            assert sum(workers.map(slow, clients)) == CLIENTS
        elapsed = time.monotonic() - started
        stats = pools(pooled, database)
        servers = sum(int(stats[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested"))
        assert stats["cl_active"] + stats["cl_waiting"] >= CLIENTS
        assert 0 < servers <= pool_size, stats
        # 30 queries of 0.2 s on at most pool_size connections: several rounds.
        assert elapsed >= 0.2 * (CLIENTS // pool_size) * 0.9
    finally:
        for conn in clients:
            conn.close()


def test_auth_file_holds_a_verifier_not_the_password(project: Project, pooled: str) -> None:
    text = (project.secrets_dir / "pgbouncer_userlist.txt").read_text()
    assert project.secret("postgres_password") not in text
    user, verifier = (part.strip('"') for part in text.split())
    assert user == project.values["POSTGRES_USER"]
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    with psycopg.connect(pooled, connect_timeout=5) as conn:
        # The role's stored verifier is the same, which is what lets PgBouncer
        # reuse the client's SCRAM keys to log in to PostgreSQL.
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
        ).fetchone()[0]
    assert stored == verifier


def test_up_restores_the_shared_verifier_after_a_password_reset(
    project: Project, pooled: str, urls: dict[str, dict[str, str]]
) -> None:
    """Volumes made before berth shared the verifier (or a manual ALTER ROLE)
    hold a verifier with another salt; PgBouncer then cannot log in to
    PostgreSQL, and `inv up` repairs it without changing the password."""
    direct = urls["postgres"]["DIRECT_DATABASE_URL"]
    user = sql.Identifier(project.values["POSTGRES_USER"])
    # Fresh databases mean fresh pools: PgBouncer must log in to the server anew
    # (and it caches a failed server login per pool, so use another one after).
    before, after = (f"berth_scram_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with psycopg.connect(direct, autocommit=True, connect_timeout=5) as conn:
        for name in (before, after):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # The server hashes the plaintext itself: same password, random salt.
        password = sql.Literal(project.secret("postgres_password"))
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(user, password))
    try:
        with pytest.raises(psycopg.OperationalError), on(pooled, before) as broken:
            broken.execute("SELECT 1")
        for stamp in (project.root / ".berth").glob("*.pgbouncer-role"):
            stamp.unlink()
        inv(project, "up")
        with on(pooled, after) as repaired:
            assert repaired.execute("SELECT current_database()").fetchone() == (after,)
    finally:
        with psycopg.connect(direct, autocommit=True, connect_timeout=5) as conn:
            for name in (before, after):
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


def on(dsn: str, database: str) -> psycopg.Connection:
    return psycopg.connect(
        urlunsplit(urlsplit(dsn)._replace(path=f"/{database}")), autocommit=True, connect_timeout=5
    )
