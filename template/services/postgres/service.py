"""PostgreSQL as berth sees it: one password secret, one connection string,
and password rotation with ALTER ROLE (no restart)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from berth import engine, pg, scram
from berth.errors import BerthError
from berth.project import ENVIRONMENTS, Project
from berth.rotate import Rotation, Unchanged, endpoint, expect_refused, running
from berth.service import Endpoints, Port, SecretLookup, Service, load_module


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoints) -> dict[str, str]:
    user = quote(env["POSTGRES_USER"], safe="")
    password = quote(secret("postgres_password"), safe="*")
    database = quote(env["POSTGRES_DB"], safe="")
    main = at["main"]
    # With PgBouncer in the stack, apps get its URL as DATABASE_URL; this one
    # is for what needs a real session (migrations, LISTEN, advisory locks).
    name = "DIRECT_DATABASE_URL" if "PGBOUNCER_PORT" in env else "DATABASE_URL"
    return {name: f"postgresql://{user}:{password}@{main.host}:{main.port}/{database}"}


def verifier_file(env: Mapping[str, str], secret: SecretLookup) -> dict[str, tuple[str, int]]:
    """The container gets the SCRAM verifier, never the plaintext password:
    PostgreSQL stores a verifier given as the password as-is."""
    return {"postgres_password.scram": (scram.verifier(secret("postgres_password")), 0o600)}


#: Stores a SCRAM verifier as the role's password; psql quotes :'verifier' itself.
ALTER_SCRIPT = r"""
SELECT format('ALTER ROLE %I PASSWORD %L', current_user, :'verifier') \gexec
"""


def rotate(rotation: Rotation) -> list[str]:
    """ALTER ROLE to the new password's verifier, prove it, then store the file.

    psql runs in the container over the local socket, which the upstream
    image trusts, so this works whichever password the role holds right now
    (also when rolling back). Open sessions keep working; the server reads
    POSTGRES_PASSWORD_FILE only at initdb, so it needs no restart.
    """
    if rotation.name != "postgres_password":
        return []
    project = rotation.project
    env = project.values
    at = endpoint(project, "postgres", "main")
    try:
        project.compose.run(
            "exec", "-T", "postgres", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-v", f"verifier={scram.verifier(rotation.new)}",
            "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
            input=ALTER_SCRIPT, what="storing the new password in PostgreSQL",
        )  # fmt: skip
    except BerthError as exc:  # one statement: it failed as a whole
        raise Unchanged(exc.what, why=exc.why, fix=exc.fix, details=exc.details) from exc

    def login(password: str) -> None:
        pg.login(at, env, password, "PostgreSQL")

    login(rotation.new)
    notes = rotation.store()
    expect_refused(login, rotation.old, "PostgreSQL")
    notes.append("PostgreSQL: role password changed (open sessions keep working)")
    return notes if rotation.rollback else notes + stale_volumes(project)


def stale_volumes(project: Project) -> list[str]:
    """Warnings for stopped stacks whose volume still stores the old password.

    PostgreSQL keeps the role's password in its data, unlike the services that
    read secrets/ at every start; rotation can only reach running stacks.
    """
    warnings = []
    for env in ENVIRONMENTS:
        other = Project(project.root, env_name=env, environ=project.environ)
        if env == project.env_name or running(other, "postgres"):
            continue
        path = f"/volumes/{other.name}_postgres-data"
        volume = engine.query(lambda sock, path=path: engine.get(path, sock), project.environ)
        if isinstance(volume, dict) and volume.get("CreatedAt"):
            warnings.append(
                f"warning: the stopped {env} stack's PostgreSQL volume still stores the old"
                f" password; after `inv up --env {env}` run"
                " `inv secrets --rotate postgres_password` again"
            )
    return warnings


SERVICE = Service(
    name="postgres",
    ports=(Port("main", 5432, "POSTGRES_PORT"),),
    secrets=("postgres_password",),
    derived=verifier_file,
    urls=urls,
    rotate=rotate,
    backup=load_module(Path(__file__).with_name("backup.py")).HOOK,
)
