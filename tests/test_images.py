"""docker/images.txt is the one list of pinned images the template uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import missing_images, pinned_images

REPO = Path(__file__).resolve().parent.parent


def fragment_images() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "template/services").glob("*/compose*.yaml*")):
        for image in re.findall(r"^\s*image:\s*(\S+)", path.read_text(), flags=re.M):
            found.setdefault(path.parent.name, set()).add(image)
    return found


def test_every_fragment_image_is_listed_and_pinned() -> None:
    listed = pinned_images()
    used = fragment_images()
    assert {s: {i} for s, i in listed.items()} == used
    for image in listed.values():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image} must carry a pinned tag"


@pytest.mark.live
def test_pinned_images_are_present_locally(docker_engine: None) -> None:
    missing = missing_images()
    assert not missing, f"images missing: {missing}; run `docker pull IMAGE` (CI: provision)"
