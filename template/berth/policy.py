"""Compose policy: rules every resolved stack must follow, checked by `nox -s compose`.

Input is `docker compose config --format json` (what would really run, after
overlays and interpolation), so a rule cannot be dodged in an overlay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.compose import ALL_INTERFACES

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY)", re.IGNORECASE)


@dataclass(frozen=True)
class Violation:
    service: str
    rule: str
    detail: str


def check(
    config: Mapping[str, Any],
    *,
    stateful: Iterable[str] = (),
    public_ok: bool = False,
) -> list[Violation]:
    """All violations in a resolved compose config.

    stateful: services that keep data (they need a named volume).
    public_ok: ports on all interfaces were opted in to (BIND_ADDRESS=0.0.0.0).
    """
    found: list[Violation] = []
    keeps_data = set(stateful)
    for name, spec in sorted((config.get("services") or {}).items()):
        found += [Violation(name, rule, detail) for rule, detail in _service(spec, public_ok)]
        if name in keeps_data and not _named_volume(spec):
            found.append(Violation(name, "named-volume", "stateful service without a named volume"))
    return found


def _service(spec: Mapping[str, Any], public_ok: bool) -> Iterable[tuple[str, str]]:
    health = spec.get("healthcheck") or {}
    if not health.get("test") or health.get("disable"):
        yield "healthcheck", "no health check (`up --wait` cannot tell when it is ready)"
    image = str(spec.get("image", ""))
    if "@sha256:" not in image:
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            yield "pinned-image", f"image {image!r} is not pinned to a version tag or digest"
    for port in spec.get("ports") or ():
        host_ip = str(port.get("host_ip", ""))
        if port.get("published") and host_ip in ALL_INTERFACES and not public_ok:
            yield (
                "loopback-ports",
                (
                    f"port {port.get('published')}->{port.get('target')} listens on all interfaces"
                    " (set BIND_ADDRESS=0.0.0.0 only if other machines must connect)"
                ),
            )
    for key, value in (spec.get("environment") or {}).items():
        if SECRET_NAME.search(key) and not key.endswith("_FILE") and value not in (None, ""):
            yield "file-secrets", f"{key} is set literally; use a *_FILE variable and a secret"
    for dependency, condition in (spec.get("depends_on") or {}).items():
        if (condition or {}).get("condition") != "service_healthy":
            yield "healthy-dependencies", f"depends on {dependency} without service_healthy"
    if "no-new-privileges:true" not in (spec.get("security_opt") or ()):
        yield "no-new-privileges", "security_opt lacks no-new-privileges:true"
    if "ALL" not in (spec.get("cap_drop") or ()):
        yield "drop-capabilities", "cap_drop lacks ALL (add back only what the image needs)"
    for mount in spec.get("volumes") or ():
        if str(mount.get("source", "")).endswith("docker.sock"):
            yield "no-docker-socket", "mounts the Docker socket (root on the host)"
    if spec.get("network_mode") == "host":
        yield "no-host-network", "uses the host network"
    if spec.get("privileged"):
        yield "not-privileged", "runs privileged"


def _named_volume(spec: Mapping[str, Any]) -> bool:
    return any(m.get("type") == "volume" and m.get("source") for m in spec.get("volumes") or ())


def table(violations: list[tuple[str, Violation]]) -> str:
    from berth.report import table as render

    rows = [(env, v.service, v.rule, v.detail) for env, v in violations]
    return render(["ENV", "SERVICE", "RULE", "PROBLEM"], rows)


def compose_lint_argv(root: Path, *resolved: Path) -> list[str]:
    """compose-lint on resolved configs (JSON is YAML; each file is linted on its
    own), with the project's justified exceptions from .compose-lint.yml; a
    medium finding fails it."""
    return [
        "compose-lint", "check", "--fail-on", "medium", "--strict-config", "--quiet",
        "--config", str(root / ".compose-lint.yml"), *map(str, resolved),
    ]  # fmt: skip
