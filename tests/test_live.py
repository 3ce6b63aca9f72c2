"""Live: render a project, run its stack and its own checks, always tear down.

Each case uses a unique project name and free ports, so a developer's own
stack (even one rendered from this template) is never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest
import redis

from berth import envfile
from berth.project import Project
from harness import (
    free_port,
    free_port_answers,
    full_catalog,
    missing_images,
    render,
    run_in,
    tool_env,
)

pytestmark = pytest.mark.live

CASES = {
    "full": {"services": full_catalog()},  # all but redis, the alternative to valkey
    "defaults": {},
    "postgres-only": {"services": ["postgres"], "pgvector": False},
    "postgres17-pgvector": {"services": ["postgres"], "postgres_version": 17},
    "valkey-only": {"services": ["valkey"]},
    "pg-pgbouncer-valkey": {"services": ["postgres", "pgbouncer", "valkey"]},
    "pg-redis": {"services": ["postgres", "redis"]},
    "clickhouse-only": {"services": ["clickhouse"]},
    "nginx-postgres": {"services": ["nginx", "postgres"]},
}


@contextmanager
def removed_afterwards(project: Project) -> Iterator[Project]:
    """Always, also on failure: remove the stack's containers, networks and volumes."""
    try:
        yield project
    finally:
        project.compose.run("down", "--volumes", "--remove-orphans", check=False)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def project_dir(
    request: pytest.FixtureRequest, tmp_path: Path, docker_engine: None
) -> Iterator[Path]:
    slug = f"berth-live-{request.param}-{uuid.uuid4().hex[:6]}"
    answers = {"project_slug": slug, **free_port_answers()}
    root = render(tmp_path / slug, **answers, **CASES[request.param])
    missing = missing_images(root)
    if missing:
        pytest.fail(f"images missing locally: {missing}; run `docker pull IMAGE` (CI: provision)")
    with removed_afterwards(Project(root)):
        yield root


def timed_up(root: Path) -> float:
    started = time.monotonic()
    run_in(root, "invoke", "up")
    return time.monotonic() - started


def test_render_up_check_down(project_dir: Path, timings: list[str]) -> None:
    cold = timed_up(project_dir)
    run_in(project_dir, "invoke", "stop")
    warm = timed_up(project_dir)
    timings.append(f"{project_dir.name}: cold inv up -> healthy {cold:.2f} s, warm {warm:.2f} s")

    project = Project(project_dir)
    listed = project.compose.ps()
    assert {c.service for c in listed} == {s.name for s in project.services}
    # berth's fast Engine-API view must agree with `docker compose ps`.
    assert sorted(project.containers(), key=str) == sorted(listed, key=str)

    # The project's own checks; integration runs on a separate test stack
    # while the dev stack stays up, and must leave the dev stack untouched.
    sessions = ("lint", "compose", "scan", "integration")
    run_in(project_dir, "nox", "--no-venv", "--no-install", "-s", *sessions)
    assert sorted(project.compose.ps(), key=str) == sorted(listed, key=str), "dev stack untouched"
    test_stack = Project(project_dir, env_name="test")
    assert test_stack.name == f"{project.name}-test"
    assert test_stack.compose.ps() == [], "the test stack is removed after the run"
    assert volumes_of(test_stack) == [], "... with its volumes"

    run_in(project_dir, "invoke", "down")
    assert project.compose.ps() == []
    stateful = [s for s in project.services if s.stateful]
    assert len(volumes_of(project)) == len(stateful), "inv down keeps every data volume"

    assert_no_secret_reaches_git(project)


