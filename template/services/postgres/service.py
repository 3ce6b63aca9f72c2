"""PostgreSQL as berth sees it: one password secret, one connection string."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from berth import scram
from berth.service import Endpoints, Port, SecretLookup, Service, load_module


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoints) -> dict[str, str]:
    user = quote(env["POSTGRES_USER"], safe="")
    password = quote(secret("postgres_password"), safe="*")
    database = quote(env["POSTGRES_DB"], safe="")
    main = at["main"]
    # With PgBouncer in the stack, apps get its URL as DATABASE_URL; this one
    # is for what needs a real session (migrations, LISTEN, advisory locks).
    name = "DIRECT_DATABASE_URL" if "PGBOUNCER_PORT" in env else "DATABASE_URL"
    return {name: f"postgresql://{user}:{password}@{main.host}:{main.port}/{database}"}


def verifier_file(env: Mapping[str, str], secret: SecretLookup) -> dict[str, tuple[str, int]]:
    """The container gets the SCRAM verifier, never the plaintext password:
    PostgreSQL stores a verifier given as the password as-is."""
    return {"postgres_password.scram": (scram.verifier(secret("postgres_password")), 0o600)}


SERVICE = Service(
    name="postgres",
    ports=(Port("main", 5432, "POSTGRES_PORT"),),
    secrets=("postgres_password",),
    derived=verifier_file,
    urls=urls,
    backup=load_module(Path(__file__).with_name("backup.py")).HOOK,
)
