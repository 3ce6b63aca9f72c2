"""ClickHouse as berth sees it: one password, HTTP + native URLs, an rlimit check,
password rotation by recreating the container."""

from __future__ import annotations

import base64
import resource
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from berth.errors import BerthError
from berth.rotate import Rotation, endpoint, expect_refused, recreate
from berth.service import Endpoint, Endpoints, Port, SecretLookup, Service, load_module


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


def rotate(rotation: Rotation) -> list[str]:
    """Store the new password, recreate the container, prove it over HTTP.

    The image's entrypoint writes the CLICKHOUSE_USER account from
    CLICKHOUSE_PASSWORD_FILE into the container's own config at every start,
    so a new container is the documented way to change it (the data volume is
    kept). ClickHouse is unavailable for the few seconds of its restart.
    """
    if rotation.name != "clickhouse_password":
        return []
    project = rotation.project
    notes = rotation.store()
    recreate(project, "clickhouse")
    at = endpoint(project, "clickhouse", "http")
    user = project.values["CLICKHOUSE_USER"]

    def login(password: str) -> None:
        select_one(at, user, password)

    login(rotation.new)
    expect_refused(login, rotation.old, "ClickHouse")
    return [*notes, "ClickHouse: recreated with the new password (data kept on its volume)"]


def select_one(at: Endpoint, user: str, password: str) -> None:
    """Run SELECT 1 over HTTP as `user`, or raise saying why not."""
    import urllib.request  # imported late: `inv --list` should not pay for http.client

    request = urllib.request.Request(
        f"http://{at.host}:{at.port}/", data=b"SELECT 1\n", method="POST"
    )
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer = response.read().decode().strip()
    except OSError as exc:  # URLError, HTTPError (401/403/516), resets
        raise BerthError(
            f"login to ClickHouse as {user} at {at.host}:{at.port} failed", why=str(exc)
        ) from exc
    if answer != "1":
        raise BerthError(f"ClickHouse at {at.host}:{at.port} answered {answer!r} to SELECT 1")


SERVICE = Service(
    name="clickhouse",
    ports=(
        Port("http", 8123, "CLICKHOUSE_HTTP_PORT"),
        Port("native", 9000, "CLICKHOUSE_NATIVE_PORT"),
    ),
    secrets=("clickhouse_password",),
    urls=urls,
    preflight=preflight,
    rotate=rotate,
    backup=load_module(Path(__file__).with_name("backup.py")).HOOK,
)
