"""Valkey as berth sees it: two passwords, an ACL file of their hashes, one URL per
purpose. Valkey and Redis share these rules: see berth/keyvalue.py.
"""

from __future__ import annotations

from berth.keyvalue import KeyValue

SERVICE = KeyValue("valkey").service()
