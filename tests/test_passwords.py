"""Hand-written passwords survive end to end (live).

berth generates URL-safe passwords, but a user may write their own into
secrets/<name> before the first `inv up`. Quotes, `$`, `#`, spaces and
unicode must reach every component intact: the secret file only (never
.env or compose), percent-encoded URLs, PostgreSQL's SCRAM verifier (with
SASLprep, as libpq normalises), PgBouncer's auth file, Valkey's ACL hash and
its health check, ClickHouse's user config.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
import redis

from berth.project import Project
from harness import free_port_answers, render, run_in, tool_env

pytestmark = pytest.mark.live

#: "\ufb01" (the fi ligature) is what libpq's SASLprep rewrites to "fi".
POSTGRES_PASSWORD = "p'a\"s s$HOME #x ünï\ufb01 ☃ %2F@:/?&="
VALKEY_PASSWORD = "v'a\"l $(id) #y k€y ☃ %41@:/"
#: ASCII only (doctor refuses more: HTTP Basic auth), but every awkward ASCII character.
CLICKHOUSE_PASSWORD = "c'l\"ick s$HOME #z %2F@:/?&=\\`<![CDATA[]]>"


def test_hand_written_passwords_work_everywhere(tmp_path: Path, docker_engine: None) -> None:
    slug = f"berth-live-passwords-{uuid.uuid4().hex[:6]}"
    services = ["postgres", "pgbouncer", "valkey", "clickhouse"]
    root = render(tmp_path / slug, project_slug=slug, services=services, pgvector=False,
                  **free_port_answers())  # fmt: skip
    project = Project(root)
    project.secrets_dir.mkdir(mode=0o700, exist_ok=True)
    passwords = {"postgres_password": POSTGRES_PASSWORD, "valkey_password": VALKEY_PASSWORD,
                 "clickhouse_password": CLICKHOUSE_PASSWORD}  # fmt: skip
    for name, value in passwords.items():
        path = project.secrets_dir / name
        path.write_text(value + "\n", encoding="utf-8")  # as an editor saves it
        path.chmod(0o600)
    try:
        run_in(root, "invoke", "up")
        out = subprocess.run(
            ["invoke", "urls", "--json", "--reveal"],
            cwd=root, env=tool_env(), capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        urls = json.loads(out)

        direct = urls["postgres"]["DIRECT_DATABASE_URL"]
        pooled = urls["pgbouncer"]["DATABASE_URL"]
        for url in (direct, pooled):
            assert POSTGRES_PASSWORD not in url, "percent-encoded"
            with psycopg.connect(url, connect_timeout=10) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(direct) as conn:
            stored = conn.execute("SELECT current_setting('password_encryption')").fetchone()
        assert stored == ("scram-sha-256",)

        cache = redis.Redis.from_url(urls["valkey"]["VALKEY_CACHE_URL"])
        assert cache.set("k", "v") and cache.get("k") == b"v"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=cache.connection_pool.connection_kwargs["port"],
                        username="default", password=VALKEY_PASSWORD + "\n").ping()  # fmt: skip

        # ClickHouse: the entrypoint puts the password in XML (CDATA-escaped);
        # clients send it in a Basic auth header.
        http = urlsplit(urls["clickhouse"]["CLICKHOUSE_URL"])
        assert unquote(http.password or "") == CLICKHOUSE_PASSWORD
        request = urllib.request.Request(f"http://{http.hostname}:{http.port}/?query=SELECT%201")
        token = base64.b64encode(f"{unquote(http.username or '')}:{CLICKHOUSE_PASSWORD}".encode())
        request.add_header("Authorization", f"Basic {token.decode()}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.read() == b"1\n"

        # The plaintext is only in its secret file: not in .env, compose or derived files.
        for path in [root / ".env", *root.glob("compose*.yaml"), *project.secrets_dir.iterdir()]:
            if path.name in passwords or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            assert not any(value in text for value in passwords.values()), path
        assert (project.secrets_dir / "postgres_password").read_text().endswith("\n"), "untouched"
    finally:
        project.compose.run("down", "--volumes", "--remove-orphans", check=False)
