"""docker/images.txt is the one list of pinned images the template uses."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from harness import (
    ALTERNATIVES,
    full_catalog,
    missing_images,
    pinned_images,
    project_images,
    render,
)

# Answer sets that together reach every image a project can use.
VARIANTS: list[dict[str, Any]] = [
    {"services": full_catalog(), "postgres_version": version, "pgvector": vector}
    for version, vector in itertools.product((18, 17), (True, False))
] + [{"services": [alternative for _first, alternative in ALTERNATIVES]}]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("images")
    return [render(base / f"v{i}", **answers) for i, answers in enumerate(VARIANTS)]


def test_every_image_is_listed_pinned_and_used(rendered: list[Path], compose_cli: None) -> None:
    used = set().union(*(project_images(root) for root in rendered))
    assert used == pinned_images(), "docker/images.txt and the fragments disagree"
    for _service, image in used:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image} must carry a pinned tag"


@pytest.mark.live
def test_pinned_images_are_present_locally(rendered: list[Path], docker_engine: None) -> None:
    missing = sorted({image for root in rendered for image in missing_images(root)})
    assert not missing, f"images missing: {missing}; run `docker pull IMAGE` (CI: provision)"
