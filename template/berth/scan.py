"""Security scanners for this project: `inv scan` and `nox -s scan` both call `run()`.

- trivy config: Dockerfiles (embedded checks of the pinned trivy; no check download)
- trivy fs --scanners secret: the files git would commit (secrets/ and .env are
  git-ignored, so a fresh project has nothing to find)
- trivy image: every image of the resolved compose config (dev, test and prod),
  read from the local engine only (never pulled); needs the vulnerability DB,
  which is downloaded once (bounded in time) and skipped, with one line, offline
- hadolint: Dockerfiles; shellcheck: `*.sh` and files with a sh/bash shebang

The tools come from requirements.txt (PyPI wheels that ship the binaries) and
are looked up next to this Python first, so `.venv/bin/inv scan` works without
activating the virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from berth import proc
from berth.compose import Compose
from berth.errors import BerthError

SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
COUNTED = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
#: hadolint and shellcheck levels on trivy's scale, so one --fail-on covers all.
LEVELS = {"error": "HIGH", "warning": "MEDIUM", "info": "LOW", "style": "LOW"}
SHELLS = ("sh", "bash", "dash", "ksh")
DOCKERFILE_NAMES = ("Dockerfile", "Containerfile")
#: Local scans take about a second; the bound only stops a wedged process.
SCAN_TIMEOUT = 600
#: trivy's --timeout does not bound its DB download, and a firewall that drops
#: packets makes it wait for TCP timeouts. So: a short connect probe to the DB
#: repository first (offline = fails within PROBE_TIMEOUT), then the download,
#: bounded by DB_TIMEOUT (the DB is tens of MB).
PROBE_TIMEOUT = 5
DB_TIMEOUT = 180
#: trivy's default DB repositories; TRIVY_DB_REPOSITORY (comma-separated) overrides.
DB_REPOSITORIES = ("mirror.gcr.io/aquasec/trivy-db:2", "ghcr.io/aquasecurity/trivy-db:2")
#: Never phone home: no version notice, no telemetry, no rego check download
#: (the checks embedded in the pinned trivy binary are used).
TRIVY_QUIET = ("--quiet", "--skip-version-check", "--disable-telemetry")
INSTALL_FIX = (
    "`pip install -r requirements.txt` (the pinned wheels ship the binaries for Linux x86_64;"
    " elsewhere install {tool} from its website)"
)


@dataclass(frozen=True)
class Finding:
    scanner: str
    target: str
    rule: str
    severity: str
    title: str
    path: str = ""
    line: int = 0


@dataclass
class Result:
    """One scanner run over one target. status: ok | findings | skipped | error."""

    scanner: str
    target: str
    status: str = "ok"
    note: str = ""
    findings: list[Finding] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in COUNTED}


@dataclass
class Report:
    fail_on: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def over_threshold(self) -> list[Finding]:
        bar = SEVERITIES.index(self.fail_on)
        return [f for f in self.findings if SEVERITIES.index(f.severity) >= bar]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.status == "error"]

    @property
    def passed(self) -> bool:
        return not self.over_threshold() and not self.errors


# ── entry point ──────────────────────────────────────────────────────────────
def run(root: Path, *, fail_on: str = "HIGH", offline: bool = False) -> Report:
    """Run every scanner over the project at `root` and collect the results."""
    fail_on = severity(fail_on)
    report = Report(fail_on=fail_on)
    with committed_copy(root) as copy:
        files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
        dockerfiles = [f for f in files if is_dockerfile(f)]
        scripts = [f for f in files if is_shell_script(copy / f)]
        report.results.append(trivy_secrets(copy))
        if dockerfiles:
            report.results.append(trivy_config(copy))
            report.results.append(hadolint(copy, dockerfiles))
        else:
            report.results += [
                Result("trivy config", "Dockerfiles", "skipped", "no Dockerfiles"),
                Result("hadolint", "Dockerfiles", "skipped", "no Dockerfiles"),
            ]
        if scripts:
            report.results.append(shellcheck(copy, scripts))
        else:
            report.results.append(Result("shellcheck", "shell scripts", "skipped", "no scripts"))
    report.results += images(root, report, offline=offline)
    return report


def severity(value: str) -> str:
    upper = value.strip().upper()
    if upper not in SEVERITIES[1:]:
        raise BerthError(
            f"unknown severity {value!r}",
            fix=f"use one of: {', '.join(s.lower() for s in SEVERITIES[1:])}",
        )
    return upper


# ── what git would commit ────────────────────────────────────────────────────
def committed_files(root: Path) -> list[str]:
    """Paths (relative to root) that `git add -A` would stage: tracked plus
    untracked-but-not-ignored. Outside a git repository a throw-away git dir
    (in a temp folder, never in the project) applies the same .gitignore rules."""
    listing = ["ls-files", "--cached", "--others", "--exclude-standard", "-z"]
    inside = proc.run(
        ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"], check=False, what="git"
    )
    if inside.returncode == 0 and inside.stdout.strip() == "true":
        out = proc.run(["git", "-C", str(root), *listing], what="listing files for git").stdout
    else:
        with tempfile.TemporaryDirectory(prefix="berth-scan-git-") as tmp:
            git_dir = Path(tmp) / "git"
            proc.run(["git", "init", "--quiet", "--bare", str(git_dir)], what="git init")
            out = proc.run(
                ["git", f"--git-dir={git_dir}", f"--work-tree={root}", *listing],
                cwd=root,
                what="listing files for git",
            ).stdout
    return sorted({p for p in out.split("\0") if p and (root / p).is_file()})


def copy_committed(root: Path, dest: Path) -> Path:
    """Copy the files git would commit from `root` into `dest` (symlinks skipped)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in committed_files(root):
        source = root / rel
        if source.is_symlink():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


