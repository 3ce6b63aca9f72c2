"""Redis as berth sees it: two passwords, an ACL file of their hashes, one URL per
purpose. Redis and Valkey share these rules: see berth/keyvalue.py.
"""

from __future__ import annotations

from berth.keyvalue import KeyValue

SERVICE = KeyValue("redis").service()
