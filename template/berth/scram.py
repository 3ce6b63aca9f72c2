"""PostgreSQL SCRAM-SHA-256 verifiers (RFC 5802/7677), computed like PostgreSQL does.

PostgreSQL stores a password given in this form as-is, and PgBouncer can
reuse a client's SCRAM keys to log in to PostgreSQL only when both hold the
same verifier. berth derives it deterministically from the password (salt =
HMAC of the password), so every component computes the identical string and
no container but the client side ever needs the plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def verifier(password: str, iterations: int = ITERATIONS) -> str:
    raw = password.encode()
    salt = hmac.new(raw, b"berth scram salt", hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