@contextmanager
def committed_copy(root: Path) -> Iterator[Path]:
    """A temp folder holding exactly the files git would commit."""
    with tempfile.TemporaryDirectory(prefix="berth-scan-") as tmp:
        yield copy_committed(root, Path(tmp) / root.name)


def is_dockerfile(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (
        name in DOCKERFILE_NAMES
        or name.endswith((".Dockerfile", ".dockerfile", ".Containerfile"))
        or name.startswith(tuple(f"{n}." for n in DOCKERFILE_NAMES))
    )


def is_shell_script(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(200).decode("utf-8", "replace").strip()
    except OSError:
        return False
    if not first.startswith("#!"):
        return False
    words = first[2:].split()
    if words and words[0].endswith("/env"):
        words = [w for w in words[1:] if not w.startswith("-")]
    return bool(words) and words[0].rsplit("/", 1)[-1] in SHELLS


# ── tools ────────────────────────────────────────────────────────────────────
def tool(name: str) -> str:
    """The binary from this Python's environment (the pinned wheel), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise BerthError(f"`{name}` is not installed", fix=INSTALL_FIX.format(tool=name))
    return found


def _json_run(
    cmd: Sequence[str], *, cwd: Path, ok: Iterable[int] = (0,), timeout: float = SCAN_TIMEOUT
) -> tuple[Any, str]:
    """Run a scanner that prints JSON; returns (parsed, error line or '')."""
    result = proc.run(cmd, cwd=cwd, check=False, timeout=timeout)
    if result.returncode not in tuple(ok):
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        return None, (lines[-1] if lines else f"exit status {result.returncode}")
    try:
        return json.loads(result.stdout or "null"), ""
    except json.JSONDecodeError:
        return None, f"unreadable output from {Path(cmd[0]).name}"


def _trivy_results(data: Any) -> list[dict[str, Any]]:
    return list((data or {}).get("Results") or [])


def _scanned(
    result: Result, cmd: Sequence[str], cwd: Path, findings: Any, *, ok: Iterable[int] = (0,)
) -> Result:
    """Run a scanner that prints JSON into `result`: its findings (from
    `findings(parsed output)`), or an error row that the table shows."""
    data, error = _json_run(cmd, cwd=cwd, ok=ok)
    if error:
        result.status, result.note = "error", error
        return result
    result.findings = list(findings(data))
    if result.findings:
        result.status = "findings"
    return result


def trivy_secrets(copy: Path) -> Result:
    def findings(data: Any) -> Iterator[Finding]:
        for item in _trivy_results(data):
            for hit in item.get("Secrets") or ():
                yield Finding(
                    "trivy secret", item.get("Target", ""), hit.get("RuleID", ""),
                    hit.get("Severity", "UNKNOWN"), hit.get("Title", ""),
                    item.get("Target", ""), int(hit.get("StartLine") or 0),
                )  # fmt: skip

    cmd = [tool("trivy"), "fs", "--scanners", "secret", "--format", "json", *TRIVY_QUIET, "."]
    return _scanned(Result("trivy secret", "files git would commit"), cmd, copy, findings)


def trivy_config(copy: Path) -> Result:
    def findings(data: Any) -> Iterator[Finding]:
        for item in _trivy_results(data):
            for hit in item.get("Misconfigurations") or ():
                if hit.get("Status", "FAIL") != "FAIL":
                    continue
                cause = hit.get("CauseMetadata") or {}
                yield Finding(
                    "trivy config", item.get("Target", ""), hit.get("ID", ""),
                    hit.get("Severity", "UNKNOWN"), hit.get("Title", ""),
                    item.get("Target", ""), int(cause.get("StartLine") or 0),
                )  # fmt: skip

    cmd = [
        tool("trivy"), "config", "--misconfig-scanners", "dockerfile", "--skip-check-update",
        "--format", "json", *TRIVY_QUIET, ".",
    ]  # fmt: skip
    return _scanned(Result("trivy config", "Dockerfiles"), cmd, copy, findings)


def hadolint(copy: Path, dockerfiles: list[str]) -> Result:
    def findings(data: Any) -> Iterator[Finding]:
        for hit in data or ():
            yield Finding(
                "hadolint", hit.get("file", ""), hit.get("code", ""),
                LEVELS.get(hit.get("level", ""), "UNKNOWN"), hit.get("message", ""),
                hit.get("file", ""), int(hit.get("line") or 0),
            )  # fmt: skip

    # --no-fail: findings are judged by --fail-on here, not by hadolint's exit code.
    cmd = [tool("hadolint"), "--no-fail", "--format", "json", *dockerfiles]
    return _scanned(Result("hadolint", "Dockerfiles"), cmd, copy, findings)


def shellcheck(copy: Path, scripts: list[str]) -> Result:
    def findings(data: Any) -> Iterator[Finding]:
        for hit in (data or {}).get("comments") or ():
            yield Finding(
                "shellcheck", hit.get("file", ""), f"SC{hit.get('code', '')}",
                LEVELS.get(hit.get("level", ""), "UNKNOWN"), hit.get("message", ""),
                hit.get("file", ""), int(hit.get("line") or 0),
            )  # fmt: skip

    # Exit 1 means "found something"; the findings are in the JSON either way.
    cmd = [tool("shellcheck"), "--format", "json1", "--external-sources", *scripts]
    return _scanned(Result("shellcheck", "shell scripts"), cmd, copy, findings, ok=(0, 1))


# ── images ───────────────────────────────────────────────────────────────────
def compose_images(root: Path) -> list[str]:
    """Every image of the resolved config of each environment (test adds helpers)."""
    from berth.project import ENVIRONMENTS

    env_file = root / ".env" if (root / ".env").is_file() else root / ".env.example"
    found: set[str] = set()
    for env in ENVIRONMENTS.values():
        config = Compose(
            project_dir=root,
            project_name=f"{root.name.lower()}-scan",
            files=tuple(root / name for name in env.files),
            env_file=env_file,
        ).config()
        found |= {s["image"] for s in json.loads(config)["services"].values() if s.get("image")}
    return sorted(found)


def images(root: Path, report: Report, *, offline: bool) -> list[Result]:
    """Scan every compose image for known vulnerabilities; without the DB, one
    line says so and every image row is skipped. Secrets baked into upstream
    images are not scanned: you cannot fix them (your own files are scanned by
    `trivy secret`), whereas a vulnerable image is fixed by a newer pin."""
    try:
        names = compose_images(root)
    except BerthError as error:  # no docker CLI, a broken .env: report it with the rest
        return [Result("trivy image", "compose images", "error", error.line())]
    db, note = vulnerability_db(offline=offline) if names else (False, "")
    if names and not db:
        ran = [r.scanner for r in report.results if r.status != "skipped"]
        report.notes.append(
            f"vulnerability DB unavailable ({note}): image scan skipped; ran {', '.join(ran)}"
        )
        return [Result("trivy image", n, "skipped", f"no vulnerability DB ({note})") for n in names]
    if note:
        report.notes.append(note)
    return [scan_image(name) for name in names]


def trivy_cache() -> Path:
    return Path(os.environ.get("TRIVY_CACHE_DIR") or Path.home() / ".cache" / "trivy")


def vulnerability_db(*, offline: bool) -> tuple[bool, str]:
    """(usable, note). Tries one bounded download unless `offline`; a DB cached
    by an earlier run is used (with a note) when the download fails."""
    cached = (trivy_cache() / "db" / "trivy.db").is_file()
    if offline:
        if cached:
            return True, "--offline: using the cached vulnerability DB"
        return False, "--offline, none cached"
    if db_reachable():
        cmd = [tool("trivy"), "image", "--download-db-only", *TRIVY_QUIET]
        try:
            got = proc.run(cmd, check=False, timeout=DB_TIMEOUT)
        except BerthError:  # still downloading (or hanging) at the bound
            got = None
        if got is not None and got.returncode == 0:
            return True, ""
    if cached:
        return True, "vulnerability DB update failed (offline?): using the cached DB"
    return False, "offline"


def db_reachable() -> bool:
    """Can a TCP connection be opened to one of the DB repositories, quickly?"""
    configured = os.environ.get("TRIVY_DB_REPOSITORY", "")
    repositories = [r.strip() for r in configured.split(",") if r.strip()] or DB_REPOSITORIES
    for repository in repositories:
        host, _, port = repository.split("/", 1)[0].partition(":")
        try:
            with socket.create_connection((host, int(port or 443)), timeout=PROBE_TIMEOUT):
                return True
        except (OSError, ValueError):
            continue
    return False


def scan_image(image: str) -> Result:
    """trivy's vulnerability scan of one image from the local engine (never pulled)."""
    result = Result("trivy image", image)
    present = proc.run(["docker", "image", "inspect", image], check=False)
    if present.returncode != 0:
        result.status = "skipped"
        result.note = "not in the local engine (scan never pulls): `docker compose pull`"
        return result
    cmd = [
        tool("trivy"), "image", "--image-src", "docker", "--scanners", "vuln",
        "--skip-db-update", "--offline-scan", "--format", "json", *TRIVY_QUIET, image,
    ]  # fmt: skip
    return _scanned(result, cmd, Path.cwd(), lambda data: _vulnerabilities(image, data))


def _vulnerabilities(image: str, data: Any) -> Iterator[Finding]:
    for item in _trivy_results(data):
        where = item.get("Target", "")
        for hit in item.get("Vulnerabilities") or ():
            package = f"{hit.get('PkgName', '')} {hit.get('InstalledVersion', '')}".strip()
            fixed = hit.get("FixedVersion")
            title = f"{package}: {hit.get('Title') or hit.get('VulnerabilityID', '')}"
            title += f" (fixed in {fixed})" if fixed else ""
            yield Finding(
                "trivy image", image, hit.get("VulnerabilityID", ""),
                hit.get("Severity", "UNKNOWN"), title, where,
            )  # fmt: skip


# ── output ───────────────────────────────────────────────────────────────────
def summary(report: Report) -> str:
    from berth.report import table

    rows = []
    for r in report.results:
        counts = r.counts()
        cells = ["-"] * len(COUNTED) if r.status in ("skipped", "error") else counts.values()
        status = r.status + (f": {r.note}" if r.note else "")
        rows.append((r.scanner, r.target, *cells, status))
    return table(["SCANNER", "TARGET", *COUNTED, "STATUS"], rows)


def verdict(report: Report) -> str:
    over, total = len(report.over_threshold()), len(report.findings)
    text = f"{over} finding{'s' * (over != 1)} at or above {report.fail_on}"
    if total > over:
        text += f", {total - over} below"
    for r in report.errors:
        text += f"; {r.scanner} on {r.target} failed: {r.note}"
    return text


def details(report: Report, limit: int = 50) -> str:
    """The findings at or above the threshold, worst first (at most `limit`)."""
    worst = sorted(report.over_threshold(), key=lambda f: -SEVERITIES.index(f.severity))
    lines = [
        f"{f.severity:<8} {f.scanner:<12} {_where(f)}  {f.rule}  {f.title}" for f in worst[:limit]
    ]
    if len(worst) > limit:
        lines.append(f"… and {len(worst) - limit} more (see --json)")
    return "\n".join(lines)


def _where(f: Finding) -> str:
    if f.scanner == "trivy image":
        return f"{f.target} ({f.path})" if f.path else f.target
    return f"{f.path}:{f.line}" if f.line else f.path


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "fail_on": report.fail_on,
            "passed": report.passed,
            "notes": report.notes,
            "results": [{**asdict(r), "counts": r.counts()} for r in report.results],
        },
        indent=2,
    )


