"""Live tests for ClickHouse over its HTTP interface: login, write/read, no open door."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from urllib.parse import unquote, urlencode, urlsplit

import pytest


class ClickHouse:
    """Minimal HTTP client: POST SQL to /, credentials as basic auth."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        parts = urlsplit(url)
        self.base = f"http://{parts.hostname}:{parts.port}/"
        self.database = dict(p.split("=", 1) for p in parts.query.split("&") if p)["database"]
        self.user = unquote(parts.username or "") if user is None else user
        self.password = unquote(parts.password or "") if password is None else password

    def query(self, sql: str, data: bytes = b"") -> str:
        body = f"{sql}\n".encode() + data
        url = self.base + "?" + urlencode({"database": self.database})  # always http://
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.read().decode()


@pytest.fixture(scope="module")
def clickhouse(urls: dict[str, dict[str, str]]) -> ClickHouse:
    return ClickHouse(urls["clickhouse"]["CLICKHOUSE_URL"])


def test_create_insert_select(clickhouse: ClickHouse) -> None:
    table = f"berth_it_{uuid.uuid4().hex[:12]}"
    clickhouse.query(
        f"CREATE TABLE {table} (id UInt32, body String) ENGINE = MergeTree ORDER BY id"
    )
    rows = "".join(f"{i}\trow {i}\n" for i in range(1000)).encode()
    clickhouse.query(f"INSERT INTO {table} FORMAT TabSeparated", rows)
    out = clickhouse.query(f"SELECT count() AS n, sum(id) AS s FROM {table} FORMAT JSONEachRow")
    assert json.loads(out) == {"n": "1000", "s": str(sum(range(1000)))}
    assert clickhouse.query(f"SELECT body FROM {table} WHERE id = 7") == "row 7\n"
    clickhouse.query(f"DROP TABLE {table}")


def test_wrong_password_is_refused(clickhouse: ClickHouse) -> None:
    wrong = ClickHouse(clickhouse.base + f"?database={clickhouse.database}",
                       user=clickhouse.user, password="not-the-password")  # fmt: skip
    with pytest.raises(urllib.error.HTTPError):
        wrong.query("SELECT 1")


def test_passwordless_default_user_is_gone(clickhouse: ClickHouse) -> None:
    anonymous = ClickHouse(clickhouse.base + "?database=default", user="default", password="")
    with pytest.raises(urllib.error.HTTPError):
        anonymous.query("SELECT 1")


# ── restart probe (used by tests/test_restart.py) ──────────────────────────
def write_marker(urls: dict[str, str], token: str) -> None:
    db = ClickHouse(urls["CLICKHOUSE_URL"])
    db.query("CREATE TABLE IF NOT EXISTS berth_marker (token String) ENGINE = TinyLog")
    db.query("INSERT INTO berth_marker FORMAT TabSeparated", f"{token}\n".encode())


def read_marker(urls: dict[str, str]) -> str | None:
    lines = ClickHouse(urls["CLICKHOUSE_URL"]).query("SELECT token FROM berth_marker").split()
    return lines[-1] if lines else None
