"""Production tokens: JWTs of an external issuer (hospital identity provider), checked against its JWKS.

The algorithm is fixed by configuration (``DXASSIST_JWT_ALGORITHM``), never taken from the token: a token
whose header names another algorithm is refused before any key is looked at, so ``alg: none`` and
HS256-signed-with-the-public-key (algorithm confusion) cannot pass. Symmetric (``oct``) keys in the JWKS
are ignored. Keys are cached for ``jwks_cache_seconds``; an unknown ``kid`` triggers one refetch (at most
every 10 seconds), which is how the issuer's key rotation reaches the server.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from inference.security._errors import TokenCheckUnavailable, Unauthenticated
from inference.security._tokens import decode_claims

if TYPE_CHECKING:
    from inference.config import Settings

logger = logging.getLogger(__name__)

_MAX_JWKS_BYTES: Final = 1 << 20
_FETCH_TIMEOUT: Final = 5.0
_MIN_REFETCH_SECONDS: Final = 10.0
_REQUIRED: Final = ["iss", "aud", "sub", "exp", "iat"]
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_KEY_TYPES: Final[dict[str, str]] = {"EdDSA": "OKP", "RS": "RSA", "PS": "RSA", "ES": "EC"}


class JwksUnavailable(TokenCheckUnavailable):
    """The issuer's JWKS cannot be fetched or read (a configuration or network problem: HTTP 503)."""

    code = "jwks_unavailable"


@dataclass
class _Cache:
    keys: dict[str, Any] = field(default_factory=dict)
    anonymous: list[Any] = field(default_factory=list)
    fetched_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


_caches: dict[tuple[str, str], _Cache] = {}
_caches_lock = threading.Lock()


def check_jwks_url(url: str) -> None:
    """Refuse a JWKS URL that is not https (plain http is accepted on the loopback only, for tests).

    Raises:
        JwksUnavailable: The URL is unusable.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return
    raise JwksUnavailable(
        "DXASSIST_JWKS_URL must be an https URL (plain http is accepted on 127.0.0.1 only); "
        "tokens cannot be checked until it is fixed."
    )


def _key_type(algorithm: str) -> str:
    return _KEY_TYPES.get(algorithm, _KEY_TYPES.get(algorithm[:2], ""))


def _fetch(url: str, algorithm: str) -> tuple[dict[str, Any], list[Any]]:
    import jwt

    check_jwks_url(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310 (scheme checked)
            raw = response.read(_MAX_JWKS_BYTES + 1)
        if len(raw) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = json.loads(raw)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise ValueError("'keys' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # deep nesting: json recurses
        logger.error("the JWKS of the token issuer could not be read", extra={"code": "jwks_unavailable"})
        raise JwksUnavailable(
            "The token issuer's key set (JWKS) could not be fetched; tokens cannot be checked right now."
        ) from e
    wanted = _key_type(algorithm)
    by_kid: dict[str, Any] = {}
    anonymous: list[Any] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != wanted:
            continue  # other key types (oct above all) can never verify a token of our algorithm
        if entry.get("use", "sig") != "sig" or entry.get("alg", algorithm) != algorithm:
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=algorithm).key
        except (jwt.PyJWKError, ValueError, TypeError):
            continue
        kid = entry.get("kid")
        if isinstance(kid, str):
            by_kid[kid] = key
        else:
            anonymous.append(key)
    return by_kid, anonymous


def _cache_for(settings: Settings) -> _Cache:
    key = (str(settings.security.jwks_url), settings.security.jwt_algorithm)
    with _caches_lock:
        return _caches.setdefault(key, _Cache())


def _keys(settings: Settings, kid: str | None) -> list[Any]:
    cache = _cache_for(settings)
    lifetime = float(settings.security.jwks_cache_seconds)
    with cache.lock:
        now = time.monotonic()
        stale = not cache.fetched_at or now - cache.fetched_at > lifetime
        unknown = kid is not None and kid not in cache.keys
        if stale or (unknown and now - cache.fetched_at > _MIN_REFETCH_SECONDS):
            cache.keys, cache.anonymous = _fetch(
                str(settings.security.jwks_url), settings.security.jwt_algorithm
            )
            cache.fetched_at = now
        if kid is not None:
            return [cache.keys[kid]] if kid in cache.keys else []
        return [*cache.keys.values(), *cache.anonymous]


def verify_external(settings: Settings, token: str) -> dict[str, Any]:
    """Verify a token of the external issuer and return its claims.

    Raises:
        Unauthenticated: Wrong algorithm in the header, unknown key, bad signature, wrong issuer or
            audience, outside its validity window, or missing claims.
        JwksUnavailable: The JWKS cannot be fetched (answered 503: the caller is not at fault).
    """
    import jwt

    algorithm = settings.security.jwt_algorithm
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as e:
        raise Unauthenticated("The bearer token is not a JWT.", code="invalid_token") from e
    if header.get("alg") != algorithm:
        raise Unauthenticated(
            f"The bearer token must be signed with {algorithm}, the algorithm this server is configured for.",
            code="invalid_token",
        )
    kid = header.get("kid")
    keys = _keys(settings, kid if isinstance(kid, str) else None)
    if not keys:
        raise Unauthenticated(
            "The bearer token was signed with a key the issuer does not publish.", code="invalid_token"
        )
    last: Unauthenticated | None = None
    for key in keys:
        try:
            return decode_claims(settings, token, key, algorithm=algorithm, required=_REQUIRED)
        except Unauthenticated as e:
            if not isinstance(e.__cause__, jwt.InvalidSignatureError):
                raise
            last = e
    raise (
        last if last is not None else Unauthenticated("The bearer token is not valid.", code="invalid_token")
    )
