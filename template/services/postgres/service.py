"""PostgreSQL as berth sees it: one password secret, one connection string."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from berth.service import Endpoint, SecretLookup, Service


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoint) -> dict[str, str]:
    user = quote(env["POSTGRES_USER"], safe="")
    password = quote(secret("postgres_password"), safe="*")
    database = quote(env["POSTGRES_DB"], safe="")
    return {"DATABASE_URL": f"postgresql://{user}:{password}@{at.host}:{at.port}/{database}"}


SERVICE = Service(
    name="postgres",
    port=5432,
    port_var="POSTGRES_PORT",
    secrets=("postgres_password",),
    urls=urls,
)
