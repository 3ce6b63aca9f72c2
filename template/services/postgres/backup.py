"""PostgreSQL backup hook: `pg_dump -Fc` per database plus the global objects.

Every tool runs inside the postgres container (`compose exec`), so the dump
is written by the server's own major version and no client is needed on the
host; the data streams from the container straight into the bundle file.

Restore never drops first: each database is restored into a fresh database
`<db>__restore_<ts>` and only a complete restore is switched over (old one
renamed `<db>__old_<ts>`, new one renamed `<db>`, old one dropped). A failed
`pg_restore` leaves the current database untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from berth.clock import timestamp
from berth.errors import BerthError
from berth.service import Backup, Info

if TYPE_CHECKING:
    from berth.project import Project

SERVICE = "postgres"
GLOBALS = "globals.sql"
#: Databases an interrupted restore may leave behind; never worth backing up.
RESTORE_LEFTOVER = re.compile(r".+__restore_\d{8}-\d{6}$")
#: Seconds pg_terminate_backend waits for each session to end (PostgreSQL 14+).
TERMINATE_MS = 5000
DATABASES_SQL = """
SELECT coalesce(json_agg(json_build_object(
    'name', datname, 'owner', pg_get_userbyid(datdba),
    'encoding', pg_encoding_to_char(encoding), 'collate', datcollate, 'ctype', datctype)
    ORDER BY datname), '[]')
