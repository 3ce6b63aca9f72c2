"""ClickHouse backup hook: schema + data export over the HTTP interface.

For every user database: each table's `SHOW CREATE TABLE` and its rows as
`SELECT * ... FORMAT Native`, streamed from the server into the bundle file.
(ClickHouse's own `BACKUP ... TO File(...)` needs a `backups` section in the
server config and a recent server; this export works on every version.)
`wait_end_of_query=1` makes the server finish the query before it answers,
so an error is an HTTP error instead of text appended to a half-sent body.

A restore creates the tables in a fresh database `<db>__restore_<ts>`, loads
the rows, and only then renames the current tables into `<db>__old_<ts>` and
the restored ones into `<db>` (one RENAME statement), then drops the old.

Not covered: materialized views (refused with a clear error: their inner
tables and source bindings need care) and tables of engines whose data lives
elsewhere (Distributed, Kafka, URL, ...): those are recreated empty.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from berth.clock import timestamp
from berth.compose import ALL_INTERFACES
from berth.errors import BerthError
from berth.service import Backup, Info

if TYPE_CHECKING:
    import urllib.request

    from berth.project import Project

SERVICE = "clickhouse"
HTTP_PORT = 8123
SYSTEM_DATABASES = ("system", "information_schema", "INFORMATION_SCHEMA")
#: Engines whose rows live in this server (and so are exported).
LOCAL_DATA = re.compile(r"(.*MergeTree|Log|TinyLog|StripeLog|Memory)$")
CHUNK = 1 << 20
TIMEOUT = 3600.0


# ── HTTP ────────────────────────────────────────────────────────────────────
def endpoint(project: Project) -> str:
    for container in project.containers():
        if container.service == SERVICE:
            published = container.host_port(HTTP_PORT)
            if published:
                host = "127.0.0.1" if published[0] in ALL_INTERFACES else published[0]
                return f"http://{host}:{published[1]}/"
    env = project.env_flag
    raise BerthError(
        "ClickHouse's HTTP port is not published in this environment",
        why="berth exports ClickHouse data over HTTP from this machine",
        fix=f"back up an environment that publishes it (dev, test), or `inv up{env}` first",
    )


def request(
    project: Project, sql: str, *, body: IO[bytes] | None = None, size: int = 0
) -> urllib.request.Request:
    # Imported here, like every HTTP import of berth: `inv up` loads this
    # module with the service and should not pay for urllib.request.
    import urllib.request

    params = {"query": sql, "wait_end_of_query": "1"}
    url = endpoint(project) + "?" + urllib.parse.urlencode(params)
    headers = {
        "X-ClickHouse-User": project.values["CLICKHOUSE_USER"],
        "X-ClickHouse-Key": project.secret("clickhouse_password"),
    }
    if body is not None:
        headers["Content-Length"] = str(size)
        headers["Content-Type"] = "application/octet-stream"
    # Data goes in the POST body; a GET is read-only in ClickHouse.
    return urllib.request.Request(url, data=body or b"", headers=headers, method="POST")  # noqa: S310 - http to our own server


def query(project: Project, sql: str) -> str:
    with opened(request(project, sql), sql) as response:
        return response.read().decode()


def rows(project: Project, sql: str) -> list[dict[str, Any]]:
    text = query(project, f"{sql} FORMAT JSONEachRow")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class opened:
    """urlopen with ClickHouse's error text turned into a BerthError."""

    def __init__(self, req: urllib.request.Request, sql: str) -> None:
        self.req, self.sql = req, sql

    def __enter__(self) -> Any:
        import urllib.error
        import urllib.request

        try:
            self.response = urllib.request.urlopen(self.req, timeout=TIMEOUT)  # noqa: S310
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace").strip()
            raise BerthError(
                f"ClickHouse refused `{self.sql[:60]}`", why=text.splitlines()[0] if text else ""
            ) from None
        except OSError as exc:
            raise BerthError("cannot reach ClickHouse over HTTP", why=str(exc)) from None
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()


def ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ── hook ────────────────────────────────────────────────────────────────────
def server(project: Project) -> Info:
    version = query(project, "SELECT version()").strip()
    return {"version": version, "major": int(version.split(".")[0])}


def incompatible(saved: Info, current: Info) -> str:
    if int(current["major"]) < int(saved["major"]):
        return (
            f"it was exported from ClickHouse {saved['version']} and this server is"
            f" {current['version']}; table definitions of newer servers may not load"
        )
    return ""


def databases(project: Project) -> list[str]:
    names = [r["name"] for r in rows(project, "SELECT name FROM system.databases ORDER BY name")]
    return [n for n in names if n not in SYSTEM_DATABASES and not RESTORE_LEFTOVER.match(n)]


RESTORE_LEFTOVER = re.compile(r".+__(restore|old)_\d{8}-\d{6}$")


def tables(project: Project, database: str) -> list[dict[str, Any]]:
    return rows(
        project,
        "SELECT name, engine FROM system.tables WHERE database = "  # noqa: S608 - literal() quotes
        f"{literal(database)} AND NOT startsWith(name, '.inner.') ORDER BY name",
    )


