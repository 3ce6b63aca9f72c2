"""Live: `inv backup` / `restore` / `reset` / the project lock on real stacks.

One stack (PostgreSQL 18 + pgvector, Valkey, ClickHouse) serves the module;
a PostgreSQL 17 project is started only for the incompatible-major case. The
data is compared through fingerprints read with real clients: PostgreSQL row
counts + md5 of ordered rows (two databases, a pgvector column), Valkey every
key with type, value and expiry across the purpose databases, ClickHouse
counts + cityHash64 sums over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from test_live import removed_afterwards

from berth import backup, lock
from berth.errors import BerthError, CommandError
from berth.keyvalue_backup import SnapshotBackup
from berth.project import Project
from berth.service import load_module
from harness import free_port_answers, missing_images, render, tool_env

pytestmark = pytest.mark.live

SECOND_DB = "second"


# ── stacks ──────────────────────────────────────────────────────────────────
def render_stack(tmp: Path, label: str, **answers: Any) -> Path:
    slug = f"berth-bk-{label}-{uuid.uuid4().hex[:6]}"
    root = render(tmp / slug, project_slug=slug, **free_port_answers(), **answers)
    missing = missing_images(root)
    if missing:
        pytest.fail(f"images missing locally: {missing}; run `docker pull IMAGE` (CI: provision)")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Path]:
    """A running stack with every stateful service, filled with known data."""
    path = render_stack(
        tmp_path_factory.mktemp("backup"), "all", services=["postgres", "valkey", "clickhouse"]
    )
    with removed_afterwards(Project(path)) as project:
        inv(path, "up")
        fill(project)
        started = time.monotonic()
        inv(path, "backup", "--name", "base")
        TIMINGS.append(f"inv backup of the 3 services {time.monotonic() - started:.1f} s")
        yield path


TIMINGS: list[str] = []


def inv(root: Path, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run `inv ARGS` in the project with stdin not a terminal; output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root, env={**tool_env(), **kwargs.pop("env", {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, check=False, **kwargs,
    )  # fmt: skip
    if check and result.returncode:
        pytest.fail(f"inv {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


# ── clients ─────────────────────────────────────────────────────────────────
def pg(project: Project, db: str = "", port: int = 0) -> psycopg.Connection:
    env = project.values
    return psycopg.connect(
        host="127.0.0.1", port=port or int(env["POSTGRES_PORT"]), user=env["POSTGRES_USER"],
        password=project.secret("postgres_password"), dbname=db or env["POSTGRES_DB"],
        autocommit=True, connect_timeout=5,
    )  # fmt: skip


def valkeys(project: Project, name: str = "valkey") -> dict[str, redis.Redis]:
    env, prefix = project.values, name.upper()
    return {
        purpose: redis.Redis(
            port=int(env[f"{prefix}_PORT"]),
            password=project.secret(f"{name}_password"),
            db=int(env[f"{prefix}_DB_{purpose}"]),
            socket_timeout=5,
        )
        for purpose in ("CACHE", "CHANNELS", "BROKER")
    }


def ch(project: Project, query: str) -> str:
    env = project.values
    req = urllib.request.Request(
        f"http://127.0.0.1:{env['CLICKHOUSE_HTTP_PORT']}/?database={env['CLICKHOUSE_DB']}",
        data=query.encode(),
        headers={
            "X-ClickHouse-User": env["CLICKHOUSE_USER"],
            "X-ClickHouse-Key": project.secret("clickhouse_password"),
        },
    )
    with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - local test server
        return response.read().decode().strip()


# ── data and fingerprints ───────────────────────────────────────────────────
def fill(project: Project) -> None:
    with pg(project) as conn:
        conn.execute(
            "CREATE TABLE items"
            " (id int PRIMARY KEY, name text, embedding vector(3), at timestamptz)"
        )
        conn.execute(
            "INSERT INTO items SELECT g, md5(g::text), ARRAY[g, g * 2, g % 7]::vector,"
            " '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 5000) g"
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SECOND_DB)))
    with pg(project, SECOND_DB) as conn:
        conn.execute("CREATE TABLE notes AS SELECT g AS id, repeat('x', g % 50) AS body"
                     " FROM generate_series(1, 700) g")  # fmt: skip
    for purpose, client in valkeys(project).items():
        for i in range(200):
            client.set(f"{purpose}:s:{i}", f"value-{i}")
        client.hset(f"{purpose}:h", mapping={"a": "1", "b": "2"})
        client.rpush(f"{purpose}:l", *range(20))
        client.sadd(f"{purpose}:set", "x", "y", "z")
        client.zadd(f"{purpose}:z", {"one": 1.0, "two": 2.5})
        client.set(f"{purpose}:ttl", "soon", ex=3600)
    ch(project, "CREATE TABLE events (id UInt64, name String, at DateTime) ENGINE = MergeTree"
                " ORDER BY id")  # fmt: skip
    ch(project, "INSERT INTO events SELECT number, toString(number * 7),"
                " toDateTime(1700000000 + number) FROM system.numbers LIMIT 50000")  # fmt: skip
    ch(project, "CREATE TABLE tags (k String, v Int32) ENGINE = TinyLog")
    ch(project, "INSERT INTO tags VALUES ('a', 1), ('b', 2)")


def mutate(project: Project) -> None:
    with pg(project) as conn:
        conn.execute("DELETE FROM items WHERE id % 3 = 0")
        conn.execute("UPDATE items SET name = 'changed' WHERE id < 10")
    with pg(project, SECOND_DB) as conn:
        conn.execute("DROP TABLE notes")
    with pg(project, "postgres") as conn:
        # Its dump is empty, so restore skips pg_restore: the switch-over
        # to an empty database must still take this table away.
        conn.execute("CREATE TABLE stray AS SELECT 1 AS one")
    clients = valkeys(project)
    clients["CACHE"].flushdb()
    clients["BROKER"].set("BROKER:new", "1")
    clients["CHANNELS"].delete("CHANNELS:h")
    ch(project, "DROP TABLE tags")
    ch(project, "INSERT INTO events VALUES (999999, 'new', now())")


def fingerprint(project: Project) -> dict[str, Any]:
    return {"postgres": pg_print(project), "valkey": valkey_print(project), "ch": ch_print(project)}


def pg_print(project: Project) -> dict[str, Any]:
    found = {}
    for db in (project.values["POSTGRES_DB"], SECOND_DB, "postgres"):
        try:
            conn = pg(project, db)
        except psycopg.OperationalError:
            found[db] = "missing"
            continue
        with conn:
            listed = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            tables = [r[0] for r in conn.execute(listed)]
            for table in tables:
                query = sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(sql.Identifier(table))
                found[f"{db}.{table}"] = conn.execute(query).fetchone()
    return found


def valkey_print(project: Project, name: str = "valkey") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for purpose, client in valkeys(project, name).items():
        for key in sorted(client.scan_iter(count=1000)):
            kind = client.type(key).decode()
            value = {
                "string": client.get,
                "hash": client.hgetall,
                "list": lambda k, c=client: c.lrange(k, 0, -1),
                "set": lambda k, c=client: sorted(c.smembers(k)),
                "zset": lambda k, c=client: c.zrange(k, 0, -1, withscores=True),
            }[kind](key)
            # The absolute expiry in ms (-1: none), as the snapshot stores it: a
            # restore keeps it exactly. (now + PTTL, rounded, flaked at boundaries.)
            expires = client.execute_command("PEXPIRETIME", key)
            found[f"{purpose}/{key.decode()}"] = (kind, repr(value), expires)
    return found


def ch_print(project: Project) -> dict[str, str]:
    tables = ch(project, "SELECT name FROM system.tables WHERE database = currentDatabase()"
                         " ORDER BY name FORMAT CSV")  # fmt: skip
    found = {"tables": tables}
    for table, columns in (("events", "id, name, at"), ("tags", "k, v")):
        if f'"{table}"' in tables:
            query = f"SELECT count(), sum(cityHash64({columns})) FROM {table}"  # noqa: S608
            found[table] = ch(project, query)
    return found


def copied_dumps(project: Project) -> list[str]:
    """What restores left in the postgres container's /tmp (they must clean up)."""
    out = project.compose.run("exec", "-T", "postgres", "ls", "/tmp").stdout  # noqa: S108
    return [name for name in out.split() if name.startswith("berth-restore-")]


