"""`inv doctor` and the errors of `inv up` before anything starts.

These run against rendered projects without starting a stack (fast): the
engine is asked, nothing is created but a container that is never started.
Each failure must say what failed, why, and the command to run next (exit 1).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import pytest

from berth import doctor, scram, secrets
from berth.project import Project
from harness import free_port_answers, pinned_images, render, tool_env


@pytest.fixture
def project(tmp_path: Path) -> Project:
    slug = f"berth-doctor-{uuid.uuid4().hex[:6]}"
    root = render(tmp_path / slug, project_slug=slug, services=["postgres", "pgbouncer", "valkey"],
                  **free_port_answers())  # fmt: skip
    project = Project(root)
    project.prepare()
    return project


def inv(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root, env={**tool_env(), **(env or {})}, capture_output=True, text=True, check=False,
    )  # fmt: skip


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def by_check(found: list[doctor.Finding], check: str) -> list[doctor.Finding]:
    return [f for f in found if f.check == check]


def test_doctor_passes_on_a_prepared_project(project: Project, docker_engine: None) -> None:
    result = inv(project.root, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["STATUS", "CHECK", "DETAIL", "FIX"]
    checks = {row.split()[1]: row.split()[0] for row in rows}
    for name in ("engine", "compose", ".env", "secrets", "disk", "ports", "volumes"):
        assert checks.get(name) == "OK", (name, result.stdout)
    # Hash-only files are readable by the containers' service users by design.
    for name in ("valkey_users.acl", "pgbouncer_userlist.txt"):
        assert stat.S_IMODE((project.secrets_dir / name).stat().st_mode) == 0o644


def test_doctor_on_a_fresh_copy_says_what_inv_up_will_create(tmp_path: Path) -> None:
    root = render(tmp_path / "fresh", services=["valkey"])
    found = doctor.env_file(Project(root)) + doctor.secret_files(Project(root))
    assert [(f.level, f.detail) for f in found] == [
        ("WARN", ".env does not exist yet"),
        ("WARN", "secrets/ is mode 0755"),
        ("WARN", "secrets/valkey_password does not exist yet"),
        ("WARN", "secrets/valkey_admin_password does not exist yet"),
    ]


@pytest.mark.parametrize(
    ("line", "detail", "fix"),
    [
        ("API_KEY=pa$word", ".env:{n}: API_KEY contains '$'", "API_KEY='...'"),
        ("NOT A SETTING", ".env:{n}: malformed line 'NOT A SETTING'", "write KEY=value"),
        ("QUOTED='open", ".env:{n}: QUOTED has no closing single quote", "add the closing '"),
        ("POSTGRES_PORT=80", ".env: POSTGRES_PORT='80' is not a port", "set POSTGRES_PORT to"),
    ],
)
def test_doctor_points_at_the_env_line(project: Project, line: str, detail: str, fix: str) -> None:
    text = project.env_path.read_text() + line + "\n"
    project.env_path.write_text(text)
    [finding] = doctor.env_file(project)
    assert finding.level == "ERROR"
    assert finding.detail.startswith(detail.format(n=text.count("\n")))
    assert fix in finding.fix


def test_doctor_names_missing_env_keys(project: Project) -> None:
    lines = project.env_path.read_text().splitlines()
    project.env_path.write_text("\n".join(x for x in lines if not x.startswith("POSTGRES_DB=")))
    [finding] = doctor.env_file(project)
    assert (finding.level, finding.detail) == ("ERROR", ".env lacks POSTGRES_DB")
    assert "copy those lines from .env.example" in finding.fix


def test_doctor_refuses_readable_and_unusable_secrets(project: Project) -> None:
    folder = project.secrets_dir
    os.chmod(folder / "valkey_password", 0o644)
    os.chmod(folder / "postgres_password.scram", 0o640)
    (folder / "valkey_admin_password").write_text("two\nlines")
    os.chmod(folder / "valkey_admin_password", 0o600)
    details = {(f.level, f.detail, f.fix) for f in doctor.secret_files(project)}
    assert details == {
        ("ERROR", "secrets/valkey_password is readable by others (mode 0644)",
         "chmod 600 secrets/valkey_password"),
        ("ERROR", "secrets/postgres_password.scram is readable by others (mode 0640)",
         "chmod 600 secrets/postgres_password.scram"),
        ("ERROR", "secrets/valkey_admin_password contains control characters (U+000A), which"
         " config files, health checks and URLs cannot carry",
         "write the password on one line (quotes, $, #, spaces, unicode are fine), or delete"
         " secrets/valkey_admin_password and run `inv secrets`"),
    }  # fmt: skip


def test_up_refuses_a_world_readable_secret_before_starting(
    project: Project, docker_engine: None
) -> None:
    os.chmod(project.secrets_dir / "postgres_password", 0o644)
    result = inv(project.root, "up")
    assert result.returncode == 1
    assert last_line(result) == (
        "error: secrets/postgres_password is readable by others (mode 0644)"
        " (fix: chmod 600 secrets/postgres_password)"
    )
    assert project.containers() == [], "nothing was started"


def test_doctor_exits_1_with_the_first_problem(project: Project, docker_engine: None) -> None:
    os.chmod(project.secrets_dir / "valkey_password", 0o604)
    result = inv(project.root, "doctor")
    assert result.returncode == 1
    assert "ERROR   secrets  secrets/valkey_password is readable by others" in result.stdout
    assert last_line(result) == (
        "error: doctor found 1 problem: secrets/valkey_password is readable by others"
        " (mode 0604) (fix: chmod 600 secrets/valkey_password)"
    )


def test_daemon_down_is_named_with_the_fix(project: Project, compose_cli: None) -> None:
    """Never stop the shared daemon: point DOCKER_HOST at a socket nobody serves."""
    down = {"DOCKER_HOST": "unix:///tmp/nonexistent.sock"}
    expected = (
        "the Docker engine is not reachable: cannot talk to /tmp/nonexistent.sock"
        " (No such file or directory) (fix: DOCKER_HOST is unix:///tmp/nonexistent.sock:"
        " start that engine or unset DOCKER_HOST)"
    )
    up = inv(project.root, "up", env=down)
    assert up.returncode == 1
    assert last_line(up) == f"error: {expected}"
    checked = inv(project.root, "doctor", env=down)
    assert checked.returncode == 1
    assert "ERROR   engine   the Docker engine is not reachable" in checked.stdout
    assert last_line(checked).startswith("error: doctor found 1 problem: the Docker engine")


def test_remote_engine_down_is_named_via_the_cli(
    tmp_path: Path, compose_cli: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tcp:// engine is not a local socket: berth asks the CLI, which fails."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    project = Project(render(tmp_path / "p", services=["valkey"]))
    [finding] = list(doctor.Engine.ask(project).findings())
    assert finding.level == "ERROR"
    assert finding.detail.startswith("the Docker engine is not reachable: ")
    assert "tcp://127.0.0.1:1" in finding.detail
    assert "docker info" in finding.fix


@pytest.fixture
def docker_without_compose(tmp_path: Path) -> dict[str, str]:
    """A `docker` that has no compose plugin: it answers `compose` with the
    error the real CLI gives for a missing plugin (docker 26:
    `docker: unknown command: docker compose`); everything else goes to the
    real docker. Plugins live in system folders, so hiding them is not reliable."""
    real = shutil.which("docker")
    assert real
    shim = tmp_path / "shim"
    shim.mkdir()
    script = shim / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then\n'
        "  echo 'docker: unknown command: docker compose' >&2\n"
        "  echo '' >&2\n"
        "  echo \"Run 'docker --help' for more information\" >&2\n"
        "  exit 1\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    env = tool_env()
    return {"PATH": f"{shim}{os.pathsep}{env['PATH']}"}


def test_compose_missing_is_named_with_the_fix(
    project: Project, docker_engine: None, docker_without_compose: dict[str, str]
) -> None:
    up = inv(project.root, "up", env=docker_without_compose)
    assert up.returncode == 1
    assert last_line(up) == (
        "error: Docker Compose v2 is not installed: docker: unknown command: docker compose"
        " (fix: install the docker-compose-plugin package"
        " (docs.docker.com/compose/install/linux), then check `docker compose version`)"
    )
    assert project.containers() == []
    checked = inv(project.root, "doctor", env=docker_without_compose)
    assert checked.returncode == 1
    assert "ERROR   compose  Docker Compose v2 is not installed" in checked.stdout


def test_project_name_used_from_another_directory(
    project: Project, tmp_path: Path, docker_engine: None
) -> None:
    """A checkout elsewhere with the same COMPOSE_PROJECT_NAME would share volumes."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    client = docker.from_env()
    image = dict(pinned_images())["valkey"]  # any local image; this one has a command

    def squatter(working_dir: Path) -> docker.models.containers.Container:
        labels = {
            "com.docker.compose.project": project.name,
            "com.docker.compose.project.working_dir": str(working_dir),
            "com.docker.compose.service": "postgres",
        }
        return client.containers.create(image, labels=labels, name=f"{project.name}-squatter")

    container = squatter(elsewhere)  # created, never started
    try:
        [finding] = doctor.volume_owners(project)
        assert finding.level == "ERROR"
        assert (
            finding.detail == f"project name {project.name} (its volumes) is in use by {elsewhere}"
        )
        assert f"`cd {elsewhere} && inv down`" in finding.fix
        result = inv(project.root, "up")
        assert result.returncode == 1
        assert f"is in use by {elsewhere}" in last_line(result)
    finally:
        container.remove(force=True, v=True)  # v: its anonymous volume too
    container = squatter(tmp_path / "moved-away")
    try:
        [finding] = doctor.volume_owners(project)
        assert finding.level == "WARN", "a project moved to this directory is not an error"
        assert "if this project moved here, nothing to do" in finding.fix
    finally:
        container.remove(force=True, v=True)  # v: its anonymous volume too
    [finding] = doctor.volume_owners(project)
    assert finding.level == "OK"


