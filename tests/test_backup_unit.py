"""Unit tests of berth.backup (bundles, verification, pruning, confirmation) and berth.lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from berth import backup, lock
from berth.errors import BerthError, CommandError
from berth.service import Backup, Service, load_module
from harness import REPO


def make_bundle(
    folder: Path, files: dict[str, bytes], created: str = "2026-01-02T03:04:05+00:00"
) -> Path:
    """A bundle as backup.create writes it: payload files + a manifest of them."""
    folder.mkdir(parents=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    manifest = {
        "kind": backup.KIND,
        "format": backup.FORMAT,
        "name": folder.name,
        "created_at": created,
        "services": {"postgres": {"image": "postgres:18", "info": {"major": 18}}},
        "files": backup.file_table(folder),
    }
    (folder / backup.MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(
        tmp_path / "b1", {"postgres/app.dump": b"PGDMP" + bytes(range(256)) * 40, "x/y": b"z"}
    )


def test_manifest_lists_size_and_sha256_of_every_payload_file(bundle: Path) -> None:
    manifest = backup.verify(bundle)
    entry = manifest["files"]["postgres/app.dump"]
    assert entry["size"] == 5 + 256 * 40
    assert len(entry["sha256"]) == 64
    assert backup.MANIFEST not in manifest["files"]


def test_a_flipped_byte_fails_verification(bundle: Path) -> None:
    path = bundle / "postgres" / "app.dump"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BerthError, match="does not match its SHA-256"):
        backup.verify(bundle)
    assert backup.inspect(bundle).problem == "", "same size: only the full check sees it"
    project = SimpleNamespace(root=bundle.parent)
    (project.root / "backups").mkdir()
    bundle.rename(project.root / "backups" / "b1")
    assert backup.bundles(project)[0].problem == ""  # type: ignore[arg-type]
    problem = backup.bundles(project, checksums=True)[0].problem  # type: ignore[arg-type]
    assert "does not match its SHA-256" in problem


def test_a_truncated_file_fails_verification_and_listing(bundle: Path) -> None:
    path = bundle / "postgres" / "app.dump"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(BerthError, match=r"truncated\?"):
        backup.verify(bundle)
    assert "bytes, the manifest says" in backup.inspect(bundle).problem


def test_missing_and_extra_files_fail_verification(bundle: Path) -> None:
    (bundle / "x" / "extra").write_bytes(b"")
    with pytest.raises(BerthError, match="x/extra is not in its manifest"):
        backup.verify(bundle)
    (bundle / "x" / "extra").unlink()
    (bundle / "x" / "y").unlink()
    with pytest.raises(BerthError, match="x/y is missing"):
        backup.verify(bundle)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "has no manifest.json"),
        ("{not json", "not valid JSON"),
        ('{"kind": "other"}', "manifest.json is foreign"),
        (json.dumps({"kind": backup.KIND, "format": 99}), "has backup format 99"),
        (json.dumps({"kind": backup.KIND, "format": backup.FORMAT}), "files/services missing"),
    ],
)
def test_manifest_problems_are_one_clear_error(
    tmp_path: Path, manifest: str | None, message: str
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    if manifest is not None:
        (folder / backup.MANIFEST).write_text(manifest)
    with pytest.raises(BerthError, match=message):
        backup.verify(folder)
    assert backup.inspect(folder).problem, "listed as not verified"


def bundle_at(tmp_path: Path, name: str, created: datetime) -> backup.Bundle:
    folder = tmp_path / name
    folder.mkdir()
    return backup.Bundle(folder, {"created_at": created.isoformat(), "services": {}})


def test_prune_keeps_the_newest_and_honours_age(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    found = [bundle_at(tmp_path, f"b{d}", now - timedelta(days=d)) for d in (1, 5, 10, 40)]
    names = lambda chosen: sorted(b.name for b in chosen)  # noqa: E731
    assert names(backup.prune_selection(found, keep=2, older_than_days=None, now=now)) == [
        "b10",
        "b40",
    ]
    assert names(backup.prune_selection(found, keep=1, older_than_days=7, now=now)) == [
        "b10",
        "b40",
    ]
    assert names(backup.prune_selection(found, keep=None, older_than_days=30, now=now)) == ["b40"]
    assert backup.prune_selection(found, keep=10, older_than_days=None, now=now) == []
    with pytest.raises(BerthError, match="say what to prune"):
        backup.prune_selection(found, keep=None, older_than_days=None, now=now)


def test_latest_is_the_newest_whole_bundle_the_user_made(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    make_bundle(folder / "old", {"f": b"1"}, created="2026-01-01T00:00:00+00:00")
    make_bundle(folder / "mine", {"f": b"1"}, created="2026-01-02T00:00:00+00:00")
    make_bundle(folder / "safety-before-restore-x", {"f": b"1"}, "2026-01-03T00:00:00+00:00")
    make_bundle(folder / "broken", {"f": b"1"}, created="2026-01-04T00:00:00+00:00")
    (folder / "broken" / "f").write_bytes(b"12")
    (folder / ".half.partial-1").mkdir()
    project = SimpleNamespace(root=tmp_path)
    assert backup.resolve(project, "", latest=True).name == "mine"  # type: ignore[arg-type]
    listed = [b.name for b in backup.bundles(project)]  # type: ignore[arg-type]
    assert listed == ["old", "mine", "safety-before-restore-x", "broken"], "oldest first"
    with pytest.raises(BerthError, match="no backup named 'nope'"):
        backup.resolve(project, "nope", latest=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x" * 101, "a b"])
def test_bad_backup_names_are_refused(name: str) -> None:
    with pytest.raises(BerthError, match="is not a usable backup name"):
        backup.check_name(name)


def test_confirmation_refuses_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: False))
    with pytest.raises(BerthError) as caught:
        backup.confirm("Delete?", "inv reset --yes", yes=False)
    assert "run `inv reset --yes`" in str(caught.value)
    backup.confirm("Delete?", "inv reset --yes", yes=True)  # --yes needs no terminal


@pytest.mark.parametrize(("answer", "goes_on"), [("y", True), ("yes", True), ("", False),
                                                 ("n", False)])  # fmt: skip
def test_confirmation_on_a_terminal_asks(
    monkeypatch: pytest.MonkeyPatch, answer: str, goes_on: bool
) -> None:
    asked = []
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr("builtins.input", lambda q: asked.append(q) or answer)
    if goes_on:
        backup.confirm("Delete?", "inv reset --yes", yes=False)
    else:
        with pytest.raises(BerthError, match="cancelled; nothing was changed"):
            backup.confirm("Delete?", "inv reset --yes", yes=False)
    assert asked == ["Delete? [y/N] "]


def fake_project(*services: Service) -> SimpleNamespace:
    def service(name: str) -> Service:
        return next(s for s in services if s.name == name)

    return SimpleNamespace(services=services, service=service)


def test_a_stateful_service_without_a_hook_is_an_error_not_skipped() -> None:
    hook = Backup(server=dict, dump=dict, incompatible=dict, restore=dict)  # type: ignore[arg-type]
    project = fake_project(
        Service("db", backup=hook), Service("cache"), Service("proxy", stateful=False)
    )
    with pytest.raises(BerthError, match="stateful service cache has no backup hook"):
        backup.stateful_services(project)  # type: ignore[arg-type]
    assert [s.name for s in backup.stateful_services(project, ["db"])] == ["db"]  # type: ignore[arg-type]
    with pytest.raises(BerthError, match="proxy keeps no data"):
        backup.stateful_services(project, ["proxy"])  # type: ignore[arg-type]


def test_stale_partials_are_those_of_dead_processes(tmp_path: Path) -> None:
    root = tmp_path / "backups"
    root.mkdir()
    (root / f".mine.partial-{os.getpid()}").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (root / f".old.partial-{dead}").mkdir()
    project = SimpleNamespace(root=tmp_path)
    assert [p.name for p in backup.stale_partials(project)] == [f".old.partial-{dead}"]  # type: ignore[arg-type]


def test_template_version_comes_from_the_copier_answers(tmp_path: Path) -> None:
    (tmp_path / ".copier-answers.yml").write_text(
        "# Changes here will be overwritten by Copier\n_commit: v1.2.3\n_src_path: gh:x/berth\n"
    )
    assert backup.template_version(tmp_path) == {"commit": "v1.2.3", "src_path": "gh:x/berth"}
    assert backup.template_version(tmp_path / "nowhere") == {}


# ── lock ────────────────────────────────────────────────────────────────────
def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    with lock.held(tmp_path, "backup"):
        with pytest.raises(BerthError) as caught, lock.held(tmp_path, "reset", wait=0.2):
            pass
        line = str(caught.value)
        assert "the project is locked by another task (waited 0.2 s)" in line
        assert f"pid {os.getpid()} is running `inv backup` since" in line
    with lock.held(tmp_path, "reset", wait=0):  # released on exit
        pass


def test_lock_is_released_when_its_process_dies(tmp_path: Path) -> None:
    """flock belongs to the open file: a killed holder leaves no stale lock."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(backup.__file__).parent.parent)!r})
        from berth import lock
        with lock.held(__import__("pathlib").Path({str(tmp_path)!r}), "up"):
            print("held", flush=True)
            sys.stdin.read()
            os._exit(9)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    with pytest.raises(BerthError, match="running `inv up`"), lock.held(tmp_path, "down", wait=0):
        pass
    child.kill()
    child.wait()
    with lock.held(tmp_path, "down", wait=0):
        pass