def volumes_of(project: Project) -> list[str]:
    label = f"label=com.docker.compose.project={project.name}"
    return subprocess.run(
        ["docker", "volume", "ls", "--quiet", "--filter", label],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


def test_prod_overlay_runs_hardened_and_unpublished(tmp_path: Path, docker_engine: None) -> None:
    slug = f"berth-live-prod-{uuid.uuid4().hex[:6]}"
    root = render(tmp_path / slug, project_slug=slug)
    with removed_afterwards(Project(root, env_name="prod")) as prod:
        run_in(root, "invoke", "up", "--env", "prod")
        containers = prod.containers()
        assert {c.service for c in containers} == set(prod.service_names())
        assert all(c.health == "healthy" and not c.publishers for c in containers)
        client = docker.from_env()
        for c in containers:
            attrs = client.containers.get(c.id).attrs
            host = attrs["HostConfig"]
            assert host["RestartPolicy"]["Name"] == "unless-stopped"
            assert host["Memory"] > 0 and host["NanoCpus"] > 0
            assert host["LogConfig"]["Config"]["max-size"] == "10m"
            assert list(attrs["NetworkSettings"]["Networks"]) == [f"{prod.name}_data"]
        network = client.networks.get(f"{prod.name}_data")
        assert network.attrs["Internal"] is True


def assert_no_secret_reaches_git(project: Project) -> None:
    root = project.root
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    staged = subprocess.run(
        ["git", "diff", "--cached", "--name-only"], cwd=root, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    assert ".env" not in staged
    assert [p for p in staged if p.startswith("secrets/")] == [
        "secrets/.gitignore",
        "secrets/README.md",
    ]
    values = [project.secret(name) for name in project.secret_names()]
    for path in staged:
        text = (root / path).read_text(errors="replace")
        assert not any(value in text for value in values), f"a secret leaked into {path}"


@pytest.mark.parametrize("name", ["valkey", "redis"])
def test_key_value_keeps_acknowledged_writes_through_a_crash(
    tmp_path: Path, docker_engine: None, name: str
) -> None:
    """SIGKILL leaves the server no time for a shutdown save, and no RDB snapshot
    is due yet: the key can only come back from the append-only file."""
    slug = f"berth-live-aof-{name}-{uuid.uuid4().hex[:6]}"
    answers = {f"{name}_port": free_port()}
    root = render(tmp_path / slug, project_slug=slug, services=[name], **answers)
    with removed_afterwards(Project(root)) as project:
        run_in(root, "invoke", "up")
        token = uuid.uuid4().hex
        with key_value(project, name) as db:
            db.set("berth:crash-probe", token)
            unsaved = db.info("persistence")["rdb_changes_since_last_save"]
            assert unsaved > 0, "the write must not be in an RDB snapshot already"
        (container,) = project.containers()
        docker.from_env().containers.get(container.id).kill()  # SIGKILL
        run_in(root, "invoke", "up")
        with key_value(project, name) as db:
            assert db.get("berth:crash-probe") == token, f"{name} lost an acknowledged write"


def key_value(project: Project, name: str) -> redis.Redis:
    """A client for the `admin` user of the running Valkey/Redis (ports read anew)."""
    url = project.urls(project.containers(), reveal=True)[name][f"{name.upper()}_BROKER_URL"]
    parts = urlsplit(url)
    return redis.Redis(
        host=parts.hostname,
        port=parts.port,
        db=int(parts.path.strip("/")),
        username="admin",
        password=project.secret(f"{name}_admin_password"),
        socket_timeout=5,
        decode_responses=True,
    )


@pytest.fixture
def valkey_project(tmp_path: Path, docker_engine: None) -> Iterator[Path]:
    slug = f"berth-live-errors-{uuid.uuid4().hex[:6]}"
    root = render(tmp_path / slug, project_slug=slug, services=["valkey"], valkey_port=free_port())
    with removed_afterwards(Project(root)):
        yield root


def inv_up_failure(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "up", "--timeout", "30"],
        cwd=root, env=tool_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr


def test_up_names_the_process_holding_a_port(valkey_project: Path) -> None:
    port = int(envfile.load(valkey_project / ".env.example")["VALKEY_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        stderr = inv_up_failure(valkey_project)
    last = stderr.strip().splitlines()[-1]
    assert f"error: port {port} (VALKEY_PORT) on 127.0.0.1 is taken by process" in last
    assert f"pid {os.getpid()}" in last
    assert "set VALKEY_PORT=" in last
    assert Project(valkey_project).compose.ps() == [], "nothing was started"


def test_up_on_a_machine_with_fewer_cpus_than_the_ceiling(
    tmp_path: Path, docker_engine: None
) -> None:
    """Docker refuses a CPU limit above the machine's count; berth lowers the
    ceiling instead of failing (here the .env asks for 3 more than exist)."""
    slug = f"berth-live-cpus-{uuid.uuid4().hex[:6]}"
    root = render(tmp_path / slug, project_slug=slug, services=["postgres"], pgvector=False,
                  postgres_port=free_port())  # fmt: skip
    project = Project(root)
    project.prepare()
    env = root / ".env"
    cpus = os.cpu_count() or 1
    env.write_text(env.read_text().replace("POSTGRES_CPUS=2", f"POSTGRES_CPUS={cpus + 3}"))
    with removed_afterwards(Project(root)) as project:
        raw = project.compose.argv("up", "--detach", "--no-start")
        refused = subprocess.run(raw, capture_output=True, text=True, check=False)
        assert "Range of CPUs" in refused.stderr, "without berth Docker refuses the limit"
        run_in(root, "invoke", "up")
        container = docker.from_env().containers.get(f"{project.name}-postgres-1")
        assert container.attrs["HostConfig"]["NanoCpus"] == cpus * 10**9
        assert container.attrs["State"]["Health"]["Status"] == "healthy"


def test_up_shows_the_log_tail_of_a_service_that_never_gets_healthy(valkey_project: Path) -> None:
    conf = valkey_project / "services" / "valkey" / "valkey.conf"
    conf.write_text(conf.read_text() + "no-such-directive yes\n")
    stderr = inv_up_failure(valkey_project)
    assert "last 40 log lines of valkey" in stderr
    assert "no-such-directive" in stderr, "the server's own complaint is shown"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: the stack did not become healthy: valkey"), "what"
    assert "valkey exited/" in last or "valkey running/unhealthy" in last, "why: its state"
    assert last.endswith("(fix: read the logs above, then `inv logs --service valkey`"
                         " or `inv status`)"), "the command to run next"  # fmt: skip


@pytest.mark.parametrize("services", [full_catalog(), ["redis"]], ids=["full", "redis"])
def test_hardened_stack_runs_with_secrets_owned_by_a_normal_user(
    tmp_path: Path, docker_engine: None, services: list[str]
) -> None:
    """On a laptop secrets/ belongs to the developer, not root: every image must
    still read its secret with the capabilities it keeps (CI runs as root, so
    hand the files to uid 1000 to see what a developer's machine sees)."""
    slug = f"berth-live-hardened-{uuid.uuid4().hex[:6]}"
    root = render(tmp_path / slug, project_slug=slug, services=services,
                  **free_port_answers())  # fmt: skip
    with removed_afterwards(Project(root)) as project:
        project.prepare()
        if os.geteuid() == 0:
            for path in [project.secrets_dir, *project.secrets_dir.rglob("*")]:
                os.chown(path, 1000, 1000)
        run_in(root, "invoke", "up")
        client = docker.from_env()
        for c in project.containers():
            attrs = client.containers.get(c.id).attrs
            host = attrs["HostConfig"]
            assert host["CapDrop"] == ["ALL"], c.service
            assert "no-new-privileges:true" in host["SecurityOpt"], c.service
            assert host["PidsLimit"] and host["PidsLimit"] > 0, c.service
            assert not host["Privileged"], c.service
        attrs = {c.service: client.containers.get(c.id).attrs for c in project.containers()}
        readonly = {name for name, a in attrs.items() if a["HostConfig"]["ReadonlyRootfs"]}
        assert readonly == {"valkey", "redis", "pgbouncer"} & set(services)
        # The services' own tests against this stack prove each can use its secret.
        run_in(root, "pytest", "-q", "services")