def bundle_names(root: Path) -> list[str]:
    return [b.name for b in backup.bundles(Project(root))]


# ── tests ───────────────────────────────────────────────────────────────────
def test_round_trip_restores_every_service_exactly(root: Path, timings: list[str]) -> None:
    project = Project(root)
    original = fingerprint(project)  # as filled, and as backed up in "base"
    assert original["postgres"][f"{project.values['POSTGRES_DB']}.items"][0] == 5000
    assert len(original["valkey"]) == 3 * 205
    assert original["valkey"]["CACHE/CACHE:ttl"][2] > time.time() * 1000, "expiry is compared"
    assert original["ch"]["events"].startswith("50000\t")

    manifest = backup.verify(root / "backups" / "base")
    assert sorted(manifest["services"]) == ["clickhouse", "postgres", "valkey"]
    assert manifest["services"]["postgres"]["info"]["major"] == 18
    assert not list((root / "backups").glob(".*")), "no partial folder left"

    mutate(project)
    changed = fingerprint(project)
    for part in original:
        assert changed[part] != original[part], part

    started = time.monotonic()
    result = inv(root, "restore", "--name", "base", "--yes")
    took_restore = time.monotonic() - started
    assert fingerprint(project) == original
    assert "safety backup of the current data: safety-before-restore-" in result.stdout
    safety = [n for n in bundle_names(root) if n.startswith("safety-before-restore-")]
    assert len(safety) == 1
    timings += [*TIMINGS, f"inv restore of the 3 services {took_restore:.1f} s"]

    # The safety backup holds the mutated state: restoring it brings that back.
    inv(root, "restore", "--name", safety[0], "--yes")
    assert fingerprint(project) == changed
    inv(root, "restore", "--name", "base", "--yes")
    assert fingerprint(project) == original
    assert copied_dumps(project) == []