def test_lock_wait_setting_is_validated() -> None:
    assert lock.wait_seconds({"BERTH_LOCK_WAIT": "2.5"}) == 2.5
    assert lock.wait_seconds({}) == lock.DEFAULT_WAIT
    with pytest.raises(BerthError, match="BERTH_LOCK_WAIT='soon' is not a number"):
        lock.wait_seconds({"BERTH_LOCK_WAIT": "soon"})


class FailingCompose:
    """`docker compose` that fails the n-th call (1-based) and records every call."""

    def __init__(self, *failing: int) -> None:
        self.failing, self.calls = set(failing), []

    def run(self, *args: str, **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if len(self.calls) in self.failing:
            raise CommandError(["docker", "compose", *args], 1, "", f"call {len(self.calls)} broke")
        return subprocess.CompletedProcess(list(args), 0, "", "")


@pytest.mark.parametrize("failing", [(1,), (3,), (3, 4)], ids=["cp", "pg_restore", "and-undo"])
def test_postgres_restore_undoes_every_failure_and_says_when_undo_fails(
    failing: tuple[int, ...],
) -> None:
    hook = load_module(REPO / "template" / "services" / "postgres" / "backup.py")
    compose = FailingCompose(*failing)
    project = SimpleNamespace(compose=compose, values={"POSTGRES_USER": "app"})
    info = {"globals": "globals.sql", "databases": [
        {"name": "app", "owner": "app", "encoding": "UTF8", "collate": "C", "ctype": "C",
         "file": "000-app.dump", "entries": 3},
        {"name": "postgres", "owner": "app", "encoding": "UTF8", "collate": "C", "ctype": "C",
         "file": "001-postgres.dump", "entries": 0},
    ]}  # fmt: skip
    with pytest.raises(BerthError) as raised:
        hook.restore(project, Path("/bundle/postgres"), info)
    steps = [" ".join(call[:4]) for call in compose.calls]
    assert steps[0].startswith("cp /bundle/postgres postgres:/tmp/berth-restore-")
    # cp, roles + CREATE DATABASEs, pg_restore of `app` only (`postgres` is empty), …
    if failing != (1,):
        assert steps[1:3] == ["exec -T postgres psql", "exec -T postgres pg_restore"]
    # … and always the undo, connected to template1 since `postgres` is replaced too.
    undo = compose.calls[-1]
    assert undo[:4] == ("exec", "-T", "postgres", "psql")
    assert undo[undo.index("-d") + 1] == "template1"
    message = raised.value.line()
    if failing == (3, 4):
        assert "putting the current databases back failed too" in message
        assert "call 3 broke; then" in message and "call 4 broke" in message
        assert "__old_" in message
    else:
        assert f"call {failing[0]} broke" in message
