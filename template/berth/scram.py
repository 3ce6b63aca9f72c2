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
import stringprep
import unicodedata

ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def verifier(password: str, iterations: int = ITERATIONS) -> str:
    raw = saslprep(password).encode()
    salt = hmac.new(raw, b"berth scram salt", hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3,
    stringprep.in_table_c4, stringprep.in_table_c5, stringprep.in_table_c6,
    stringprep.in_table_c7, stringprep.in_table_c8, stringprep.in_table_c9,
    stringprep.in_table_a1,
)  # fmt: skip


def saslprep(password: str) -> str:
    """The password as libpq and PostgreSQL hash it (RFC 4013 SASLprep).

    Like PostgreSQL's pg_saslprep: ASCII is used as-is, and a password that
    SASLprep prohibits is used unnormalised rather than refused. Without this
    a password such as "\ufb01le" (a ligature) would get a verifier the
    client never matches, because libpq logs in with "file".
    """
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(check(ch) for ch in prepared for check in _PROHIBITED):
        return password
    if any(stringprep.in_table_d1(ch) for ch in prepared) and (
        any(stringprep.in_table_d2(ch) for ch in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        return password
    return prepared
