"""Live tests shared by Valkey and Redis (services/{valkey,redis}/test_*.py).

A service's test module subclasses `KeyValueTests` as `Test<Name>` with its
`KEYVALUE`, so pytest runs every test below against that server, and takes its
restart probe (`write_marker`/`read_marker`) from `restart_probe`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import redis

from berth.keyvalue import PURPOSES, KeyValue
from berth.project import Project


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


class KeyValueTests:
    """AUTH with the secret, SET/GET, one database per purpose, denied commands."""

    KEYVALUE: ClassVar[KeyValue]

    @pytest.fixture
    def named(self, urls: dict[str, dict[str, str]]) -> dict[str, str]:
        return urls[self.KEYVALUE.name]

    @pytest.fixture
    def url(self, named: dict[str, str]) -> str:
        return named[f"{self.KEYVALUE.prefix}_CACHE_URL"]

    def test_auth_set_get(self, url: str) -> None:
        key = f"berth:it:{uuid.uuid4().hex}"
        with client(url) as db:
            assert db.set(key, "value", ex=60)
            assert db.get(key) == "value"
            assert db.delete(key) == 1

    def test_each_purpose_has_its_own_database(self, named: dict[str, str]) -> None:
        assert set(named) == {f"{self.KEYVALUE.prefix}_{p}_URL" for p in PURPOSES}
        numbers = {name: int(url.rsplit("/", 1)[1]) for name, url in named.items()}
        assert len(set(numbers.values())) == len(PURPOSES), "purposes must not share a database"
        key = f"berth:it:{uuid.uuid4().hex}"
        for name, url in named.items():
            with client(url) as db:
                assert db.set(key, name, ex=60)
        for name, url in named.items():
            with client(url) as db:
                assert db.get(key) == name, f"{name} sees another purpose's value"
                assert db.connection_pool.connection_kwargs["db"] == numbers[name]
                db.delete(key)

    def test_no_password_is_refused(self, url: str) -> None:
        parts = urlsplit(url)
        anonymous = redis.Redis(host=parts.hostname, port=parts.port, socket_timeout=5)
        with anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()

    def test_app_user_cannot_run_dangerous_commands(self, url: str) -> None:
        with client(url) as db:
            for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    db.execute_command(*command)

    def test_admin_user_has_its_own_password(self, url: str, project: Project) -> None:
        parts = urlsplit(url)
        admin = redis.Redis(
            host=parts.hostname,
            port=parts.port,
            username="admin",
            password=project.secret(self.KEYVALUE.admin_password),
            socket_timeout=5,
            decode_responses=True,
        )
        with admin:
            # The commands the app user is denied; FLUSHALL only as a dry run,
            # which checks the ACL without wiping anything.
            assert admin.config_get("appendonly") == {"appendonly": "yes"}
            assert admin.keys("berth:no-such-key:*") == []
            assert admin.execute_command("ACL", "DRYRUN", "admin", "FLUSHALL") == "OK"
            persistence = admin.info("persistence")
            assert persistence["aof_enabled"] == 1
            assert persistence["aof_last_write_status"] == "ok"


def restart_probe(
    keyvalue: KeyValue,
) -> tuple[Callable[[dict[str, str], str], None], Callable[[dict[str, str]], str | None]]:
    """`write_marker(urls, token)` and `read_marker(urls)` for tests/test_restart.py."""
    broker = f"{keyvalue.prefix}_BROKER_URL"

    def write_marker(urls: dict[str, str], token: str) -> None:
        with client(urls[broker]) as db:
            db.set("berth:marker", token)

    def read_marker(urls: dict[str, str]) -> str | None:
        with client(urls[broker]) as db:
            return db.get("berth:marker")

    return write_marker, read_marker