def test_listing_shows_every_bundle_verified(root: Path) -> None:
    out = inv(root, "backups").stdout
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "AGE", "SERVICES", "SIZE", "VERIFIED"]
    assert any(r.split()[0] == "base" and r.split()[-1] == "yes" for r in rows), out


def damaged_copy(root: Path, name: str, damage: Any) -> str:
    source = root / "backups" / "base"
    copy = root / "backups" / name
    shutil.copytree(source, copy)
    damage(copy)
    return name


def flip_byte(folder: Path) -> None:
    dump = next((folder / "postgres").glob("*.dump"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))


def truncate(folder: Path) -> None:
    rdb = folder / "valkey" / "dump.rdb"
    rdb.write_bytes(rdb.read_bytes()[:-100])


def foreign(folder: Path) -> None:
    (folder / "manifest.json").write_text(json.dumps({"kind": "something-else"}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (flip_byte, "does not match its SHA-256 in the manifest"),
        (truncate, "(truncated?)"),
        (foreign, "is not a berth backup"),
    ],
    ids=["flipped-byte", "truncated", "foreign"],
)
def test_damaged_bundle_is_refused_and_nothing_changes(
    root: Path, damage: Any, message: str
) -> None:
    project = Project(root)
    name = damaged_copy(root, f"damaged-{damage.__name__}", damage)
    before, listed = fingerprint(project), bundle_names(root)
    result = inv(root, "restore", "--name", name, "--yes", check=False)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr
    assert fingerprint(project) == before
    assert bundle_names(root) == listed, "not even a safety backup was taken"
    shutil.rmtree(root / "backups" / name)


