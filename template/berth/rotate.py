"""`inv secrets --rotate NAME`: replace one password in the running stack.

The order keeps a working password at every instant:

1. the current value is kept in memory and in `secrets/.NAME.previous` (0600),
   so even a killed process leaves it on disk;
2. the owning service's `rotate` hook makes the running server accept the new
   value (ALTER ROLE, ACL SETUSER, or a recreate that re-reads the file),
   stores it with `Rotation.store()` (secret file and derived files, each
   written atomically) and proves it with a real client from this host;
3. other services that depend on the secret follow with their own hooks
   (PgBouncer re-reads its auth file);
4. the project's running stacks in other environments (they share secrets/)
   get steps 2-3 too;
5. only then is `.NAME.previous` deleted.

On any failure, or Ctrl-C, the same hooks run again with old and new swapped:
that puts the old value back into the server and the files and proves it
works, and the error says so.

`rotate_secret()` is the one entry point, so a caller can wrap the whole
rotation (e.g. in a project lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from berth import secrets
from berth.compose import ALL_INTERFACES
from berth.errors import BerthError
from berth.project import ENVIRONMENTS, Project
from berth.service import Endpoint, Service

if TYPE_CHECKING:
    from berth.compose import Container

#: Seconds `compose up --wait` may take to bring back a recreated container.
RECREATE_TIMEOUT = 120


class Unchanged(BerthError):
    """Raised by a hook that failed before it changed anything (nothing to undo)."""


@dataclass(frozen=True)
class Rotation:
    """One change of secret `name` from `old` to `new` (swapped for a rollback)."""

    project: Project
    name: str
    old: str
    new: str
    rollback: bool = False

    def store(self) -> list[str]:
        """Write the new value and refresh the files derived from it."""
        project = self.project
        secrets.write_atomic(project.secrets_dir / self.name, self.new)
        return [f"wrote secrets/{name}" for name in [self.name, *project.write_derived()]]

    def reverse(self) -> Rotation:
        return replace(self, old=self.new, new=self.old, rollback=not self.rollback)


def rotatable(project: Project) -> dict[str, Service]:
    """Secret name -> owning service, for services that can rotate in place."""
    return {name: s for s in project.services if s.rotate for name in s.secrets}


#: One hook call: a service of one environment's stack.
Step = tuple[Project, Service]


def rotate_secret(project: Project, name: str) -> list[str]:
    """Rotate secret `name` in the running stack; returns notes for the user.

    Every environment's stack reads the same secrets/ folder, so the other
    running stacks of this project (e.g. dev while you rotate in test) follow
    too; otherwise they would keep the old password while the file holds the
    new one.
    """
    owners = rotatable(project)
    owner = owners.get(name)
    if owner is None:
        raise BerthError(
            f"cannot rotate {name!r}",
            why="no service of this project owns a secret by that name",
            fix=f"use one of: {', '.join(sorted(owners)) or '(none in this project)'}",
        )
    require_running(project, owner.name)
    stacks = [project, *other_stacks(project, owner.name)]
    plan = [(stack, service) for stack in stacks for service in hooks(stack, owner.name)]
    for stack in stacks:
        require_published(stack, hooks(stack, owner.name))
    previous = project.secrets_dir / f".{name}.previous"
    if previous.exists():
        raise BerthError(
            f"an earlier rotation of {name} did not finish",
            why=f"secrets/{previous.name} still holds the value from before it",
            fix=f"if the stack accepts secrets/{name}, delete secrets/{previous.name};"
            f" otherwise move it back over secrets/{name} and run `inv up`",
        )
    rotation = Rotation(project, name, old=project.secret(name), new=secrets.generate())
    secrets.write_atomic(previous, rotation.old)
    touched: list[Step] = []
    try:
        notes = apply(rotation, plan, touched)
    except BaseException as error:  # also Ctrl-C: never leave a half-done rotation
        roll_back(rotation, touched, error)
        raise  # roll_back always raises; this keeps type checkers informed
    previous.unlink()
    done = f"rotated {name}: the new value works, the old one is refused"
    if len(stacks) > 1:
        done += f" (in {', '.join(stack.name for stack in stacks)})"
    return [*notes, done, "give your apps the new value: `inv urls --reveal` prints it"]


def other_stacks(project: Project, service: str) -> list[Project]:
    """This project's stacks in other environments in which `service` runs."""
    others = (
        type(project)(project.root, env_name=env, environ=project.environ)
        for env in ENVIRONMENTS
        if env != project.env_name
    )
    return [other for other in others if running(other, service)]


def hooks(project: Project, owner: str) -> list[Service]:
    """The owner first, then every other service with a hook (followers)."""
    ordered = sorted(project.services, key=lambda s: s.name != owner)  # stable
    return [s for s in ordered if s.rotate]


