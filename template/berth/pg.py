"""A PostgreSQL-protocol login check, shared by PostgreSQL and PgBouncer."""

from __future__ import annotations

from collections.abc import Mapping

from berth.errors import BerthError
from berth.service import Endpoint


def login(at: Endpoint, env: Mapping[str, str], password: str, what: str) -> None:
    """Log in as POSTGRES_USER with `password` and run a query, or raise saying why not."""
    import psycopg  # imported late: `inv --list` should not pay for it

    try:
        with psycopg.connect(
            host=at.host, port=at.port, user=env["POSTGRES_USER"], password=password,
            dbname=env["POSTGRES_DB"], connect_timeout=10,
        ) as conn:  # fmt: skip
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        raise BerthError(
            f"login to {what} at {at.host}:{at.port} failed", why=str(exc).strip()
        ) from exc
