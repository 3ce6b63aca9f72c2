"""Data survives `inv down` + `inv up` for every stateful service."""

from __future__ import annotations

import uuid

from berth.project import Project
from berth.testing import healthy_containers, inv, service_test_modules


def test_data_survives_down_and_up(project: Project, urls: dict[str, dict[str, str]]) -> None:
    probes = service_test_modules(project)
    stateful = {s.name for s in project.services if s.stateful}
    assert set(probes) == stateful, "every stateful service needs a restart probe"
    token = uuid.uuid4().hex
    before = {c.service: c.id for c in project.containers()}
    for name, probe in probes.items():
        probe.write_marker(urls[name], token)

    inv(project, "down")
    assert project.containers() == [], "inv down must remove the containers"
    inv(project, "up")

    after, problem = healthy_containers(project)
    assert not problem, problem
    assert all(before[c.service] != c.id for c in after), "containers were recreated"
    fresh = project.urls(after, reveal=True)
    for name, probe in probes.items():
        assert probe.read_marker(fresh[name]) == token, f"{name} lost its data"