def apply(rotation: Rotation, plan: list[Step], touched: list[Step]) -> list[str]:
    """Run each step's hook in order; `touched` collects the steps started."""
    notes: list[str] = []
    several = len({stack.name for stack, _service in plan}) > 1
    for stack, service in plan:
        assert service.rotate is not None
        touched.append((stack, service))
        step = replace(rotation, project=stack)
        try:
            done = service.rotate(step)
        except Unchanged:
            touched.pop()
            raise
        if rotation.name in service.secrets and stack.secret(rotation.name) != rotation.new:
            done += step.store()  # the owner needed no particular moment
        notes += [note if not several or warning(note) else f"{stack.env_name}: {note}"
                  for note in done]  # fmt: skip
    return list(dict.fromkeys(notes))  # a warning about a third stack comes once


def warning(note: str) -> bool:
    return note.startswith("warning:")


def roll_back(rotation: Rotation, touched: list[Step], error: BaseException) -> None:
    """Put the old value back in every service touched, then raise an error saying so."""
    name = rotation.name
    previous = rotation.project.secrets_dir / f".{name}.previous"
    details = getattr(error, "details", "")
    if not touched and not isinstance(error, KeyboardInterrupt):
        previous.unlink(missing_ok=True)
        raise BerthError(
            f"rotating {name} failed before anything was changed",
            why=reason(error),
            fix=getattr(error, "fix", "") or f"fix the cause, then rotate {name} again",
            details=details,
        ) from error
    try:
        apply(rotation.reverse(), touched, [])
    except BaseException as second:
        raise BerthError(
            f"rotating {name} failed and restoring the old value failed too",
            why=f"{reason(error)}; then: {reason(second)}",
            fix=f"the old value is in secrets/{previous.name}: move it over secrets/{name},"
            f" run `inv up`, then `inv secrets --rotate {name}` again",
            details=details,
        ) from error
    previous.unlink(missing_ok=True)
    if isinstance(error, KeyboardInterrupt):
        raise error
    raise BerthError(
        f"rotating {name} failed; the old secret still works (restored and verified)",
        why=reason(error),
        fix=f"fix the cause, then run `inv secrets --rotate {name}` again",
        details=details,
    ) from error


def reason(error: BaseException) -> str:
    """What went wrong, in one line (without the error's own fix)."""
    if isinstance(error, BerthError):
        return f"{error.what}: {error.why}" if error.why else error.what
    return str(error) or type(error).__name__


# ── helpers for the services' hooks ─────────────────────────────────────────
def running(project: Project, service: str) -> Container | None:
    for container in project.containers():
        if container.service == service and container.state == "running":
            return container
    return None


def require_running(project: Project, service: str) -> Container:
    container = running(project, service)
    if container is None or container.health not in ("", "healthy"):
        env = project.env_flag
        state = "not running" if container is None else f"{container.health}, not healthy"
        raise BerthError(
            f"{service} is {state} in {project.name}",
            why="a password is rotated inside the running server",
            fix=f"start the stack with `inv up{env}`, then rotate again",
        )
    return container


def endpoint(project: Project, service: str, port_name: str) -> Endpoint:
    """Where this host reaches `service`'s port: new passwords are proven from here."""
    spec = next(p for p in project.service(service).ports if p.name == port_name)
    published = require_running(project, service).host_port(spec.container)
    if published is None:
        raise unpublished(project, service)
    host, port = published
    return Endpoint("127.0.0.1" if host in ALL_INTERFACES else host, port)


def require_published(project: Project, services: list[Service]) -> None:
    """Fail before changing anything when a password could not be proven from here."""
    by_service = {c.service: c for c in project.containers() if c.state == "running"}
    for service in services:
        container = by_service.get(service.name)
        if container and any(container.host_port(p.container) is None for p in service.ports):
            raise unpublished(project, service.name)


def unpublished(project: Project, service: str) -> BerthError:
    return BerthError(
        f"cannot rotate in the {project.env_name} environment:"
        f" {service} publishes no port on this host",
        why="rotation proves the new password with a client on this host before"
        " dropping the old one",
        fix="rotate where the ports are published (dev, test), or publish them in an overlay",
    )


def expect_refused(login: Callable[[str], None], password: str, what: str) -> None:
    """Raise unless `login(password)` raises BerthError: the replaced value must be dead."""
    try:
        login(password)
    except BerthError:
        return
    raise BerthError(f"{what} still accepts the replaced password")


def recreate(project: Project, service: str) -> None:
    """Start `service` anew so it re-reads its files; wait until it is healthy.

    Needed because compose mounts a file secret as a bind mount of the file
    itself: `write_atomic` renames a new file into place, and a running
    container keeps seeing the old one until its mounts are set up again.
    Volumes (the data) are kept; dependencies are left alone.

    Remove, then create (rather than `up --force-recreate`): an interrupted
    recreate can leave the old container renamed beside a new one holding the
    name, which a second `--force-recreate` trips over; `rm` clears both.
    """
    project.compose.run(
        "rm", "--stop", "--force", service,
        what=f"removing the {service} container (its volumes are kept)",
    )  # fmt: skip
    project.compose.run(
        "up", "--detach", "--no-deps",
        "--wait", "--wait-timeout", str(RECREATE_TIMEOUT), service,
        what=f"recreating {service} so it reads the new secret",
        fix=f"`inv logs --service {service}`",
    )  # fmt: skip
