"""Live tests for Redis: the key-value suite it shares with Valkey, in
berth/keyvalue_testing.py.
"""

from __future__ import annotations

from berth.keyvalue import KeyValue
from berth.keyvalue_testing import KeyValueTests, restart_probe


class TestRedis(KeyValueTests):
    KEYVALUE = KeyValue("redis")


# Restart probe, used by tests/test_restart.py.
write_marker, read_marker = restart_probe(TestRedis.KEYVALUE)
