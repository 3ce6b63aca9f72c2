"""PostgreSQL as berth sees it: one password secret, one connection string,
and password rotation with ALTER ROLE (no restart)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from berth import pg, scram
from berth.rotate import Rotation, endpoint, expect_refused
from berth.service import Endpoints, Port, SecretLookup, Service


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
    project.compose.run(
        "exec", "-T", "postgres", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
        "-v", f"verifier={scram.verifier(rotation.new)}",
        "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
        input=ALTER_SCRIPT, what="storing the new password in PostgreSQL",
    )  # fmt: skip
    at = endpoint(project, "postgres", "main")

    def login(password: str) -> None:
        pg.login(at, env, password, "PostgreSQL")

    login(rotation.new)
    notes = rotation.store()
    expect_refused(login, rotation.old, "PostgreSQL")
    return [*notes, "PostgreSQL: role password changed (open sessions keep working)"]


SERVICE = Service(
    name="postgres",
    ports=(Port("main", 5432, "POSTGRES_PORT"),),
    secrets=("postgres_password",),
    derived=verifier_file,
    urls=urls,
    rotate=rotate,
)
