"""Unit tests of the rotation orchestration (template/berth/rotate.py), no Docker.

The services here are fakes with a dict standing in for the server's idea of
the password, so the order of events and the rollback can be checked exactly;
tests/test_rotate.py proves the real hooks against real servers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from berth import secrets
from berth.compose import Container
from berth.errors import BerthError
from berth.project import Project
from berth.rotate import Rotation, Unchanged, rotatable, rotate_secret
from berth.service import Port, SecretLookup, Service, load_services

TEMPLATE_SERVICES = Path(__file__).resolve().parent.parent / "template" / "services"


class FakeProject(Project):
    """A project on disk whose services and running containers are given.

    Class attributes, so that the stacks of other environments which the
    rotation looks up (`type(project)(root, env_name=...)`) see the same fakes.
    """

    fake_services: tuple[Service, ...] = ()
    running: dict[str, tuple[str, ...]] = {}  # noqa: RUF012 - replaced per test
    published: bool = True

    @property
    def services(self) -> tuple[Service, ...]:  # type: ignore[override]
        return self.fake_services

    def containers(self) -> list[Container]:
        ports = (("127.0.0.1", 40000, 1234),) if self.published else ()
        names = self.running.get(self.env_name, ())
        return [Container(s, f"x-{s}-1", "running", "healthy", 0, ports) for s in names]


def make_project(
    tmp_path: Path, services: list[Service], running: dict[str, tuple[str, ...]]
) -> FakeProject:
    for name in (".env", ".env.example"):
        (tmp_path / name).write_text("COMPOSE_PROJECT_NAME=fake\n")
    cls = type("Fake", (FakeProject,), {"fake_services": tuple(services), "running": running})
    project = cls(tmp_path, environ={})
    project.prepare()
    return project


class Server:
    """The password a fake service accepts, and a log of what its hooks did."""

    def __init__(self) -> None:
        self.initial = ""
        self.accepts: dict[str, str] = {}  # per environment's stack
        self.log: list[str] = []


def digest_file(env: Mapping[str, str], secret: SecretLookup) -> dict[str, tuple[str, int]]:
    return {"fake.hash": (f"hash of {secret('fake_password')}", 0o644)}


def owner_hook(server: dict[str, Server], fail: Callable[[Rotation], bool] = lambda r: False):
    def hook(rotation: Rotation) -> list[str]:
        if rotation.name != "fake_password":
            return []
        state, env = server["fake"], rotation.project.env_name
        state.log.append(f"{env} {'rollback' if rotation.rollback else 'apply'}")
        now = state.accepts.setdefault(env, state.initial)
        assert now == rotation.old, "the hook sees the value that works now"
        state.accepts[env] = rotation.new
        notes = rotation.store()
        if fail(rotation):
            raise BerthError("fake server refused the new password")
        return [*notes, "fake: changed"]

    return hook


def follower_hook(log: list[str], fail: Callable[[Rotation], bool] = lambda r: False):
    def hook(rotation: Rotation) -> list[str]:
        if rotation.name != "fake_password":
            return []
        env = rotation.project.env_name
        log.append(f"{env} follow {'rollback' if rotation.rollback else 'apply'}")
        if fail(rotation):
            raise BerthError("follower could not reload")
        return ["follower: reloaded"]

    return hook


def setup(
    tmp_path: Path,
    *,
    owner_fails=None,
    follower_fails=None,
    running=("fake", "follower"),
    also_running: dict[str, tuple[str, ...]] | None = None,
):
    server = {"fake": Server()}
    follower_log: list[str] = []
    owner = Service(
        "fake",
        ports=(Port("main", 1234, "FAKE_PORT"),),
        secrets=("fake_password",),
        derived=digest_file,
        rotate=owner_hook(server, owner_fails or (lambda r: False)),
    )
    follower = Service(
        "follower", rotate=follower_hook(follower_log, follower_fails or (lambda r: False))
    )
    other = Service("other", secrets=("not_rotatable",))
    project = make_project(
        tmp_path, [owner, follower, other], {"dev": running, **(also_running or {})}
    )
    server["fake"].initial = project.secret("fake_password")
    return project, server["fake"], follower_log


def test_rotation_changes_server_file_and_derived_file_then_drops_previous(
    tmp_path: Path,
) -> None:
    project, server, follower_log = setup(tmp_path)
    old = project.secret("fake_password")
    notes = rotate_secret(project, "fake_password")
    new = project.secret("fake_password")
    assert new != old and len(new) == len(secrets.generate())
    assert server.accepts == {"dev": new} and server.log == ["dev apply"]
    assert follower_log == ["dev follow apply"], "followers run after the owner"
    assert (tmp_path / "secrets" / "fake.hash").read_text() == f"hash of {new}"
    assert (tmp_path / "secrets" / "fake_password").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "secrets" / ".fake_password.previous").exists()
    assert notes[-2] == "rotated fake_password: the new value works, the old one is refused"
    assert notes[-1] == "give your apps the new value: `inv urls --reveal` prints it"
    assert "follower: reloaded" in notes


def test_a_failing_follower_rolls_everything_back_and_says_the_old_secret_works(
    tmp_path: Path,
) -> None:
    project, server, follower_log = setup(tmp_path, follower_fails=lambda r: not r.rollback)
    old = project.secret("fake_password")
    with pytest.raises(BerthError) as caught:
        rotate_secret(project, "fake_password")
    message = str(caught.value)
    assert message.startswith("rotating fake_password failed; the old secret still works")
    assert "follower could not reload" in message
    assert "`inv secrets --rotate fake_password` again" in message
    assert project.secret("fake_password") == old, "old value back in the file"
    assert (tmp_path / "secrets" / "fake.hash").read_text() == f"hash of {old}"
    assert server.accepts == {"dev": old} and server.log == ["dev apply", "dev rollback"]
    assert follower_log == ["dev follow apply", "dev follow rollback"]
    assert not (tmp_path / "secrets" / ".fake_password.previous").exists()


def test_an_owner_failure_rolls_back_only_what_was_touched(tmp_path: Path) -> None:
    project, server, follower_log = setup(tmp_path, owner_fails=lambda r: not r.rollback)
    old = project.secret("fake_password")
    with pytest.raises(BerthError, match="the old secret still works"):
        rotate_secret(project, "fake_password")
    assert project.secret("fake_password") == old and server.accepts == {"dev": old}
    assert follower_log == [], "the follower never ran, so it is not restarted either"


def test_a_hook_that_changed_nothing_needs_no_rollback(tmp_path: Path) -> None:
    def refuse(rotation: Rotation) -> list[str]:
        raise Unchanged("fake refused the admin login", fix="restart fake")

    calls: list[str] = []
    follower = Service("follower", rotate=lambda r: calls.append(r.name) or [])
    owner = Service("fake", secrets=("fake_password",), rotate=refuse)
    project = make_project(tmp_path, [owner, follower], {"dev": ("fake", "follower")})
    old = project.secret("fake_password")
    with pytest.raises(BerthError) as caught:
        rotate_secret(project, "fake_password")
    assert str(caught.value) == (
        "rotating fake_password failed before anything was changed:"
        " fake refused the admin login (fix: restart fake)"
    )
    assert project.secret("fake_password") == old and calls == []
    assert not (tmp_path / "secrets" / ".fake_password.previous").exists()


def test_a_failed_rollback_keeps_previous_and_says_where_the_old_value_is(
    tmp_path: Path,
) -> None:
    project, _server, _log = setup(tmp_path, follower_fails=lambda r: True)
    old = project.secret("fake_password")
    with pytest.raises(BerthError) as caught:
        rotate_secret(project, "fake_password")
    message = str(caught.value)
    assert "restoring the old value failed too" in message
    assert "secrets/.fake_password.previous" in message
    previous = tmp_path / "secrets" / ".fake_password.previous"
    assert previous.read_text() == old
    assert previous.stat().st_mode & 0o777 == 0o600
    with pytest.raises(BerthError, match="an earlier rotation of fake_password did not finish"):
        rotate_secret(project, "fake_password")


def test_ctrl_c_rolls_back_and_still_exits_as_interrupted(tmp_path: Path) -> None:
    def interrupt(rotation: Rotation) -> bool:
        if not rotation.rollback:
            raise KeyboardInterrupt
        return False

    project, server, follower_log = setup(tmp_path, follower_fails=interrupt)
    old = project.secret("fake_password")
    with pytest.raises(KeyboardInterrupt):
        rotate_secret(project, "fake_password")
    assert project.secret("fake_password") == old and server.accepts == {"dev": old}
    assert follower_log == ["dev follow apply", "dev follow rollback"]


def test_other_running_environments_follow_because_they_share_secrets(
    tmp_path: Path,
) -> None:
    project, server, follower_log = setup(tmp_path, also_running={"test": ("fake", "follower")})
    notes = rotate_secret(project, "fake_password")
    new = project.secret("fake_password")
    assert server.accepts == {"dev": new, "test": new}
    assert follower_log == ["dev follow apply", "test follow apply"]
    assert "test: fake: changed" in notes
    assert notes[-2].endswith("(in fake, fake-test)")


def test_a_failure_in_another_environment_rolls_back_both(tmp_path: Path) -> None:
    def in_test(rotation: Rotation) -> bool:
        return rotation.project.env_name == "test" and not rotation.rollback

    project, server, follower_log = setup(
        tmp_path, follower_fails=in_test, also_running={"test": ("fake", "follower")}
    )
    old = project.secret("fake_password")
    with pytest.raises(BerthError, match="the old secret still works"):
        rotate_secret(project, "fake_password")
    assert project.secret("fake_password") == old
    assert server.accepts == {"dev": old, "test": old}
    assert follower_log == [
        "dev follow apply", "test follow apply", "dev follow rollback", "test follow rollback",
    ]  # fmt: skip


def test_unknown_or_unrotatable_name_lists_the_rotatable_ones(tmp_path: Path) -> None:
    project, _server, _log = setup(tmp_path)
    for name in ("nope", "not_rotatable"):
        with pytest.raises(BerthError) as caught:
            rotate_secret(project, name)
        assert str(caught.value) == (
            f"cannot rotate {name!r}: no service of this project owns a secret by that name"
            " (fix: use one of: fake_password)"
        )


def test_a_stopped_service_is_an_error_naming_inv_up(tmp_path: Path) -> None:
    project, server, _log = setup(tmp_path, running=("follower",))
    old = project.secret("fake_password")
    with pytest.raises(BerthError, match=r"fake is not running in fake.*`inv up`"):
        rotate_secret(project, "fake_password")
    assert project.secret("fake_password") == old and server.log == []
    assert not (tmp_path / "secrets" / ".fake_password.previous").exists()


def test_unpublished_ports_are_refused_before_anything_changes(tmp_path: Path) -> None:
    """The prod overlay publishes nothing: rotation cannot prove a password there."""
    project, server, _log = setup(tmp_path)
    project.published = False
    old = project.secret("fake_password")
    with pytest.raises(BerthError, match="fake publishes no port on this host"):
        rotate_secret(project, "fake_password")
    assert project.secret("fake_password") == old and server.log == []


def test_every_template_password_is_rotatable() -> None:
    services = load_services(TEMPLATE_SERVICES)
    names = sorted(name for s in services if s.rotate for name in s.secrets)
    assert names == [
        "clickhouse_password", "postgres_password", "redis_admin_password", "redis_password",
        "valkey_admin_password", "valkey_password",
    ]  # fmt: skip
    assert [s.name for s in services if s.rotate and not s.secrets] == ["pgbouncer"]


def test_rotatable_maps_names_to_owners(tmp_path: Path) -> None:
    project, _server, _log = setup(tmp_path)
    assert {name: s.name for name, s in rotatable(project).items()} == {"fake_password": "fake"}