def test_a_failing_restore_leaves_the_current_data_in_place(root: Path) -> None:
    """A dump that passes the checksums but breaks halfway through pg_restore (as if
    written truncated by a faulty tool): the current databases stay as they were."""
    project = Project(root)
    folder = root / "backups" / "half-dump"
    shutil.copytree(root / "backups" / "base", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    main = project.values["POSTGRES_DB"]
    entry = next(d for d in manifest["services"]["postgres"]["info"]["databases"]
                 if d["name"] == main)  # fmt: skip
    dump = folder / "postgres" / entry["file"]
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size * 2 // 3])
    manifest["files"] = backup.file_table(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = fingerprint(project)

    result = inv(root, "restore", "--name", "half-dump", "--service", "postgres", "--yes",
                 check=False)  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"restoring PostgreSQL database {main} into {main}__restore_" in last
    assert "the current database is unchanged" in last
    assert fingerprint(project) == before
    with pg(project) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
    assert not [n for n in names if "__restore_" in n or "__old_" in n], names
    assert copied_dumps(project) == []
    shutil.rmtree(folder)


def test_a_switch_over_failing_halfway_puts_every_database_back(root: Path) -> None:
    """All databases are switched in one psql session and the old ones dropped
    only at its end: when the second switch fails (its restored copy vanished),
    the first one, already switched, is put back too and the copies dropped."""
    project = Project(root)
    hook = load_module(root / "services" / "postgres" / "backup.py")
    stamp = "20260101-000000"
    with pg(project) as conn:
        for name, value in (("swap_a", "current a"), ("swap_b", "current b"),
                            (f"swap_a__restore_{stamp}", "restored a")):  # fmt: skip
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with pg(project, name) as db:
                db.execute("CREATE TABLE t AS SELECT %s::text AS v", [value])
    swaps = [
        hook.Swap({"name": name, "owner": project.values["POSTGRES_USER"], "encoding": "UTF8",
                   "collate": "C", "ctype": "C"},
                  fresh=f"{name}__restore_{stamp}", old=f"{name}__old_{stamp}")
        for name in ("swap_a", "swap_b")
    ]  # fmt: skip
    names = hook.variables(swaps)
    try:
        with pytest.raises(CommandError, match="does not exist"):
            hook.psql(project, hook.switch_script(swaps, "/tmp/berth-none"),  # noqa: S108
                      db="postgres", timeout="1000", **names)  # fmt: skip
        with pg(project) as conn:  # a switched over, b moved aside, then the failure
            listed = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        assert {"swap_a", f"swap_a__old_{stamp}", f"swap_b__old_{stamp}"} <= listed
        assert "swap_b" not in listed

        hook.psql(project, hook.recover_script(swaps, "/tmp/berth-none"), **names)  # noqa: S108
        for name in ("swap_a", "swap_b"):
            with pg(project, name) as db:  # connections allowed again
                assert db.execute("SELECT v FROM t").fetchone() == (f"current {name[-1]}",)
        with pg(project) as conn:
            listed = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        assert not {n for n in listed if n.startswith("swap_") and "__" in n}, listed
    finally:
        with pg(project) as conn:
            for name in ("swap_a", "swap_b", f"swap_a__restore_{stamp}", f"swap_a__old_{stamp}"):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(name)))  # fmt: skip


