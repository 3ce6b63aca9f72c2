"""Live tests for Valkey: the key-value suite it shares with Redis, in
berth/keyvalue_testing.py.
"""

from __future__ import annotations

from berth.keyvalue import KeyValue
from berth.keyvalue_testing import KeyValueTests, restart_probe


class TestValkey(KeyValueTests):
    KEYVALUE = KeyValue("valkey")


# Restart probe, used by tests/test_restart.py.
write_marker, read_marker = restart_probe(TestValkey.KEYVALUE)
