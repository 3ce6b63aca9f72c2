"""PgBouncer as berth sees it: a SCRAM auth file derived from the PostgreSQL
password, the role's stored verifier kept identical, and the pooled URL.

PgBouncer can log in to PostgreSQL with the SCRAM keys of the client's own
login only when both hold the same SCRAM verifier (same salt and iterations).
berth derives that verifier deterministically from secrets/postgres_password
(berth.scram) and writes it to the auth file (no plaintext, so the uid-70
pgbouncer process may read it). A new PostgreSQL volume gets the same verifier
at initdb; for older volumes `inv up` stores it once (then a stamp in .berth/
saves the `compose exec` on later runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from berth import engine, pg, scram
from berth.rotate import Rotation, endpoint, expect_refused, recreate, running
from berth.service import Endpoints, Port, SecretLookup, Service

if TYPE_CHECKING:
    from berth.project import Project


def userlist(env: Mapping[str, str], secret: SecretLookup) -> dict[str, tuple[str, int]]:
    user = env["POSTGRES_USER"].replace('"', '""')
    line = f'"{user}" "{scram.verifier(secret("postgres_password"))}"\n'
    return {"pgbouncer_userlist.txt": (line, 0o644)}


#: Stores the verifier only when it differs; psql quotes :'verifier' itself.
SYNC_SCRIPT = r"""
SELECT rolpassword = :'verifier' AS same FROM pg_authid WHERE rolname = current_user \gset
\if :same
\else
SELECT format('ALTER ROLE %I PASSWORD %L', current_user, :'verifier') \gexec
\echo changed
\endif
"""


def sync_role(project: Project) -> list[str]:
    """Make the role's stored verifier the one in the auth file (idempotent)."""
    verifier = scram.verifier(project.secret("postgres_password"))
    created = _volume_created(project)
    stamp = project.root / ".berth" / f"{project.name}.pgbouncer-role"
    key = hashlib.sha256(f"{verifier} {created}".encode()).hexdigest()
    if created and stamp.exists() and stamp.read_text() == key:
        return []
    if created and project.up_started and engine.timestamp(created) >= project.up_started - 1:
        # Created by this `inv up`: initdb stored the verifier from
        # secrets/postgres_password.scram, so there is nothing to sync.
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(key)
        return []
    env = project.values
    out = project.compose.run(
        "exec", "-T", "postgres", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
        "-v", f"verifier={verifier}", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
        input=SYNC_SCRIPT, what="syncing PgBouncer's SCRAM verifier into PostgreSQL",
    ).stdout  # fmt: skip
    if created:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(key)
    if "changed" not in out.split():
        return []
    return ["PostgreSQL role password stored as PgBouncer's SCRAM verifier (same password)"]


def follow_rotation(rotation: Rotation) -> list[str]:
    """After postgres_password changed: re-read the auth file and prove the pooled login.

    PgBouncer reads its auth file at start, and the running container still
    sees the old file (a bind mount of the replaced inode), so it is recreated;
    clients reconnect. Without an admin user there is no RELOAD to send.
    """
    if rotation.name != "postgres_password":
        return []
    project = rotation.project
    if running(project, "pgbouncer") is None:
        return ["PgBouncer is not running; it reads the new auth file when it starts"]
    recreate(project, "pgbouncer")
    at = endpoint(project, "pgbouncer", "main")
    env = project.values

    def login(password: str) -> None:
        pg.login(at, env, password, "PostgreSQL through PgBouncer")

    login(rotation.new)
    expect_refused(login, rotation.old, "PgBouncer")
    # Confirms the role's verifier is the auth file's and renews the stamp, so
    # the next `inv up` skips its check.
    return [*sync_role(project), "PgBouncer: recreated with the new auth file"]


def _volume_created(project: Project) -> str:
    """CreatedAt of the PostgreSQL volume ('' when it cannot be read cheaply)."""
    path = f"/volumes/{project.name}_postgres-data"
    volume = engine.query(lambda sock: engine.get(path, sock), project.environ)
    return str((volume or {}).get("CreatedAt", ""))


def urls(env: Mapping[str, str], secret: SecretLookup, at: Endpoints) -> dict[str, str]:
    user = quote(env["POSTGRES_USER"], safe="")
    password = quote(secret("postgres_password"), safe="*")
    database = quote(env["POSTGRES_DB"], safe="")
    main = at["main"]
    return {"DATABASE_URL": f"postgresql://{user}:{password}@{main.host}:{main.port}/{database}"}


SERVICE = Service(
    name="pgbouncer",
    ports=(Port("main", 5432, "PGBOUNCER_PORT"),),
    derived=userlist,
    urls=urls,
    after_up=sync_role,
    rotate=follow_rotation,
    stateful=False,
)