def test_valkey_puts_the_old_files_back_when_the_restored_server_fails_its_check(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback path, driven through berth's own code: the new snapshot is
    installed and Valkey restarted, then the post-start check fails."""
    project = Project(root)
    valkeys(project)["BROKER"].set("BROKER:only-now", "1")
    before = valkey_print(project)
    hook = project.service("valkey").backup
    assert hook is not None

    def failing_check(_self: SnapshotBackup, _project: Project, expected: int) -> None:
        raise BerthError("simulated: the restored server looks wrong")

    assert isinstance(hook.restore.__self__, SnapshotBackup)  # type: ignore[attr-defined]
    monkeypatch.setattr(SnapshotBackup, "check_keys", failing_check)
    plan = backup.plan_restore(project, root / "backups" / "base", ["valkey"])
    with pytest.raises(BerthError, match="simulated"):
        backup.restore(project, plan, safety=False)
    assert valkey_print(project) == before
    left = project.compose.run("exec", "-T", "valkey", "ls", "-A", "/data").stdout.split()
    assert sorted(left) == ["appendonlydir", "dump.rdb"], "no restore leftovers in the volume"
    valkeys(project)["BROKER"].delete("BROKER:only-now")


def test_restore_without_yes_and_no_terminal_refuses_with_the_command(root: Path) -> None:
    result = inv(root, "restore", "--name", "base", "--service", "valkey", check=False)
    assert result.returncode == 1
    assert "run `inv restore --name base --service valkey --yes`" in result.stderr


def test_interrupted_backup_leaves_no_bundle(root: Path) -> None:
    project = Project(root)
    with pg(project) as conn:
        conn.execute("CREATE DATABASE big")
    try:
        with pg(project, "big") as conn:
            # Big enough that pg_dump is still streaming when the signal comes.
            conn.execute("CREATE TABLE filler AS SELECT g, md5(g::text) || md5((g + 1)::text) AS t"
                         " FROM generate_series(1, 2000000) g")  # fmt: skip
        listed = bundle_names(root)
        child = subprocess.Popen(
            [sys.executable, "-m", "invoke", "backup", "--name", "interrupted"],
            cwd=root, env=tool_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not any((root / "backups").glob(".interrupted.partial-*/postgres/*big.dump")):
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the backup never reached the big database"
                time.sleep(0.02)
            child.send_signal(signal.SIGINT)
            _out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == 130, err
        assert "interrupted" in err
        assert bundle_names(root) == listed
        assert not (root / "backups" / "interrupted").exists()
        assert not list((root / "backups").glob(".interrupted*")), "partial folder removed"
    finally:
        with pg(project) as conn:
            conn.execute("DROP DATABASE big WITH (FORCE)")


def test_a_write_failing_mid_dump_leaves_no_bundle(root: Path) -> None:
    """As on a full disk: a file-size limit makes the dump's write fail part-way
    (the limit is inherited by the process that writes the bundle files)."""
    import resource

    listed = bundle_names(root)
    limit = 64 * 1024  # above the roles file, below the main database's dump

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "invoke", "backup", "--name", "no-room"],
        cwd=root, env=tool_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        preexec_fn=small_files, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    # ClickHouse comes first: its export is written by berth itself.
    assert last.startswith("error: writing backup no-room failed: File too large"), last
    assert "free disk space where backups go" in last
    assert bundle_names(root) == listed
    assert not (root / "backups" / "no-room").exists()
    assert not list((root / "backups").glob(".no-room*")), "partial folder removed"


def test_second_task_fails_naming_the_lock_holder(root: Path) -> None:
    with lock.held(root, "test-holder", wait=0):
        result = inv(root, "backup", check=False, env={"BERTH_LOCK_WAIT": "0.5"})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "the project is locked by another task" in last
    assert f"pid {os.getpid()} is running `inv test-holder` since" in last


def test_reset_refuses_a_project_of_the_same_name_in_another_folder(
    root: Path, tmp_path: Path
) -> None:
    """Same COMPOSE_PROJECT_NAME, other folder: its volumes are not ours to delete."""
    twin = tmp_path / "twin"
    shutil.copytree(root, twin, ignore=shutil.ignore_patterns("backups", ".berth"))
    result = inv(twin, "reset", "--yes", "--no-backup", check=False)
    assert result.returncode == 1
    assert f"belongs to {root}" in result.stderr.strip().splitlines()[-1]
    assert Project(root).containers(), "nothing was removed"


def test_reset_confirms_then_leaves_a_safety_backup_that_restores(root: Path) -> None:
    project = Project(root)
    before = fingerprint(project)
    ids = sorted(c.id for c in project.containers())

    refused = inv(root, "reset", "--service", "postgres", check=False)
    assert refused.returncode == 1
    assert "run `inv reset --service postgres --yes`" in refused.stderr
    assert sorted(c.id for c in project.containers()) == ids, "nothing was touched"

    inv(root, "reset", "--yes")
    after = fingerprint(project)
    assert after["postgres"] == {SECOND_DB: "missing"}, "a fresh PostgreSQL volume"
    assert after["valkey"] == {}
    assert after["ch"] == {"tables": ""}
    safety = [n for n in bundle_names(root) if n.startswith("safety-before-reset-")]
    assert len(safety) == 1
    inv(root, "restore", "--name", safety[0], "--yes")
    assert fingerprint(project) == before


def test_reset_of_one_service_leaves_the_others_alone(root: Path) -> None:
    project = Project(root)
    before = fingerprint(project)
    others = sorted(c.id for c in project.containers() if c.service != "valkey")
    result = inv(root, "reset", "--service", "valkey", "--yes")
    assert f"volumes {project.name}_valkey-data" in result.stdout
    after = fingerprint(project)
    assert after["valkey"] == {}
    assert (after["postgres"], after["ch"]) == (before["postgres"], before["ch"])
    assert sorted(c.id for c in project.containers() if c.service != "valkey") == others
    safety = [n for n in bundle_names(root) if n.startswith("safety-before-reset-")][-1]
    assert backup.verify(root / "backups" / safety)["services"].keys() == {"valkey"}
    inv(root, "restore", "--name", safety, "--yes")
    assert fingerprint(project) == before


def test_redis_round_trip_through_the_shared_snapshot_hook(
    tmp_path: Path, docker_engine: None
) -> None:
    """Redis uses Valkey's hook (berth/keyvalue_backup.py) with redis-cli and
    redis-check-rdb: backup, change, restore gives back every key and expiry."""
    path = render_stack(tmp_path, "redis", services=["redis"])
    with removed_afterwards(Project(path)) as project:
        inv(path, "up")
        clients = valkeys(project, "redis")
        for purpose, client in clients.items():
            client.mset({f"{purpose}:k{i}": f"v{i}" for i in range(100)})
            client.hset(f"{purpose}:hash", mapping={"a": "1", "b": "2"})
            client.set(f"{purpose}:expiring", "x", ex=3600)
        original = valkey_print(project, "redis")
        inv(path, "backup", "--name", "base", "--service", "redis")
        for purpose, client in clients.items():
            client.delete(f"{purpose}:k1", f"{purpose}:hash")
            client.set(f"{purpose}:new", "1")
        assert valkey_print(project, "redis") != original
        inv(path, "restore", "--name", "base", "--yes")
        assert valkey_print(project, "redis") == original
        for client in clients.values():
            client.close()


def test_postgres17_refuses_an_18_bundle_and_restores_its_own(root: Path, tmp_path: Path) -> None:
    older = render_stack(tmp_path, "pg17", services=["postgres"], postgres_version=17,
                         pgvector=False)  # fmt: skip
    with removed_afterwards(Project(older)) as project:
        inv(older, "up")
        with pg(project) as conn:
            conn.execute("CREATE TABLE kept AS SELECT 1 AS one")
        before = pg_print(project)
        shutil.copytree(root / "backups" / "base", older / "backups" / "base")
        result = inv(older, "restore", "--name", "base", "--service", "postgres", "--yes",
                     check=False)  # fmt: skip
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert "cannot be restored into this postgres" in last
        assert "PostgreSQL 18 dump and this server is PostgreSQL 17" in last
        assert pg_print(project) == before
        assert bundle_names(older) == ["base"], "no safety backup: nothing was touched"

        # PostgreSQL 17's own bundles do restore (its roles file, its pg_restore).
        inv(older, "backup", "--name", "own")
        with pg(project) as conn:
            conn.execute("DROP TABLE kept")
        inv(older, "restore", "--name", "own", "--yes")
        assert pg_print(project) == before


def test_apps_connected_through_pgbouncer_see_the_restored_data(tmp_path: Path) -> None:
    """The switch-over ends the server sessions of the replaced database; an app's
    open PgBouncer connections (transaction pooling) and new ones then run on
    the restored database without an error."""
    root = render_stack(tmp_path, "pgb", services=["postgres", "pgbouncer"], pgvector=False)
    with removed_afterwards(Project(root)) as project:
        inv(root, "up")
        with pg(project) as conn:
            conn.execute("CREATE TABLE t AS SELECT 1 AS v")
        port = int(project.values["PGBOUNCER_PORT"])
        apps = [pg(project, port=port) for _ in range(4)]
        try:
            for app in apps:  # each holds a server connection in the pool now
                assert app.execute("SELECT count(*) FROM t").fetchone() == (1,)
            inv(root, "backup", "--name", "one-row")
            with pg(project) as conn:
                conn.execute("INSERT INTO t VALUES (2)")
            inv(root, "restore", "--name", "one-row", "--yes")
            for app in apps:
                assert app.execute("SELECT count(*) FROM t").fetchone() == (1,)
            with pg(project, port=port) as app:
                assert app.execute("SELECT count(*) FROM t").fetchone() == (1,)
        finally:
            for app in apps:
                app.close()


def test_prune_is_a_dry_run_unless_yes(root: Path) -> None:
    before = bundle_names(root)
    assert len(before) >= 3
    dry = inv(root, "prune", "--keep", "1")
    assert "dry run; add --yes to delete" in dry.stdout
    assert dry.stdout.count("would delete backups/") == len(before) - 1
    assert bundle_names(root) == before
    inv(root, "prune", "--keep", "1", "--yes")
    assert bundle_names(root) == before[-1:]
