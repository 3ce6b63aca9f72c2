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
from collections.abc import Sequence
from dataclasses import dataclass
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
    out = psql(project, "SELECT current_setting('server_version_num');", db=maintenance_db())
    number = int(out.strip())
    return {"version": f"{number // 10000}.{number % 10000}", "major": number // 10000}


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
    databases = json.loads(psql(project, DATABASES_SQL, db=maintenance_db()))
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
@dataclass(frozen=True)
class Swap:
    """One database of the bundle: loaded into `fresh`, then put in place of `name`
    (the current one, if any, moved aside to `old` and dropped)."""

    database: Info
    fresh: str
    old: str

    @property
    def name(self) -> str:
        return str(self.database["name"])


def restore(project: Project, folder: Path, info: Info) -> list[str]:
    """Load every dump into a fresh database, then switch all of them over.

    Each `docker compose exec` costs ~0.15 s, so the work is done in as few as
    possible: one psql session for the roles and every CREATE DATABASE, one
    pg_restore per database that has anything to restore, one psql session
    for every switch-over and the clean-up.
    """
    stamp = timestamp()
    # pg_restore -j needs seekable files: the payload is copied in once.
    inside = f"/tmp/berth-restore-{stamp}"  # noqa: S108 - a path inside the container
    swaps = [
        Swap(database, fresh=f"{database['name']}__restore_{stamp}",
             old=f"{database['name']}__old_{stamp}")
        for database in info["databases"]
    ]  # fmt: skip
    names = variables(swaps)
    try:
        project.compose.run("cp", str(folder), f"{SERVICE}:{inside}", what="copying the dumps in")
        psql(project, prepare_script(f"{inside}/{info['globals']}", swaps), **names)
        for swap in swaps:
            load(project, f"{inside}/{swap.database['file']}", swap)
        psql(project, switch_script(swaps, inside), db=maintenance_db(swaps),
             timeout=str(TERMINATE_MS), **names)  # fmt: skip
    except BaseException as failure:
        recover(project, swaps, inside, stamp, failure)
        raise
    return [f"postgres: restored database {swap.name}" for swap in swaps]


def recover(
    project: Project, swaps: list[Swap], inside: str, stamp: str, failure: BaseException
) -> None:
    """Undo a failed restore; if even that fails, say where the data is."""
    try:
        psql(project, recover_script(swaps, inside), db=maintenance_db(swaps), **variables(swaps))
    except BerthError as undo:
        raise BerthError(
            "restoring PostgreSQL failed, and putting the current databases back failed too",
            why=f"{failure}; then {undo}",
            fix=f"databases named *__old_{stamp} hold the data from before the restore;"
            " rename them back with ALTER DATABASE … RENAME TO",
        ) from failure


def variables(swaps: list[Swap]) -> dict[str, str]:
    """psql variables name_N, fresh_N, …: psql quotes them where the scripts say :'x' / :"x"."""
    found = {}
    for n, swap in enumerate(swaps):
        db = swap.database
        found |= {f"name_{n}": swap.name, f"fresh_{n}": swap.fresh, f"old_{n}": swap.old,
                  f"owner_{n}": db["owner"], f"enc_{n}": db["encoding"],
                  f"coll_{n}": db["collate"], f"ctype_{n}": db["ctype"]}  # fmt: skip
    return found


def maintenance_db(swaps: Sequence[Swap] = ()) -> str:
    """A database to stay connected to while others are renamed or dropped."""
    return "template1" if any(swap.name == "postgres" for swap in swaps) else "postgres"


def prepare_script(globals_file: str, swaps: list[Swap]) -> str:
    # Roles first: the restored objects name their owners. Existing roles stay
    # as they are, so the "already exists" errors of this part are expected.
    lines = ["\\set ON_ERROR_STOP off", f"\\i {globals_file}", "\\set ON_ERROR_STOP on"]
    lines += [
        f'CREATE DATABASE :"fresh_{n}" WITH TEMPLATE template0 OWNER :"owner_{n}"'
        f" ENCODING :'enc_{n}' LC_COLLATE :'coll_{n}' LC_CTYPE :'ctype_{n}';"
        for n in range(len(swaps))
    ]
    return "\n".join(lines) + "\n"


def load(project: Project, dump_file: str, swap: Swap) -> None:
    """pg_restore one dump (a path in the container) into its fresh database."""
    if swap.database.get("entries") == 0:
        # Nothing in the archive (typically the `postgres` database): the
        # empty fresh database already is its restore.
        return
    project.compose.run(
        "exec", "-T", SERVICE, "pg_restore", "--exit-on-error", f"--jobs={jobs()}",
        "-U", project.values["POSTGRES_USER"], "-d", swap.fresh, dump_file,
        what=f"restoring PostgreSQL database {swap.name} into {swap.fresh}",
        fix="the current database is unchanged; see the error above",
    )  # fmt: skip


def jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


#: Per database: no new connections to the current one, end the open ones
#: (PgBouncer reconnects to the new one), move it aside, move the restored
#: one in. Any error stops the script; RECOVER then undoes it.
SWITCH = r"""
SELECT EXISTS (SELECT FROM pg_database WHERE datname = :'name_{n}') AS had_{n} \gset
\if :had_{n}
ALTER DATABASE :"name_{n}" WITH ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid, :timeout)) FROM pg_stat_activity
 WHERE datname = :'name_{n}' AND pid <> pg_backend_pid();
ALTER DATABASE :"name_{n}" RENAME TO :"old_{n}";
\endif
ALTER DATABASE :"fresh_{n}" RENAME TO :"name_{n}";
"""
#: Only once every database is in place are the old ones dropped.
DROP_OLD = r"""
\if :had_{n}
DROP DATABASE :"old_{n}" WITH (FORCE);
\endif
"""
#: Puts the current database back where a switch-over moved it, and drops
#: whatever the restore created. Safe to run in any state the others leave.
RECOVER = r"""
SELECT EXISTS (SELECT FROM pg_database WHERE datname = :'old_{n}') AS back_{n},
       EXISTS (SELECT FROM pg_database WHERE datname = :'name_{n}') AS taken_{n} \gset
\if :back_{n}
\if :taken_{n}
ALTER DATABASE :"name_{n}" RENAME TO :"fresh_{n}";
\endif
ALTER DATABASE :"old_{n}" RENAME TO :"name_{n}";
ALTER DATABASE :"name_{n}" WITH ALLOW_CONNECTIONS true;
\endif
DROP DATABASE IF EXISTS :"fresh_{n}" WITH (FORCE);
"""


def remove(inside: str) -> str:
    # Removing the copied dumps from the same psql session saves an exec;
    # psql does not interpolate \! lines, and `inside` is our own plain path.
    return f"\\! rm -rf {inside}\n"


def switch_script(swaps: list[Swap], inside: str) -> str:
    numbers = range(len(swaps))
    return (
        remove(inside)
        + "".join(SWITCH.format(n=n) for n in numbers)
        + "".join(DROP_OLD.format(n=n) for n in numbers)
    )


def recover_script(swaps: list[Swap], inside: str) -> str:
    recover = "".join(RECOVER.format(n=n) for n in reversed(range(len(swaps))))
    return remove(inside) + recover


HOOK = Backup(server=server, dump=dump, incompatible=incompatible, restore=restore)