def test_saslprep_matches_what_libpq_sends() -> None:
    # NFKC, non-ASCII space to space, soft hyphen dropped: the password libpq hashes.
    assert scram.saslprep("\ufb01le\u00a0x\u00ady") == "file xy"
    assert scram.verifier("\ufb01le") == scram.verifier("file")
    assert scram.saslprep("plain $ # ' \" ascii") == "plain $ # ' \" ascii"
    assert scram.saslprep("a\u0007b\u00e9") == "a\u0007b\u00e9", "prohibited: used as-is"


def test_hand_written_secret_loses_its_final_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("my pass\n")
    assert secrets.read(tmp_path, "pw") == "my pass"


def test_clickhouse_password_must_be_ascii(tmp_path: Path) -> None:
    project = Project(render(tmp_path / "p", services=["clickhouse"]))
    project.prepare()
    (project.secrets_dir / "clickhouse_password").write_text("caf\u00e9 ok $ # '\"")
    [finding] = doctor.secret_files(project)
    assert finding.level == "ERROR"
    assert finding.detail.startswith("secrets/clickhouse_password has non-ASCII characters: ")
    assert "Basic auth header" in finding.detail
    (project.secrets_dir / "clickhouse_password").write_text("cafe ok $ # '\"")
    assert [f.level for f in doctor.secret_files(project)] == ["OK"]


