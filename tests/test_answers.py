"""Bad answers are refused with one sentence that names the problem and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import render

BAD_ANSWERS: list[tuple[dict[str, Any], str]] = [
    ({"project_name": "   "}, "project_name must not be empty"),
    ({"project_slug": "Bad Slug"}, 'project_slug "Bad Slug" is invalid'),
    ({"project_slug": "UPPER"}, 'project_slug "UPPER" is invalid'),
    ({"project_slug": "-leading-dash"}, "starting with a letter or digit"),
    ({"project_slug": "_underscore"}, "starting with a letter or digit"),
    ({"project_slug": "a" * 41}, "1 to 40 lowercase letters"),
    ({"project_slug": "dots.not.allowed"}, "is invalid"),
    ({"project_slug": ""}, "is invalid"),
    ({"services": []}, "services must include at least one service"),
    ({"services": ["pgbouncer"]}, "pgbouncer pools connections to PostgreSQL; select postgres too"),
    ({"services": ["pgbouncer", "valkey"]}, "select postgres too, or drop pgbouncer"),
    ({"services": ["valkey", "redis"]}, "choose valkey or redis, not both"),
    ({"services": ["redis"], "redis_port": 80}, "redis_port must be a whole number from 1024"),
    (
        {"services": ["postgres", "redis"], "postgres_port": 6379},
        "redis_port 6379 is already used by postgres_port; choose a different",
    ),
    ({"pgbouncer_port": 5432, "services": ["postgres", "pgbouncer"]}, "is already used by"),
    ({"bind_address": "localhost"}, 'bind_address "localhost" is not an IPv4 address'),
    ({"bind_address": "256.1.1.1"}, "is not an IPv4 address"),
    ({"bind_address": "127.0.0"}, "is not an IPv4 address"),
    ({"postgres_port": 80}, "postgres_port must be a whole number from 1024 to 65535 (got 80)"),
    ({"postgres_port": 1023}, "ports below 1024 need root"),
    ({"postgres_port": 65536}, "from 1024 to 65535 (got 65536)"),
    ({"valkey_port": 0}, "valkey_port must be a whole number from 1024 to 65535"),
    (
        {"postgres_port": 6379},
        "valkey_port 6379 is already used by postgres_port; choose a different",
    ),
    (
        {"services": ["clickhouse"], "clickhouse_native_port": 8123},
        "clickhouse_http_port 8123 is already used by clickhouse_native_port",
    ),
    (
        {"services": ["clickhouse"], "clickhouse_http_port": 99999},
        "clickhouse_http_port must be a whole number",
    ),
    ({"postgres_port": 7000, "valkey_port": 7000}, "is already used by"),
    # Versions: only the majors the volume layout is known for; no floating tags.
    ({"postgres_version": 16}, "postgres_version 16 is not supported; choose 18 or 17"),
    ({"postgres_version": "latest"}, "postgres_version latest is not supported; choose 18 or 17"),
    # SQL identifiers: safe without quoting, not the server's own names.
    ({"postgres_user": "postgres"}, 'postgres_user "postgres" is reserved by postgres'),
    ({"postgres_user": "pg_monitor"}, "(pg_ names are system roles)"),
    ({"postgres_user": "Robert'); DROP"}, "is not a safe identifier; use 1 to 63 lowercase"),
    ({"postgres_db": "template1"}, 'postgres_db "template1" is reserved by postgres'),
    ({"postgres_db": "my-db"}, 'postgres_db "my-db" is not a safe identifier'),
    ({"postgres_db": "d" * 64}, "is not a safe identifier"),
    ({"postgres_user": "user"}, 'postgres_user "user" is reserved by postgres'),
    ({"services": ["clickhouse"], "clickhouse_user": "default"}, "is reserved by clickhouse"),
    ({"services": ["clickhouse"], "clickhouse_db": "system"}, 'clickhouse_db "system" is reserved'),
    ({"services": ["clickhouse"], "clickhouse_user": "9x"}, "starting with a letter or _"),
    # nginx needs an upstream: the user's app, reachable from its container.
    ({"services": ["nginx"], "nginx_upstream": ""}, "nginx_upstream is empty; nginx proxies"),
    ({"services": ["nginx"], "nginx_upstream": "http://app:8000/"}, "is not host:port"),
    ({"services": ["nginx"], "nginx_upstream": "app"}, "is not host:port"),
    ({"services": ["nginx"], "nginx_upstream": "app:70000"}, "port 70000 is not from 1 to 65535"),
    (
        {"services": ["nginx"], "nginx_upstream": "127.0.0.1:8000"},
        "is the nginx container itself; for an app on this machine use host.docker.internal:8000",
    ),
    (
        {"services": ["nginx", "postgres"], "nginx_upstream": "postgres:5432"},
        "is berth's own postgres service, not an app",
    ),
    (
        {"services": ["nginx", "valkey"], "nginx_upstream": "host.docker.internal:6379"},
        "port 6379 is valkey_port, published by this stack",
    ),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=lambda v: str(v)[:40])
def test_bad_answer_is_refused(tmp_path: Path, answers: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="Validation error") as caught:
        render(tmp_path / "p", **answers)
    text = str(caught.value)
    assert message in text
    assert text.count("\n") == 0, "one line"
    assert not (tmp_path / "p" / "compose.yaml").exists(), "nothing is written"


@pytest.mark.parametrize(
    "answers",
    [
        {"project_slug": "a" * 40},
        {"project_slug": "9lives_and-dashes"},
        {"services": ["valkey"], "postgres_port": 6379},  # postgres not chosen: no clash
        {"services": ["redis"], "valkey_port": 6379},  # valkey not chosen: no clash
        {"bind_address": "0.0.0.0", "postgres_port": 1024, "valkey_port": 65535},
        {"postgres_version": "17", "postgres_user": "_a", "postgres_db": "b" * 63},
        {"services": ["nginx"], "nginx_upstream": "my-app.internal:3000"},
    ],
    ids=[
        "slug-40",
        "slug-mixed",
        "unchosen-port-ignored",
        "alternative-port-ignored",
        "edges",
        "ids",
        "upstream",
    ],
)
def test_good_edge_answers_render(tmp_path: Path, answers: dict[str, Any]) -> None:
    assert (render(tmp_path / "p", **answers) / "compose.yaml").is_file()


def test_slug_default_is_derived_from_the_name(tmp_path: Path) -> None:
    project = render(tmp_path / "p", project_name="  Acme Infra / 2026!  ")
    assert "COMPOSE_PROJECT_NAME=acme-infra-2026\n" in (project / ".env.example").read_text()


def test_identifiers_default_from_the_slug_and_stay_valid(tmp_path: Path) -> None:
    project = render(tmp_path / "p", project_slug="9lives-db", services=["postgres", "nginx"])
    env = (project / ".env.example").read_text()
    assert "POSTGRES_USER=app_9lives_db\n" in env
    assert "POSTGRES_DB=app_9lives_db\n" in env
    assert "NGINX_UPSTREAM=http://host.docker.internal:8000\n" in env
