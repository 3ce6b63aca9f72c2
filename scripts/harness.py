"""Shared by tasks.py and tests/: render this template and drive a rendered project."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def copier_config() -> dict[str, Any]:
    with (REPO / "copier.yml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def service_choices() -> list[str]:
    """Values of the `services` question, in copier.yml order."""
    choices = copier_config()["services"]["choices"]
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


#: Choices that exclude each other (copier.yml's `services` validator): the
#: second of each pair is the alternative that the full catalog leaves out.
ALTERNATIVES = (("valkey", "redis"),)


def full_catalog() -> list[str]:
    """The largest valid service selection: every choice but the alternatives."""
    left_out = {alternative for _first, alternative in ALTERNATIVES}
    return [s for s in service_choices() if s not in left_out]


def default_services() -> list[str]:
    return list(copier_config()["services"]["default"])


def render(dst: Path, **answers: Any) -> Path:
    """Render the working tree (uncommitted changes included) into `dst`."""
    import warnings

    import copier

    with warnings.catch_warnings():
        # Rendering a dirty working tree on purpose: tests check what is here.
        warnings.simplefilter("ignore", copier.errors.DirtyLocalWarning)
        copier.run_copy(
            str(REPO), str(dst), data=answers, defaults=True, vcs_ref="HEAD", quiet=True
        )
    return dst


def pinned_images() -> set[tuple[str, str]]:
    """(service, image) pairs from docker/images.txt."""
    lines = (REPO / "docker" / "images.txt").read_text(encoding="utf-8").splitlines()
    rows = (line.split() for line in lines)
    return {(row[0], row[1]) for row in rows if row and not row[0].startswith("#")}


def project_images(root: Path) -> set[tuple[str, str]]:
    """(service, image) pairs of a rendered project, from the resolved compose
    config of each environment (the test overlay adds helper services)."""
    found: set[tuple[str, str]] = set()
    for overlay in ("compose.override.yaml", "compose.test.yaml", "compose.prod.yaml"):
        result = subprocess.run(
            ["docker", "compose", "--project-directory", str(root),
             "--env-file", str(root / ".env.example"), "-f", str(root / "compose.yaml"),
             "-f", str(root / overlay), "config", "--format", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        services = json.loads(result.stdout)["services"]
        found |= {(name, spec["image"]) for name, spec in services.items()}
    return found


def missing_images(root: Path) -> list[str]:
    """Images a rendered project needs that the local engine does not have."""
    return sorted(
        image
        for _service, image in project_images(root)
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    )


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1. The sockets stay bound until
    all are picked: probed one at a time, the kernel may hand out a port twice."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def free_port_answers() -> dict[str, int]:
    """A distinct free host port for every `*_port` question in copier.yml
    (copier refuses one port for two questions)."""
    names = [name for name in copier_config() if name.endswith("_port")]
    return dict(zip(names, free_ports(len(names)), strict=True))


def tool_env() -> dict[str, str]:
    """Environment in which a rendered project's `inv`/`nox` find this venv's tools."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_in(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m <args>` (invoke, nox, ...) inside a rendered project."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=project, env=tool_env(), check=check, text=True
    )
