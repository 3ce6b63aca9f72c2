"""Live tests for Valkey: AUTH with the secret, SET/GET, denied commands."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
import redis

from berth.project import Project


@pytest.fixture(scope="module")
def url(urls: dict[str, dict[str, str]]) -> str:
    return urls["valkey"]["VALKEY_CACHE_URL"]


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


def test_auth_set_get(url: str) -> None:
    key = f"berth:it:{uuid.uuid4().hex}"
    with client(url) as db:
        assert db.set(key, "value", ex=60)
        assert db.get(key) == "value"
        assert db.delete(key) == 1


def test_each_purpose_has_its_own_database(urls: dict[str, dict[str, str]]) -> None:
    named = urls["valkey"]
    assert set(named) == {"VALKEY_CACHE_URL", "VALKEY_CHANNELS_URL", "VALKEY_BROKER_URL"}
    numbers = {name: int(url.rsplit("/", 1)[1]) for name, url in named.items()}
    assert len(set(numbers.values())) == 3, "purposes must not share a database"
    key = f"berth:it:{uuid.uuid4().hex}"
    for name, url in named.items():
        with client(url) as db:
            assert db.set(key, name, ex=60)
    for name, url in named.items():
        with client(url) as db:
            assert db.get(key) == name, f"{name} sees another purpose's value"
            assert db.connection_pool.connection_kwargs["db"] == numbers[name]
            db.delete(key)


def test_no_password_is_refused(url: str) -> None:
    parts = urlsplit(url)
    anonymous = redis.Redis(host=parts.hostname, port=parts.port, socket_timeout=5)
    with anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def test_app_user_cannot_run_dangerous_commands(url: str) -> None:
    with client(url) as db:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                db.execute_command(*command)


def test_admin_user_has_its_own_password(url: str, project: Project) -> None:
    parts = urlsplit(url)
    admin = redis.Redis(
        host=parts.hostname,
        port=parts.port,
        username="admin",
        password=project.secret("valkey_admin_password"),
        socket_timeout=5,
        decode_responses=True,
    )
    with admin:
        assert admin.config_get("appendonly") == {"appendonly": "yes"}


# ── restart probe (used by tests/test_restart.py) ──────────────────────────
def write_marker(urls: dict[str, str], token: str) -> None:
    with client(urls["VALKEY_BROKER_URL"]) as db:
        db.set("berth:marker", token)


def read_marker(urls: dict[str, str]) -> str | None:
    with client(urls["VALKEY_BROKER_URL"]) as db:
        return db.get("berth:marker")
