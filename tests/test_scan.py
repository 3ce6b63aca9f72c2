"""Security scanners: every rendered answer combination is clean (compose-lint,
trivy config, trivy secret on what git would commit), and each scanner is shown
to fail on a planted problem, through `inv scan` where the exit code matters.

Nothing here reaches the internet: trivy's DB repository points at a closed
local port (so `inv scan` takes its offline path at once), checks are the ones
embedded in the pinned trivy binary, and no image is pulled or scanned.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_render import SUBSETS

from berth import policy, scan
from berth.compose import Compose
from berth.project import ENVIRONMENTS, Project
from harness import VENV_BIN, free_port, render, tool_env

BAD_DOCKERFILE = """\
FROM python:3.13-slim
USER root
ADD http://example.com/app.tar.gz /opt/app/
RUN apt-get update && apt-get install -y curl
"""
# A bash script without a .sh suffix: found by its shebang. SC2115 (warning:
# `rm -rf $1/*` can expand to /*) and SC2086 (info: unquoted).
BAD_SCRIPT = "#!/usr/bin/env bash\n# wipe a folder\nrm -rf $1/*\n"


@pytest.fixture(scope="module", autouse=True)
def offline_trivy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """An empty trivy cache and a DB repository on a closed local port: the DB
    download fails at once, exactly as offline, without leaving the machine."""
    saved = {k: os.environ.get(k) for k in ("TRIVY_CACHE_DIR", "TRIVY_DB_REPOSITORY")}
    os.environ["TRIVY_CACHE_DIR"] = str(tmp_path_factory.mktemp("trivy-cache"))
    os.environ["TRIVY_DB_REPOSITORY"] = f"127.0.0.1:{free_port()}/trivy-db:2"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def scanners_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process scans find the binaries of this venv, as `inv scan` does."""
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def _render(dst: Path, services: list[str]) -> Path:
    root = render(dst, project_slug="scan-matrix", services=services)
    # Generate every secret, .env and the TLS key pair: the secret scan must
    # still find nothing, because git would not commit them.
    Project(root).prepare()
    return root


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every answer combination of test_render, rendered once (two at a time)."""
    base = tmp_path_factory.mktemp("matrix")
    ids = ["+".join(s) for s in SUBSETS]
    with ProcessPoolExecutor(max_workers=2) as pool:
        roots = list(pool.map(_render, [base / i for i in ids], SUBSETS))
    return dict(zip(ids, roots, strict=True))


@pytest.fixture(scope="module")
def valkey_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("one") / "proj", project_slug="scan-one",
                  services=["valkey"])  # fmt: skip


@pytest.fixture
def project(valkey_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a rendered project to plant problems in."""
    return Path(shutil.copytree(valkey_template, tmp_path / "proj"))


def inv_scan(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "scan", *args],
        cwd=root, env=tool_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip


