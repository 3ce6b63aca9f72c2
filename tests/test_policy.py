"""The compose policy checker: each rule fires on a bad config, none on ours."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from berth import policy

GOOD: dict[str, Any] = {
    "services": {
        "db": {
            "image": "postgres:18",
            "healthcheck": {"test": ["CMD", "pg_isready"]},
            "ports": [{"host_ip": "127.0.0.1", "published": "5432", "target": 5432}],
            "environment": {"POSTGRES_PASSWORD_FILE": "/run/secrets/pw", "POSTGRES_USER": "app"},
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"],
            "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql"}],
            "depends_on": {"cache": {"condition": "service_healthy"}},
        }
    }
}


def rules(config: dict[str, Any], **kwargs: Any) -> list[str]:
    return [v.rule for v in policy.check(config, stateful=["db"], **kwargs)]


def bad(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(GOOD)
    target = config["services"]["db"]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


def test_a_good_config_passes() -> None:
    assert rules(GOOD) == []


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        (("healthcheck",), None, "healthcheck"),
        (("healthcheck",), {"test": ["NONE"], "disable": True}, "healthcheck"),
        (("image",), "postgres", "pinned-image"),
        (("image",), "postgres:latest", "pinned-image"),
        (("image",), "registry:5000/team/pg", "pinned-image"),
        (("ports",), [{"host_ip": "0.0.0.0", "published": "5432", "target": 5432}],
         "loopback-ports"),
        (("ports",), [{"published": "5432", "target": 5432}], "loopback-ports"),
        (("environment", "POSTGRES_PASSWORD"), "hunter2", "file-secrets"),
        (("environment", "API_KEY"), "abc", "file-secrets"),
        (("depends_on",), {"cache": {"condition": "service_started"}}, "healthy-dependencies"),
        (("security_opt",), None, "no-new-privileges"),
        (("cap_drop",), ["NET_RAW"], "drop-capabilities"),
        (("volumes",), [{"type": "bind", "source": "./data", "target": "/d"}], "named-volume"),
        (("volumes",), [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s"},
                        {"type": "volume", "source": "data", "target": "/d"}],
         "no-docker-socket"),
        (("network_mode",), "host", "no-host-network"),
        (("privileged",), True, "not-privileged"),
    ],
)  # fmt: skip
def test_each_rule_fires(path: tuple[str, ...], value: Any, rule: str) -> None:
    assert rules(bad(path, value)) == [rule]


def test_digest_pins_and_the_public_opt_in_are_accepted() -> None:
    assert rules(bad(("image",), "postgres@sha256:" + "0" * 64)) == []
    public = bad(("ports",), [{"host_ip": "0.0.0.0", "published": "5432", "target": 5432}])
    assert rules(public, public_ok=True) == []


def test_table_lists_every_violation() -> None:
    found = [("dev", v) for v in policy.check(bad(("security_opt",), None), stateful=["db"])]
    text = policy.table(found)
    assert "dev" in text and "no-new-privileges" in text and "db" in text