@pytest.mark.parametrize(
    ("version", "info", "expected"),
    [
        (
            {"Version": "26.1.5"},
            {"SecurityOptions": ["name=seccomp,profile=builtin"]},
            [("OK", "engine", "Docker Engine 26.1.5")],
        ),
        ({"Version": "24.0.7"}, {}, [("ERROR", "engine", "Docker Engine 24.0.7 is too old")]),
        (
            {"Version": "27.3.1"},
            {"SecurityOptions": ["name=seccomp", "name=rootless"]},
            [
                ("OK", "engine", "Docker Engine 27.3.1"),
                (
                    "OK",
                    "rootless",
                    "rootless Docker: root in a container is your own user; berth"
                    " publishes only ports >= 1024, which rootless allows",
                ),
            ],
        ),
        # Podman's Docker-compatible API: its own version numbers, not "too old".
        (
            {"Version": "5.2.2", "Components": [{"Name": "Podman Engine", "Version": "5.2.2"}]},
            {},
            [("WARN", "engine", "Podman 5.2.2 answers the Docker API, not Docker Engine")],
        ),
    ],
    ids=["docker", "too-old", "rootless", "podman"],
)
def test_engine_kinds(version: dict, info: dict, expected: list[tuple[str, str, str]]) -> None:
    found = list(doctor.Engine(version, info).findings())
    assert [(f.level, f.check, f.detail) for f in found] == expected
    assert all(f.fix for f in found if f.level != "OK")


def test_doctor_names_the_port_holder_and_a_free_port(project: Project) -> None:
    port = project.host_port(project.service("valkey").ports[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        [finding] = doctor.ports(project, [])
    assert finding.level == "ERROR"
    assert finding.detail == (
        f"port {port} (VALKEY_PORT) on 127.0.0.1 is taken by process"
        f" {Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"
    )
    assert finding.fix.startswith("stop it, or set VALKEY_PORT=")
    suggested = int(finding.fix.rsplit("=", 1)[1].split()[0])
    assert suggested != port and doctor.checks.port_in_use("127.0.0.1", suggested) is None


def test_doctor_warns_when_disk_is_low(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "DISK_WARN_BYTES", 1 << 62)
    found = doctor.disk_space(project, {"DockerRootDir": "/"})
    assert [(f.level, f.detail.split(" GiB free for ")[1]) for f in found] == [
        ("WARN", f"backups ({project.root})"),
        ("WARN", "volumes (/)"),
    ]
    assert "docker system df" in found[0].fix