FROM pg_database
WHERE NOT datistemplate AND datallowconn AND has_database_privilege(datname, 'CONNECT')
"""


def psql(project: Project, sql: str, *, db: str = "postgres", **variables: str) -> str:
    """Run SQL (psql variables :'x' / :"x" quote values) and return its output."""
    args = ["exec", "-T", SERVICE, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-U", project.values["POSTGRES_USER"], "-d", db]  # fmt: skip
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    return project.compose.run(*args, input=sql, what=f"running SQL in PostgreSQL ({db})").stdout


def server(project: Project) -> Info:
    out = psql(project, "SELECT current_setting('server_version_num');", db=maintenance_db(project))
    number = int(out.strip())
    return {"version": f"{number // 10000}.{number % 10000}", "major": number // 10000}


def maintenance_db(project: Project, avoid: str = "") -> str:
    """A database to connect to while another is renamed or dropped."""
    return "template1" if avoid == "postgres" else "postgres"


def incompatible(saved: Info, current: Info) -> str:
    if int(current["major"]) < int(saved["major"]):
        return (
            f"it holds a PostgreSQL {saved['major']} dump and this server is PostgreSQL"
            f" {current['major']}; pg_restore loads dumps of the same or an older major only"
        )
    return ""


# ── dump ────────────────────────────────────────────────────────────────────
def dump(project: Project, folder: Path) -> Info:
    user = project.values["POSTGRES_USER"]
    info = server(project)
    with (folder / GLOBALS).open("wb") as out:
        # Roles (without password hashes: secrets/ holds the password) and tablespaces.
        project.compose.stream(
            "exec", "-T", SERVICE, "pg_dumpall", "--globals-only", "--no-role-passwords",
            "-U", user, stdout=out, what="dumping PostgreSQL roles",
        )  # fmt: skip
    databases = json.loads(psql(project, DATABASES_SQL, db=maintenance_db(project)))
    saved = []
    for index, database in enumerate(databases):
        name = database["name"]
        if RESTORE_LEFTOVER.match(name):
            continue
        file = f"{index:03d}-{safe(name)}.dump"
        with (folder / file).open("wb") as out:
            project.compose.stream(
                "exec", "-T", SERVICE, "pg_dump", "--format=custom", "-U", user, "-d", name,
                stdout=out, what=f"dumping PostgreSQL database {name}",
            )  # fmt: skip
        entries = check_dump(project, folder / file, name)
        saved.append({**database, "file": file, "entries": entries})
    return {**info, "globals": GLOBALS, "databases": saved}


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]


def check_dump(project: Project, path: Path, name: str) -> int:
    """`pg_restore --list` reads the archive's table of contents: a truncated or
    garbled dump fails here, before the bundle is published."""
    with path.open("rb") as handle:
        listing = project.compose.stream(
            "exec", "-T", SERVICE, "pg_restore", "--list",
            stdin=handle, stdout=subprocess.PIPE, what=f"verifying the dump of {name}",
        )  # fmt: skip
    # An empty database lists no entries, only the archive header: still valid.
    return sum(line[:1].isdigit() for line in listing.decode(errors="replace").splitlines())


# ── restore ─────────────────────────────────────────────────────────────────
def restore(project: Project, folder: Path, info: Info) -> list[str]:
    stamp = timestamp()
    # pg_restore -j needs seekable files: the payload is copied in once.
    inside = f"/tmp/berth-restore-{stamp}"  # noqa: S108 - a path inside the container
    project.compose.run("cp", str(folder), f"{SERVICE}:{inside}", what="copying the dumps in")
    restored: list[tuple[Info, str]] = []
    try:
        # Roles first: the restored objects name their owners. Existing roles
        # stay as they are (the "already exists" errors are expected).
        project.compose.run(
            "exec", "-T", SERVICE, "psql", "-X", "-q", "-U", project.values["POSTGRES_USER"],
            "-d", "postgres", "-f", f"{inside}/{info['globals']}",
            what="restoring PostgreSQL roles",
        )  # fmt: skip
        for database in info["databases"]:
            fresh = f"{database['name']}__restore_{stamp}"
            restored.append((database, fresh))
            load(project, f"{inside}/{database['file']}", database, fresh)
    except BaseException:
        for _database, fresh in restored:
            drop(project, fresh)
        raise
    finally:
        project.compose.run("exec", "-T", SERVICE, "rm", "-rf", inside, check=False)
    notes = []
    for database, fresh in restored:
        switch_over(project, fresh, database["name"], stamp)
        notes.append(f"postgres: restored database {database['name']}")
    return notes


def load(project: Project, dump_file: str, database: Info, fresh: str) -> None:
    """Restore one dump (a path in the container) into a new database `fresh`."""
    psql(
        project,
        'CREATE DATABASE :"fresh" WITH TEMPLATE template0 OWNER :"owner" ENCODING :\'enc\' '
        "LC_COLLATE :'coll' LC_CTYPE :'ctype';",
        fresh=fresh, owner=database["owner"], enc=database["encoding"],
        coll=database["collate"], ctype=database["ctype"],
    )  # fmt: skip
    project.compose.run(
        "exec", "-T", SERVICE, "pg_restore", "--exit-on-error", f"--jobs={jobs()}",
        "-U", project.values["POSTGRES_USER"], "-d", fresh, dump_file,
        what=f"restoring PostgreSQL database {database['name']} into {fresh}",
        fix="the current database is unchanged; see the error above",
    )  # fmt: skip


def jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def drop(project: Project, name: str) -> None:
    psql(project, 'DROP DATABASE IF EXISTS :"name" WITH (FORCE);', name=name)


#: One session: no new connections to the current database, end the open ones
#: (PgBouncer reconnects to the new one), move it aside, move the restored one
#: in, drop the old one. Any error stops the script; RECOVER then undoes it.
SWITCH = r"""
SELECT EXISTS (SELECT FROM pg_database WHERE datname = :'name') AS had \gset
\if :had
ALTER DATABASE :"name" WITH ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid, :timeout)) FROM pg_stat_activity
 WHERE datname = :'name' AND pid <> pg_backend_pid();
ALTER DATABASE :"name" RENAME TO :"old";
\endif
ALTER DATABASE :"fresh" RENAME TO :"name";
\if :had
DROP DATABASE :"old" WITH (FORCE);
\endif
"""
RECOVER = r"""
SELECT EXISTS (SELECT FROM pg_database WHERE datname = :'old')
   AND NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') AS back \gset
\if :back
ALTER DATABASE :"old" RENAME TO :"name";
\endif
ALTER DATABASE :"name" WITH ALLOW_CONNECTIONS true;
"""


def switch_over(project: Project, fresh: str, name: str, stamp: str) -> None:
    """Put the restored database in place of the current one, then drop the old."""
    names = {"name": name, "old": f"{name}__old_{stamp}", "fresh": fresh}
    maint = maintenance_db(project, avoid=name)
    try:
        psql(project, SWITCH, db=maint, timeout=str(TERMINATE_MS), **names)
    except BerthError:
        try:
            psql(project, RECOVER, db=maint, **names)
        finally:
            drop(project, fresh)
        raise


HOOK = Backup(server=server, dump=dump, incompatible=incompatible, restore=restore)
