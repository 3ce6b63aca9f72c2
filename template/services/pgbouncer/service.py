"""PgBouncer as berth sees it: a SCRAM auth file derived from the PostgreSQL
password, the role's stored verifier kept identical, and the pooled URL.

PgBouncer can log in to PostgreSQL with the SCRAM keys of the client's own
login only when both hold the same SCRAM verifier (same salt and iterations).
berth derives that verifier deterministically from secrets/postgres_password,
writes it to the auth file (no plaintext, so the uid-70 pgbouncer process may
read it) and, after `inv up`, sets the role's password to the same verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from berth.service import Endpoints, Port, SecretLookup, Service

if TYPE_CHECKING:
    from berth.project import Project

ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def scram_verifier(password: str, iterations: int = ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802/7677), salt derived from the password."""
    raw = password.encode()
    salt = hmac.new(raw, b"berth pgbouncer salt", hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def userlist(env: Mapping[str, str], secret: SecretLookup) -> dict[str, tuple[str, int]]:
    user = env["POSTGRES_USER"].replace('"', '""')
    line = f'"{user}" "{scram_verifier(secret("postgres_password"))}"\n'
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
    """Make the role's stored verifier the one in the auth file (idempotent, one exec)."""
    verifier = scram_verifier(project.secret("postgres_password"))
    env = project.values
    out = project.compose.run(
        "exec", "-T", "postgres", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
        "-v", f"verifier={verifier}", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"],
        input=SYNC_SCRIPT, what="syncing PgBouncer's SCRAM verifier into PostgreSQL",
    ).stdout  # fmt: skip
    if "changed" not in out.split():
        return []
    return ["PostgreSQL role password stored as PgBouncer's SCRAM verifier (same password)"]


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
    stateful=False,
)
