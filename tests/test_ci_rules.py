"""Docker-dependent tests fail, never skip, when CI is set and Docker is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_docker


def test_missing_docker_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker here
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Docker is required in CI"):
        require_docker(need_engine=True)


def test_missing_docker_skips_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Docker unavailable"):
        require_docker(need_engine=True)