SARIF_LEVEL = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def to_sarif(report: Report) -> str:
    """One SARIF 2.1.0 log, one run per scanner that ran (skipped ones are left out)."""
    runs = []
    for scanner in dict.fromkeys(r.scanner for r in report.results if r.status != "skipped"):
        findings = [f for f in report.findings if f.scanner == scanner]
        rules = sorted({f.rule for f in findings})
        runs.append(
            {
                "tool": {
                    "driver": {
                        "name": scanner.split()[0],
                        "informationUri": INFO_URI[scanner.split()[0]],
                        "rules": [{"id": rule} for rule in rules],
                    }
                },
                "automationDetails": {"id": f"berth-scan/{scanner.replace(' ', '-')}/"},
                "results": [_sarif_result(f) for f in findings],
            }
        )
    return json.dumps({"version": "2.1.0", "$schema": SARIF_SCHEMA, "runs": runs}, indent=2)


INFO_URI = {
    "trivy": "https://trivy.dev/",
    "hadolint": "https://github.com/hadolint/hadolint",
    "shellcheck": "https://www.shellcheck.net/",
}


def _sarif_result(f: Finding) -> dict[str, Any]:
    uri = f.path if f.scanner != "trivy image" else f"image/{quote(f.target, safe='')}"
    location: dict[str, Any] = {"artifactLocation": {"uri": uri or "."}}
    if f.line > 0:
        location["region"] = {"startLine": f.line}
    return {
        "ruleId": f.rule,
        "level": SARIF_LEVEL.get(f.severity, "none"),
        "message": {"text": f"[{f.severity}] {f.title}"},
        "locations": [{"physicalLocation": location}],
        "properties": {"severity": f.severity, "target": f.target},
    }


def write(path: Path, text: str) -> None:
    from berth.secrets import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text + "\n", mode=0o644)