def dump(project: Project, folder: Path) -> Info:
    info = server(project)
    saved = []
    for index, database in enumerate(databases(project)):
        listed = tables(project, database)
        views = [t["name"] for t in listed if t["engine"] == "MaterializedView"]
        if views:
            raise BerthError(
                f"ClickHouse database {database} has materialized views ({', '.join(views)})",
                why="berth's ClickHouse export does not handle them yet",
                fix="back up the other services with --service, and this data with your own tool",
            )
        entries = []
        for number, table in enumerate(listed):
            name = f"{ident(database)}.{ident(table['name'])}"
            ddl = rows(project, f"SHOW CREATE TABLE {name}")[0]["statement"]
            entry = {"name": table["name"], "engine": table["engine"], "ddl": ddl, "data": ""}
            if LOCAL_DATA.match(table["engine"]):
                entry["data"] = f"{index:03d}-{number:04d}.native"
                export(project, name, folder / entry["data"])
            entries.append(entry)
        saved.append({"name": database, "tables": entries})
    return {**info, "databases": saved}


def export(project: Project, table: str, path: Path) -> None:
    sql = f"SELECT * FROM {table} FORMAT Native"  # noqa: S608 - `table` is quoted by ident()
    with opened(request(project, sql), sql) as response, path.open("wb") as out:
        shutil.copyfileobj(response, out, CHUNK)


# ── restore ─────────────────────────────────────────────────────────────────
def restore(project: Project, folder: Path, info: Info) -> list[str]:
    stamp = timestamp()
    loaded = []
    try:
        for database in info["databases"]:
            loaded.append((database, load(project, folder, database, stamp)))
    except BaseException:
        for _database, fresh in loaded:
            query(project, f"DROP DATABASE IF EXISTS {ident(fresh)}")
        raise
    notes = []
    for database, fresh in loaded:
        switch_over(project, database, fresh, stamp)
        notes.append(f"clickhouse: restored database {database['name']}")
    return notes


def load(project: Project, folder: Path, database: Info, stamp: str) -> str:
    fresh = f"{database['name']}__restore_{stamp}"
    query(project, f"CREATE DATABASE {ident(fresh)}")
    try:
        for table in database["tables"]:
            if table["engine"] == "View":
                continue  # created after the switch-over: they name the tables in <db>
            query(project, retarget(table["ddl"], database["name"], fresh))
            if table["data"]:
                path = folder / table["data"]
                target = f"{ident(fresh)}.{ident(table['name'])}"
                with path.open("rb") as body:
                    sql = f"INSERT INTO {target} FORMAT Native"
                    req = request(project, sql, body=body, size=path.stat().st_size)
                    with opened(req, sql) as response:
                        response.read()
    except BaseException:
        query(project, f"DROP DATABASE IF EXISTS {ident(fresh)}")
        raise
    return fresh


def retarget(ddl: str, database: str, fresh: str) -> str:
    """`CREATE TABLE db.t ...` -> `CREATE TABLE fresh.t ...` (only the created name)."""
    for spelled in (ident(database), database):
        for kind in ("CREATE TABLE ", "CREATE VIEW ", "CREATE TEMPORARY TABLE "):
            head = f"{kind}{spelled}."
            if ddl.startswith(head):
                return f"{kind}{ident(fresh)}." + ddl[len(head) :]
    raise BerthError(
        f"cannot read the saved definition of a table in {database}", why=ddl.split("(")[0][:80]
    )


def switch_over(project: Project, database: Info, fresh: str, stamp: str) -> None:
    """Move the current tables aside and the restored ones in, in one RENAME each;
    then create the saved views, which select from the tables now in place."""
    name = database["name"]
    old = f"{name}__old_{stamp}"
    exists = name in [
        r["name"] for r in rows(project, "SELECT name FROM system.databases ORDER BY name")
    ]
    current = [t["name"] for t in tables(project, name)] if exists else []
    if not exists:
        query(project, f"CREATE DATABASE {ident(name)}")
    if current:
        query(project, f"CREATE DATABASE {ident(old)}")
        query(project, "RENAME TABLE " + ", ".join(moves(name, old, current)))
    restored = [t["name"] for t in database["tables"] if t["engine"] != "View"]
    if restored:
        try:
            query(project, "RENAME TABLE " + ", ".join(moves(fresh, name, restored)))
        except BerthError:
            if current:
                query(project, "RENAME TABLE " + ", ".join(moves(old, name, current)))
            raise
    for view in (t for t in database["tables"] if t["engine"] == "View"):
        query(project, view["ddl"])
    if current:
        query(project, f"DROP DATABASE {ident(old)}")
    query(project, f"DROP DATABASE {ident(fresh)}")


def moves(source: str, target: str, names: list[str]) -> Iterator[str]:
    for table in names:
        yield f"{ident(source)}.{ident(table)} TO {ident(target)}.{ident(table)}"


HOOK = Backup(server=server, dump=dump, incompatible=incompatible, restore=restore)
