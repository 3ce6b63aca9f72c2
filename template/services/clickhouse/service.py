"""ClickHouse as berth sees it: one password, HTTP + native URLs, an rlimit check."""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from berth.service import Endpoints, Port, SecretLookup, Service, load_module


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoints) -> dict[str, str]:
    user = quote(env["CLICKHOUSE_USER"], safe="")
    password = quote(secret("clickhouse_password"), safe="*")
    database = quote(env["CLICKHOUSE_DB"], safe="")
    http, native = at["http"], at["native"]
    return {
        "CLICKHOUSE_URL": f"http://{user}:{password}@{http.host}:{http.port}/?database={database}",
        "CLICKHOUSE_NATIVE_URL": (
            f"clickhouse://{user}:{password}@{native.host}:{native.port}/{database}"
        ),
    }


def preflight(env: Mapping[str, str]) -> list[str]:
    """Docker cannot give a container more open files than its own hard limit."""
    wanted = env.get("CLICKHOUSE_NOFILE", "262144")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted.isdigit() and hard != resource.RLIM_INFINITY and int(wanted) > hard:
        return [
            f"CLICKHOUSE_NOFILE={wanted} is above this machine's open-files hard limit"
            f" ({hard}); if clickhouse fails with 'error setting rlimits', set"
            f" CLICKHOUSE_NOFILE={hard} in .env"
        ]
    return []


SERVICE = Service(
    name="clickhouse",
    ports=(
        Port("http", 8123, "CLICKHOUSE_HTTP_PORT"),
        Port("native", 9000, "CLICKHOUSE_NATIVE_PORT"),
    ),
    secrets=("clickhouse_password",),
    urls=urls,
    preflight=preflight,
    backup=load_module(Path(__file__).with_name("backup.py")).HOOK,
)
