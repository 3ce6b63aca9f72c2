"""Unit tests of the generated projects' tooling (template/berth), no Docker needed."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dotenv import dotenv_values

from berth import checks, engine, envfile, report, scram, secrets
from berth.compose import Compose, Container, parse_json_rows
from berth.errors import BerthError, CommandError
from berth.project import MASK, Project, cpu_ceilings
from berth.service import Endpoint, load_services
from harness import render

TEMPLATE_SERVICES = Path(__file__).resolve().parent.parent / "template" / "services"


# ── .env parsing ────────────────────────────────────────────────────────────
VALID_ENV = """\
# comment
PLAIN=value
SPACED = value with spaces   # trailing comment
export EXPORTED=1
SINGLE='it is $literal'
DOUBLE="line\\nnext \\"q\\""
EMPTY=
HASH=a#b
"""


def test_parse_agrees_with_python_dotenv_on_valid_files() -> None:
    ours = envfile.parse(VALID_ENV)
    theirs = {k: v or "" for k, v in dotenv_values(stream=io.StringIO(VALID_ENV)).items()}
    assert ours["PLAIN"] == theirs["PLAIN"] == "value"
    assert ours["SPACED"] == theirs["SPACED"] == "value with spaces"
    assert ours["EXPORTED"] == "1"
    assert ours["DOUBLE"] == theirs["DOUBLE"] == 'line\nnext "q"'
    assert ours["EMPTY"] == ""
    assert ours["HASH"] == theirs["HASH"] == "a#b"
    assert ours["SINGLE"] == theirs["SINGLE"] == "it is $literal"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NOEQUALS\n", ".env:1: malformed line 'NOEQUALS'"),
        ("OK=1\n1BAD=2\n", ".env:2: malformed line"),
        ("PASSWORD=pa$word\n", ".env:1: PASSWORD contains '$'"),
        ('X="a${B}"\n', "single quotes"),
        ("X='open\n", ".env:1: X has no closing single quote"),
        ('X="open\n', ".env:1: X has no closing double quote"),
        ("X='a' b\n", "unexpected text after the quoted value of X"),
    ],
)
def test_parse_errors_name_file_line_and_fix(text: str, message: str) -> None:
    with pytest.raises(BerthError) as caught:
        envfile.parse(text)
    assert message in str(caught.value)
    assert caught.value.fix


def test_single_quotes_keep_dollar_literally() -> None:
    assert envfile.parse("P='pa$word'\n") == {"P": "pa$word"}


def test_environment_overrides_file_values() -> None:
    assert envfile.effective({"A": "1", "B": "2"}, {"B": "3", "C": "4"}) == {"A": "1", "B": "3"}


def test_ensure_env_copies_example_once(tmp_path: Path) -> None:
    example, env = tmp_path / ".env.example", tmp_path / ".env"
    example.write_text("A=1\n")
    assert envfile.ensure(env, example) is True
    env.write_text("A=2\n")
    assert envfile.ensure(env, example) is False
    assert env.read_text() == "A=2\n"


# ── secrets ─────────────────────────────────────────────────────────────────
def test_secrets_are_random_0600_without_newline_and_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    assert secrets.ensure(folder, ["a", "b"]) == ["a", "b"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    a = (folder / "a").read_text()
    assert len(a) == 43 and "\n" not in a and a != (folder / "b").read_text()
    assert stat.S_IMODE((folder / "a").stat().st_mode) == 0o600
    assert secrets.ensure(folder, ["a", "c"]) == ["c"]
    assert (folder / "a").read_text() == a


def test_write_atomic_is_private_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        secrets.write_atomic(tmp_path / "s", "value")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s"], "no temp file left behind"


def test_read_missing_or_empty_secret_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(BerthError, match="run `inv secrets`"):
        secrets.read(tmp_path, "nope")
    (tmp_path / "empty").write_text("")
    with pytest.raises(BerthError, match="is empty"):
        secrets.read(tmp_path, "empty")


# ── compose helper ──────────────────────────────────────────────────────────
def test_compose_argv_carries_project_dir_env_files_and_profiles(tmp_path: Path) -> None:
    helper = Compose(
        project_dir=tmp_path,
        project_name="demo",
        files=(tmp_path / "compose.yaml", tmp_path / "compose.override.yaml"),
        env_file=tmp_path / ".env",
        profiles=("tools",),
    )
    assert helper.argv("up", "--wait") == [
        "docker", "compose", "--project-name", "demo", "--project-directory", str(tmp_path),
        "--env-file", str(tmp_path / ".env"),
        "--file", str(tmp_path / "compose.yaml"), "--file", str(tmp_path / "compose.override.yaml"),
        "--profile", "tools", "up", "--wait",
    ]  # fmt: skip


def test_cpu_ceilings_above_the_machine_are_lowered_to_its_count() -> None:
    values = {"POSTGRES_CPUS": "2", "CLICKHOUSE_CPUS": "0.5", "NGINX_CPUS": "4.5",
              "ODD_CPUS": "lots", "POSTGRES_PORT": "9"}  # fmt: skip
    assert cpu_ceilings(values, 1) == {"POSTGRES_CPUS": "1", "NGINX_CPUS": "1"}
    assert cpu_ceilings(values, 4) == {"NGINX_CPUS": "4"}
    assert cpu_ceilings(values, 8) == {}


def test_compose_calls_carry_the_lowered_ceilings(tmp_path: Path) -> None:
    root = render(tmp_path / "p", services=["postgres"])
    Project(root).prepare()
    env = root / ".env"
    more = (os.cpu_count() or 1) + 3
    env.write_text(env.read_text().replace("POSTGRES_CPUS=2", f"POSTGRES_CPUS={more}"))
    project = Project(root)
    assert project.compose.env == {"POSTGRES_CPUS": str(os.cpu_count() or 1)}
    config = project.compose.run("config", "--format", "json").stdout
    limits = json.loads(config)["services"]["postgres"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) == (os.cpu_count() or 1)


def test_ps_rows_parse_in_both_compose_formats() -> None:
    row = '{"Service":"pg","Name":"d-pg-1","State":"running","Health":"healthy","ID":"abc",'
    row += '"Publishers":[{"URL":"::","TargetPort":5432,"PublishedPort":5433},'
    row += '{"URL":"127.0.0.1","TargetPort":5432,"PublishedPort":5433},'
    row += '{"URL":"","TargetPort":9,"PublishedPort":0}]}'
    for text in (row + "\n" + row, f"[{row},{row}]"):
        rows = parse_json_rows(text)
        assert len(rows) == 2
        container = Container.from_json(rows[0])
        assert container.host_port(5432) == ("127.0.0.1", 5433), "IPv4 preferred"
        assert container.host_port(9) is None, "unpublished ports are ignored"
    assert parse_json_rows("  \n") == []


def test_command_error_keeps_everything_and_summarises_in_one_line() -> None:
    error = CommandError(["docker", "compose", "up"], 17, "out", "warn\nfatal: boom\n")
    assert (error.cmd, error.returncode, error.stdout) == (["docker", "compose", "up"], 17, "out")
    assert error.line() == "`docker compose up …` failed: fatal: boom"
    assert "warn" in error.details


# ── output ──────────────────────────────────────────────────────────────────
def test_table_aligns_columns() -> None:
    assert report.table(["A", "LONG"], [("xyz", 1)]).splitlines() == ["A    LONG", "xyz  1"]


@pytest.mark.parametrize(
    ("started", "age"),
    [("2026-01-01T00:00:30.123456789Z", "30s"), ("2025-12-31T23:01:00Z", "60m"),
     ("2025-12-30T00:00:00Z", "2d"), ("garbage", "-")],
)  # fmt: skip
def test_uptime_is_human(started: str, age: str) -> None:
    assert report._age(started, datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)) == age


# ── pre-flight ──────────────────────────────────────────────────────────────
def test_port_in_use_names_the_holder() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        holder = checks.port_in_use("127.0.0.1", port)
        assert holder is not None
        assert f"pid {os.getpid()}" in holder
    assert checks.port_in_use("127.0.0.1", port) is None
    assert checks.free_port_near(port) >= port


def test_port_with_only_time_wait_connections_counts_as_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server_side, _ = listener.accept()
        server_side.close()  # the server closes first: its side enters TIME_WAIT
        client.close()
    assert checks.port_in_use("127.0.0.1", port) is None


def test_unusable_bind_address_is_explained() -> None:
    with pytest.raises(BerthError, match=r"BIND_ADDRESS 192\.0\.2\.1 is not an address"):
        checks.port_in_use("192.0.2.1", 15999)


# ── services and project ────────────────────────────────────────────────────
def test_template_services_load_and_build_urls() -> None:
    services = {s.name: s for s in load_services(TEMPLATE_SERVICES)}
    assert set(services) == {"postgres", "pgbouncer", "valkey", "redis", "clickhouse", "nginx"}
    odd = {"postgres_password": "p@ss/w:rd", "valkey_password": "v@l"}
    env = {"POSTGRES_USER": "app", "POSTGRES_DB": "my db"}
    pg = services["postgres"].urls(env, odd.__getitem__, {"main": Endpoint("127.0.0.1", 5)})
    assert pg == {"DATABASE_URL": "postgresql://app:p%40ss%2Fw%3Ard@127.0.0.1:5/my%20db"}
    with_pooler = {**env, "PGBOUNCER_PORT": "6432"}
    pg = services["postgres"].urls(with_pooler, odd.__getitem__, {"main": Endpoint("h", 5)})
    assert list(pg) == ["DIRECT_DATABASE_URL"], "apps get the pooler's DATABASE_URL"
    pooled = services["pgbouncer"].urls(with_pooler, odd.__getitem__, {"main": Endpoint("h", 6)})
    assert pooled == {"DATABASE_URL": "postgresql://app:p%40ss%2Fw%3Ard@h:6/my%20db"}
    env |= {"VALKEY_DB_CACHE": "0", "VALKEY_DB_CHANNELS": "1", "VALKEY_DB_BROKER": "15"}
    vk = services["valkey"].urls(env, odd.__getitem__, {"main": Endpoint("127.0.0.1", 6)})
    assert vk == {
        "VALKEY_CACHE_URL": "redis://default:v%40l@127.0.0.1:6/0",
        "VALKEY_CHANNELS_URL": "redis://default:v%40l@127.0.0.1:6/1",
        "VALKEY_BROKER_URL": "redis://default:v%40l@127.0.0.1:6/15",
    }
    env["VALKEY_DB_BROKER"] = "16"
    with pytest.raises(BerthError, match="VALKEY_DB_BROKER='16' is not a database number"):
        services["valkey"].urls(env, odd.__getitem__, {"main": Endpoint("127.0.0.1", 6)})


def test_valkey_and_redis_keep_their_own_names() -> None:
    """Same rules (berth/keyvalue.py), but each reads only its own secrets and .env keys."""
    services = {s.name: s for s in load_services(TEMPLATE_SERVICES)}
    for name in ("valkey", "redis"):
        assert [p.env_var for p in services[name].ports] == [f"{name.upper()}_PORT"]
        assert services[name].secrets == (f"{name}_password", f"{name}_admin_password")
    env = {"VALKEY_DB_CACHE": "0", "VALKEY_DB_CHANNELS": "1", "VALKEY_DB_BROKER": "2"}
    env |= {"REDIS_DB_CACHE": "3", "REDIS_DB_CHANNELS": "4", "REDIS_DB_BROKER": "5"}
    secret = {"redis_password": "r/s"}.__getitem__
    urls = services["redis"].urls(env, secret, {"main": Endpoint("h", 7)})
    numbers = {"CACHE": 3, "CHANNELS": 4, "BROKER": 5}
    assert urls == {f"REDIS_{p}_URL": f"redis://default:r%2Fs@h:7/{n}" for p, n in numbers.items()}
    del env["REDIS_DB_CACHE"]
    with pytest.raises(BerthError, match="REDIS_DB_CACHE='' is not a database number"):
        services["redis"].urls(env, secret, {"main": Endpoint("h", 7)})


@pytest.mark.parametrize("name", ["valkey", "redis"])
def test_key_value_acl_holds_hashes_not_passwords(name: str) -> None:
    service = {s.name: s for s in load_services(TEMPLATE_SERVICES)}[name]
    values = {f"{name}_password": "app-secret", f"{name}_admin_password": "admin-secret"}
    assert service.derived is not None
    files = service.derived({}, values.__getitem__)
    content, mode = files[f"{name}_users.acl"]
    assert "app-secret" not in content and "admin-secret" not in content
    assert mode == 0o644
    lines = content.splitlines()
    assert lines[0].startswith("user default on #") and "-@admin" in lines[0]
    assert lines[1].startswith("user admin on #") and lines[1].endswith("+@all")
    assert all(not line.startswith("#") for line in lines), "ACL files take no comments"
    digest = hashlib.sha256(b"app-secret").hexdigest()
    assert lines[0] == f"user default on #{digest} ~* &* +@all -@admin -flushall -keys"


def test_prepare_creates_env_secrets_and_derived_files(tmp_path: Path) -> None:
    root = render(tmp_path / "p", project_slug="prep-test")
    project = Project(root, environ={})
    notes = project.prepare()
    assert "created .env from .env.example" in notes
    names = sorted(p.name for p in (root / "secrets").iterdir())
    assert names == [
        ".gitignore", "README.md", "postgres_password", "postgres_password.scram",
        "valkey_admin_password", "valkey_password", "valkey_users.acl",
    ]  # fmt: skip
    assert project.prepare() == [], "second run changes nothing"
    assert project.name == "prep-test"
    assert project.urls([], reveal=False) == {}
    assert MASK == "****"


def test_project_reports_missing_env_keys_and_bad_ports(tmp_path: Path) -> None:
    root = render(tmp_path / "p", project_slug="keys-test")
    (root / ".env").write_text("COMPOSE_PROJECT_NAME=keys-test\n")
    with pytest.raises(BerthError, match=r"copy those lines from \.env\.example"):
        _ = Project(root, environ={}).values
    (root / ".env").write_text((root / ".env.example").read_text())
    project = Project(root, environ={"POSTGRES_PORT": "80"})
    with pytest.raises(BerthError, match=r"POSTGRES_PORT='80' is not a port from 1024"):
        project.host_port(project.service("postgres").ports[0])
    with pytest.raises(BerthError, match="no service named 'mysql'"):
        project.service("mysql")


# ── engine API (read-only fast path) ────────────────────────────────────────
def test_engine_rows_become_containers_like_compose_ps() -> None:
    row = {
        "Id": "abc123", "Names": ["/demo-postgres-1"], "State": "running",
        "Status": "Up 3 seconds (healthy)",
        "Labels": {"com.docker.compose.service": "postgres"},
        "Ports": [{"IP": "127.0.0.1", "PrivatePort": 5432, "PublicPort": 5433, "Type": "tcp"},
                  {"PrivatePort": 9, "Type": "tcp"}],
    }  # fmt: skip
    container = engine._container(row)
    assert (container.service, container.name, container.state, container.health) == (
        "postgres", "demo-postgres-1", "running", "healthy",
    )  # fmt: skip
    assert container.host_port(5432) == ("127.0.0.1", 5433)
    exited = engine._container({**row, "State": "exited", "Status": "Exited (3) 2 seconds ago"})
    assert (exited.health, exited.exit_code) == ("", 3)
    starting = engine._container({**row, "Status": "Up 1 second (health: starting)"})
    assert starting.health == "starting"
    assert not engine._is_service({"Labels": {"com.docker.compose.oneoff": "True"}})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DOCKER_HOST": "tcp://10.0.0.1:2376"}, None),
        ({"DOCKER_HOST": "ssh://me@box"}, None),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
        ({"DOCKER_CONTEXT": "desktop-linux"}, None),
    ],
)
def test_engine_socket_only_where_the_cli_would_go(
    environ: dict[str, str], expected: str | None
) -> None:
    assert engine.socket_path(environ) == expected


def test_engine_socket_respects_the_current_docker_context(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"currentContext": "rootless"}')
    assert engine.socket_path({"DOCKER_CONFIG": str(tmp_path)}) is None


def fake_engine(tmp_path: Path, answer: bytes) -> tuple[str, threading.Thread]:
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def serve() -> None:
        with server, server.accept()[0] as conn:
            conn.recv(4096)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return path, thread


def test_engine_get_reads_an_http10_json_answer(tmp_path: Path) -> None:
    answer = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"Version": "26.1.5"}'
    path, thread = fake_engine(tmp_path, answer)
    assert engine.server_version(path) == "26.1.5"
    thread.join(5)


def test_engine_get_turns_errors_into_oserror(tmp_path: Path) -> None:
    path, thread = fake_engine(tmp_path, b"HTTP/1.0 404 Not Found\r\n\r\n{}")
    with pytest.raises(OSError, match="404"):
        engine.get("/containers/nope/json", path)
    thread.join(5)
    with pytest.raises(OSError):
        engine.get("/version", str(tmp_path / "absent.sock"))


def test_engine_timestamps_parse_with_and_without_nanoseconds() -> None:
    base = engine.timestamp("2026-11-22T14:46:31Z")
    assert engine.timestamp("2026-11-22T14:46:31.454308184Z") == pytest.approx(base + 0.454308)
    assert engine.timestamp("2026-11-22T14:46:31+00:00") == base


def test_postgres_container_gets_the_verifier_not_the_password() -> None:
    postgres = {s.name: s for s in load_services(TEMPLATE_SERVICES)}["postgres"]
    files = postgres.derived({}, {"postgres_password": "plain"}.__getitem__)
    content, mode = files["postgres_password.scram"]
    assert content == scram.verifier("plain") and "plain" not in content.split("$")[0]
    assert mode == 0o600


def test_pgbouncer_auth_file_is_a_deterministic_scram_verifier() -> None:
    pgbouncer = {s.name: s for s in load_services(TEMPLATE_SERVICES)}["pgbouncer"]
    secret = {"postgres_password": "correct horse"}.__getitem__
    files = pgbouncer.derived({"POSTGRES_USER": 'we"ird'}, secret)
    content, mode = files["pgbouncer_userlist.txt"]
    assert mode == 0o644 and "correct horse" not in content
    user, verifier = content.rstrip("\n").split(" ")
    assert user == '"we""ird"', "quotes doubled, as PgBouncer's auth file wants"
    method, rest = verifier.strip('"').split("$", 1)
    iterations_salt, keys = rest.split("$")
    assert method == "SCRAM-SHA-256" and iterations_salt.startswith("4096:")
    assert len(base64.b64decode(iterations_salt.split(":")[1])) == 16
    assert [len(base64.b64decode(k)) for k in keys.split(":")] == [32, 32]
    assert pgbouncer.derived({"POSTGRES_USER": 'we"ird'}, secret) == files, "deterministic"


def test_engine_query_falls_back_with_none(tmp_path: Path) -> None:
    assert engine.query(lambda sock: sock, {"DOCKER_HOST": "tcp://10.0.0.1:2376"}) is None
    absent = {"DOCKER_HOST": f"unix://{tmp_path / 'absent.sock'}"}
    assert engine.query(lambda sock: engine.get("/version", sock), absent) is None
    path, thread = fake_engine(tmp_path, b'HTTP/1.0 200 OK\r\n\r\n{"Version": "27.0.1"}')
    assert engine.query(engine.server_version, {"DOCKER_HOST": f"unix://{path}"}) == "27.0.1"
    thread.join(5)


def test_ctrl_c_lets_the_child_wind_down(tmp_path: Path) -> None:
    """Ctrl-C while a child runs: the child gets SIGINT and time to clean up
    (compose finishing a recreate), not an immediate SIGKILL; then we re-raise."""
    import signal
    import sys

    from berth import proc

    marker = tmp_path / "cleaned-up"
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            proc.run([sys.executable, "-c", child], timeout=30)
    finally:
        timer.cancel()
    assert marker.read_text() == "yes", "the child ran its SIGINT handler"
