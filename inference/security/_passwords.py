"""Password hashing for the local accounts of the web pages: scrypt (memory-hard), from the standard library.

The stored form is ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`` so that the cost can be raised later
and old hashes still verify (and are re-hashed at the next sign-in, see :func:`needs_rehash`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from typing import Final

# n = 2**15, r = 8: 32 MiB of memory per hash, about 0.1 s on one core. The memory cost is what makes a
# GPU or ASIC guessing attack expensive; it is also why sign-in is rate limited by the lockout.
LOG2_N: Final = 15
R: Final = 8
P: Final = 1
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 1024


def _scrypt(password: str, salt: bytes, *, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * n * p + 1024 * 1024,
        dklen=_HASH_BYTES,
    )  # fmt: skip


def check_password_policy(password: str) -> None:
    """Refuse a password too short to resist guessing, or absurdly long (hashing cost is per byte).

    Raises:
        ValueError: The password is shorter than 12 or longer than 1024 characters.
    """
    if len(password) < MIN_LENGTH:
        raise ValueError(f"The password must have at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise ValueError(f"The password must have at most {MAX_LENGTH} characters.")


def hash_password(password: str) -> str:
    """The stored form of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, log2_n=LOG2_N, r=R, p=P)
    encode = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison; a malformed hash never matches)."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not 10 <= int(log2_n) <= 20 or not 1 <= int(r) <= 32 or not 1 <= int(p) <= 4:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(
            password[: MAX_LENGTH + 1], base64.b64decode(salt, validate=True), log2_n=int(log2_n),
            r=int(r), p=int(p),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's."""
    return not stored.startswith(f"scrypt${LOG2_N}${R}${P}$")


@functools.cache
def dummy_hash() -> str:
    """A hash of nothing anyone knows, verified against when the username does not exist: an unknown
    name then costs the same time as a wrong password, so the timing does not tell which names exist."""
    return hash_password(secrets.token_urlsafe(24))