# ── every combination is clean ───────────────────────────────────────────────
def test_compose_lint_passes_every_combination(
    matrix: dict[str, Path], tmp_path: Path, compose_cli: None
) -> None:
    def resolve(item: tuple[str, str, Path]) -> Path:
        combo, env, root = item
        config = Compose(
            project_dir=root,
            project_name="scan-matrix",
            files=tuple(root / f for f in ENVIRONMENTS[env].files),
            env_file=root / ".env.example",
        ).config()
        out = tmp_path / combo / f"{env}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(config)
        return out

    jobs = [(combo, env, root) for combo, root in matrix.items() for env in ENVIRONMENTS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        files = list(pool.map(resolve, jobs))
    root = next(iter(matrix.values()))
    result = subprocess.run(
        [*policy.compose_lint_argv(root, *files), "--format", "json"],
        cwd=tmp_path, env=tool_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    failing = [
        f"{Path(f['file']).parent.name}/{Path(f['file']).stem}: {f['service']} {f['rule_id']}"
        f" {f['severity']}: {f['message']}"
        for f in report["findings"]
        if f["severity"] in ("medium", "high", "critical") and not f["suppressed"]
    ]
    assert failing == [], "\n".join(failing)
    assert result.returncode == 0, result.stderr
    assert report["errors"] == [], report["errors"]
    linted = {str(Path(f["file"]).parent.name) for f in report["findings"]}
    assert linted == set(matrix), "every combination was linted (each has LOW findings)"


def test_compose_lint_fails_on_a_bad_config(matrix: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    service = {
        "image": "nginx:1.30",
        "privileged": True,
        "ports": [{"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "tcp"}],
    }
    bad.write_text(json.dumps({"services": {"web": service}}))
    root = next(iter(matrix.values()))
    result = subprocess.run(
        [*policy.compose_lint_argv(root, bad), "--format", "json"],
        cwd=tmp_path, env=tool_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    rules = {f["rule_id"] for f in json.loads(result.stdout)["findings"]}
    assert result.returncode == 1
    assert {"CL-0002", "CL-0005", "CL-0003", "CL-0006", "CL-0026"} <= rules


def test_trivy_finds_nothing_in_what_git_would_commit_of_any_combination(
    matrix: dict[str, Path], tmp_path: Path
) -> None:
    batch = tmp_path / "batch"
    for combo, root in matrix.items():
        assert (root / "secrets" / "tls" / "server.key").exists() == ("nginx" in combo)
        copy = scan.copy_committed(root, batch / combo)
        kept = sorted(p.name for p in (copy / "secrets").iterdir())
        assert kept == [".gitignore", "README.md"], f"{combo}: generated secrets stay out of git"
        assert not (copy / ".env").exists() and (copy / ".env.example").is_file()
    secrets = scan.trivy_secrets(batch)
    assert secrets.status == "ok", [(f.target, f.rule) for f in secrets.findings] or secrets.note
    config = scan.trivy_config(batch)
    worst = [f for f in config.findings if f.severity in ("HIGH", "CRITICAL")]
    assert config.status != "error", config.note
    assert worst == [], [(f.target, f.rule, f.title) for f in worst]
    dockerfiles = [p for p in batch.rglob("*") if scan.is_dockerfile(p.name)]
    assert dockerfiles == [], "a Dockerfile arrived: the clean-matrix check above now covers it"


def test_a_fresh_project_scans_clean_and_says_no_dockerfiles(project: Path) -> None:
    started = time.monotonic()
    result = inv_scan(project)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Dockerfiles" in result.stdout
    db_lines = [line for line in result.stdout.splitlines() if line.startswith("berth: vuln")]
    assert db_lines == [
        "berth: vulnerability DB unavailable (offline): image scan skipped; ran trivy secret"
    ]
    assert "skipped: no vulnerability DB (offline)" in result.stdout
    assert elapsed < 60, f"offline scan must not wait on the network ({elapsed:.1f} s)"


# ── the scanners can fail ────────────────────────────────────────────────────
def planted_keys(root: Path) -> tuple[str, str]:
    """An AWS-style key pair and a private key file, made now (nothing real is
    committed to this repository), outside and inside secrets/."""
    import secrets as random

    key_id = "AKIA" + "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    secret = "".join(random.choice(alphabet) for _ in range(40))
    (root / "config").mkdir()
    aws = f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    (root / "config" / "aws.ini").write_text(aws)
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    (root / "deploy").mkdir()
    (root / "deploy" / "id_ed25519").write_bytes(pem)
    (root / "secrets" / "id_ed25519").write_bytes(pem)  # git-ignored: must not be found
    (root / "secrets" / "aws.ini").write_text(aws)
    return "config/aws.ini", "deploy/id_ed25519"


def test_planted_secrets_outside_secrets_are_found(project: Path, tmp_path: Path) -> None:
    aws, key = planted_keys(project)
    out = tmp_path / "scan.json"
    result = inv_scan(project, "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: scan failed" in result.stderr
    report = json.loads(out.read_text())
    assert report["passed"] is False
    found = {
        (f["path"], f["rule"], f["severity"])
        for r in report["results"]
        for f in r["findings"]
        if r["scanner"] == "trivy secret"
    }
    assert (aws, "aws-access-key-id", "CRITICAL") in found
    assert (aws, "aws-secret-access-key", "CRITICAL") in found
    assert (key, "private-key", "HIGH") in found
    assert not any(path.startswith("secrets/") for path, _, _ in found), found


def test_planted_secret_is_found_in_a_git_repository_too(project: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    planted_keys(project)
    listed = scan.committed_files(project)
    assert "config/aws.ini" in listed and "deploy/id_ed25519" in listed
    assert not [p for p in listed if p.startswith("secrets/") and not p.endswith(
        (".gitignore", "README.md"))]  # fmt: skip
    with scan.committed_copy(project) as copy:
        rules = {f.rule for f in scan.trivy_secrets(copy).findings}
    assert {"aws-access-key-id", "private-key"} <= rules


def test_bad_dockerfile_gets_trivy_config_and_hadolint_findings(project: Path) -> None:
    (project / "app").mkdir()
    (project / "app" / "Dockerfile").write_text(BAD_DOCKERFILE)
    report = scan.run(project, offline=True)
    by = {r.scanner: r for r in report.results}
    trivy = {(f.rule, f.severity, f.path) for f in by["trivy config"].findings}
    assert ("DS-0002", "HIGH", "app/Dockerfile") in trivy  # USER root
    assert ("DS-0026", "LOW", "app/Dockerfile") in trivy  # no HEALTHCHECK
    hadolint = {(f.rule, f.path, f.line) for f in by["hadolint"].findings}
    assert ("DL3002", "app/Dockerfile", 2) in hadolint  # last USER is root
    assert ("DL3008", "app/Dockerfile", 4) in hadolint  # unpinned apt packages
    assert not report.passed
    assert "DS-0002" in scan.details(report)


def test_bad_shell_script_gets_a_shellcheck_finding(project: Path) -> None:
    (project / "scripts").mkdir()
    (project / "scripts" / "reset").write_text(BAD_SCRIPT)
    (project / "scripts" / "ok.sh").write_text('#!/bin/sh\nset -eu\necho "fine"\n')
    (project / "scripts" / "tool").write_text("#!/usr/bin/env python3\nprint($1)\n")
    report = scan.run(project, offline=True)
    result = next(r for r in report.results if r.scanner == "shellcheck")
    found = {(f.rule, f.severity, f.path, f.line) for f in result.findings}
    assert found == {
        ("SC2115", "MEDIUM", "scripts/reset", 3),
        ("SC2086", "LOW", "scripts/reset", 3),
    }, "python is not shell; the clean script has no finding"


def test_fail_on_sets_the_exit_code(project: Path) -> None:
    (project / "reset").write_text(BAD_SCRIPT)  # one MEDIUM, one LOW finding
    assert inv_scan(project).returncode == 0, "default HIGH: nothing that high"
    assert inv_scan(project, "--fail-on", "critical").returncode == 0
    over = inv_scan(project, "--fail-on", "medium")
    assert over.returncode == 1
    assert "1 finding at or above MEDIUM, 1 below" in over.stderr
    assert inv_scan(project, "--fail-on", "low").returncode == 1
    bad = inv_scan(project, "--fail-on", "severe")
    assert bad.returncode == 1
    assert "unknown severity 'severe'" in bad.stderr and "low, medium, high, critical" in bad.stderr


def test_json_and_sarif_outputs_are_valid(project: Path, tmp_path: Path) -> None:
    (project / "reset").write_text(BAD_SCRIPT)
    (project / "Dockerfile").write_text(BAD_DOCKERFILE)
    out_json, out_sarif = tmp_path / "out" / "scan.json", tmp_path / "out" / "scan.sarif"
    result = inv_scan(project, "--json", str(out_json), "--sarif", str(out_sarif))
    assert result.returncode == 1, "DS-0002 is HIGH"
    report = json.loads(out_json.read_text())
    assert report["fail_on"] == "HIGH" and report["passed"] is False
    assert report["notes"][0].startswith("vulnerability DB unavailable (offline)")
    rows = {(r["scanner"], r["status"]) for r in report["results"]}
    assert {("trivy secret", "ok"), ("trivy config", "findings"), ("hadolint", "findings"),
            ("shellcheck", "findings"), ("trivy image", "skipped")} == rows  # fmt: skip
    for row in report["results"]:
        assert row["counts"] == {
            s: sum(f["severity"] == s for f in row["findings"]) for s in scan.COUNTED
        }
    findings = [f for r in report["results"] for f in r["findings"]]

    sarif = json.loads(out_sarif.read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    names = [run["tool"]["driver"]["name"] for run in sarif["runs"]]
    assert names == ["trivy", "trivy", "hadolint", "shellcheck"], "one run per scanner that ran"
    results = [res for run in sarif["runs"] for res in run["results"]]
    assert len(results) == len(findings)
    for run in sarif["runs"]:
        rule_ids = {rule["id"] for rule in run["tool"]["driver"]["rules"]}
        for res in run["results"]:
            assert res["ruleId"] in rule_ids
            assert res["level"] in ("error", "warning", "note", "none")
            assert res["message"]["text"]
            where = res["locations"][0]["physicalLocation"]
            assert (project / where["artifactLocation"]["uri"]).is_file()
            assert where.get("region", {"startLine": 1})["startLine"] >= 1


def test_offline_flag_skips_the_download_and_a_cached_db_is_used(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = inv_scan(project, "--offline")
    assert result.returncode == 0
    assert "vulnerability DB unavailable (--offline, none cached): image scan skipped" in (
        result.stdout
    )
    # A DB left by an earlier online run is used when the update fails.
    cache = tmp_path / "cache"
    (cache / "db").mkdir(parents=True)
    (cache / "db" / "trivy.db").write_bytes(b"")
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(cache))
    assert scan.vulnerability_db(offline=False) == (
        True,
        "vulnerability DB update failed (offline?): using the cached DB",
    )
    assert scan.vulnerability_db(offline=True) == (
        True,
        "--offline: using the cached vulnerability DB",
    )


# ── units ────────────────────────────────────────────────────────────────────
def test_file_classification(tmp_path: Path) -> None:
    for name in ("Dockerfile", "Containerfile", "api.Dockerfile", "Dockerfile.prod"):
        assert scan.is_dockerfile(f"x/{name}"), name
    for name in ("dockerfile.md", "README.md", "Dockerfiles"):
        assert not scan.is_dockerfile(name), name
    cases = {
        "a.sh": ("echo hi\n", True),
        "b": ("#!/bin/bash\n", True),
        "c": ("#!/usr/bin/env -S bash -e\n", True),
        "d": ("#! /bin/sh\n", True),
        "e": ("#!/usr/bin/env python3\n", False),
        "f": ("plain text\n", False),
        "g": ("#!/usr/bin/env zsh\n", False),
    }
    for name, (text, shell) in cases.items():
        (tmp_path / name).write_text(text)
        assert scan.is_shell_script(tmp_path / name) == shell, name


def test_committed_files_without_git_match_git(project: Path) -> None:
    Project(project).prepare()
    (project / "notes.txt").write_text("kept\n")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "x.pyc").write_bytes(b"")
    without = scan.committed_files(project)
    assert not (project / ".git").exists(), "the fallback writes nothing into the project"
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    assert scan.committed_files(project) == without
    assert "notes.txt" in without and ".env.example" in without
    assert ".env" not in without and "__pycache__/x.pyc" not in without
    assert [p for p in without if p.startswith("secrets/")] == [
        "secrets/.gitignore",
        "secrets/README.md",
    ]


def test_db_probe_is_quick_and_honours_the_configured_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        monkeypatch.setenv("TRIVY_DB_REPOSITORY", f"127.0.0.1:{free_port()}/a,127.0.0.1:{port}/b")
        assert scan.db_reachable(), "the second repository answers"
    monkeypatch.setenv("TRIVY_DB_REPOSITORY", f"127.0.0.1:{port}/trivy-db:2")
    assert not scan.db_reachable(), "closed port: offline"


# ── image vulnerabilities, with a DB made for the test ──────────────────────
FIXTURE_DB = Path(__file__).parent / "data" / "trivy-db"


@pytest.fixture
def planted_image(docker_engine: None) -> Iterator[str]:
    """A Debian 12 root file system whose dpkg status lists the package of the
    fixture DB's advisory, made with `docker import` (nothing is pulled)."""
    import io
    import tarfile
    import uuid

    files = {
        "etc/os-release": 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n',
        "etc/debian_version": "12.8\n",
        "var/lib/dpkg/status": (
            "Package: berth-planted\nStatus: install ok installed\nArchitecture: amd64\n"
            "Version: 1.0.0-1\nDescription: test fixture\n\n"
        ),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tag = f"berth-scan-planted-{uuid.uuid4().hex[:8]}:1"
    subprocess.run(["docker", "import", "-", tag], input=buffer.getvalue(), check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield tag
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def test_image_vulnerabilities_are_found_with_a_cached_db(
    project: Path, planted_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Path(shutil.copytree(FIXTURE_DB, tmp_path / "trivy-cache"))
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(cache))
    fragment = project / "services" / "valkey" / "compose.yaml"
    fragment.write_text(fragment.read_text().replace("valkey/valkey:9.1", planted_image))
    out = tmp_path / "scan.json"
    result = inv_scan(project, "--offline", "--json", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "berth: --offline: using the cached vulnerability DB" in result.stdout
    assert "CVE-0000-0001" in result.stderr, "listed as over the threshold"
    row = next(r for r in json.loads(out.read_text())["results"] if r["scanner"] == "trivy image")
    assert row["target"] == planted_image and row["status"] == "findings"
    assert [(f["rule"], f["severity"], f["title"]) for f in row["findings"]] == [
        (
            "CVE-0000-0001",
            "HIGH",
            "berth-planted 1.0.0-1: berth test fixture: planted vulnerability (fixed in 1.0.1-1)",
        )
    ]
    assert inv_scan(project, "--offline", "--fail-on", "critical").returncode == 0


def test_an_image_missing_locally_is_skipped_never_pulled(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_engine: None
) -> None:
    monkeypatch.setenv("TRIVY_CACHE_DIR", str(shutil.copytree(FIXTURE_DB, tmp_path / "c")))
    fragment = project / "services" / "valkey" / "compose.yaml"
    absent = "berth-scan-absent.invalid/none:1"
    fragment.write_text(fragment.read_text().replace("valkey/valkey:9.1", absent))
    report = scan.run(project, offline=True)
    row = next(r for r in report.results if r.scanner == "trivy image")
    assert (row.target, row.status) == (absent, "skipped")
    assert "never pulls" in row.note
    assert report.passed


def test_a_broken_compose_config_is_a_scan_error_not_a_crash(project: Path) -> None:
    (project / ".env").write_text("COMPOSE_PROJECT_NAME=x\nVALKEY_PORT=not-a-port\n")
    result = inv_scan(project, "--offline")
    assert result.returncode == 1
    assert "trivy secret" in result.stdout, "the other scanners still ran and are shown"
    assert "trivy image   compose images" in result.stdout
    assert "trivy image on compose images failed" in result.stderr
    assert "fix the scanner error above" in result.stderr
