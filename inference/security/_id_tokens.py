"""OpenID Connect ID tokens, as far as JWT goes: reading a token's header, turning a provider's JWKS entries
into keys, and checking signature, issuer, audience and times (:mod:`inference.services._sso` runs the
flow, fetches the provider's documents and checks the nonce). PyJWT stays in :mod:`inference.security`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from inference.security._errors import SecurityError


class IdTokenInvalid(SecurityError):
    """An ID token that is not a JWT or does not verify; the message says which check failed (never a
    claim value)."""

    code = "invalid_id_token"


def unverified_header(id_token: str) -> Mapping[str, Any]:
    """The token's JOSE header, unverified (to pick the algorithm and key).

    Raises:
        IdTokenInvalid: Not a JWT.
    """
    import jwt

    try:
        return dict(jwt.get_unverified_header(id_token))
    except jwt.InvalidTokenError as e:
        raise IdTokenInvalid("the ID token is not a JWT") from e


def jwk_keys(entries: Iterable[Mapping[str, Any]], *, algorithm: str) -> list[Any]:
    """The keys of ``entries`` (JWKS members already chosen for type and algorithm) usable to verify
    ``algorithm``; entries PyJWT cannot read are skipped."""
    import jwt

    found = []
    for entry in entries:
        try:
            found.append(jwt.PyJWK(dict(entry), algorithm=algorithm).key)
        except (jwt.PyJWKError, ValueError, TypeError):
            continue
    return found


def verify_id_token(
    id_token: str,
    keys: Iterable[Any],
    *,
    algorithm: str,
    audience: str,
    issuer: str,
    leeway: int,
    required: Collection[str],
) -> dict[str, Any]:
    """The claims of ``id_token`` once one of ``keys`` verifies its signature (with ``algorithm`` only)
    and its issuer, audience, expiry and issue time hold.

    Raises:
        IdTokenInvalid: No key verifies it, or a check fails (the message names the check).
    """
    import jwt

    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token, key, algorithms=[algorithm], audience=audience, issuer=issuer,
                leeway=leeway, options={"require": list(required)},
            )  # fmt: skip
            return claims
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as e:
            raise IdTokenInvalid(f"the ID token does not verify ({type(e).__name__})") from e
    raise IdTokenInvalid("the ID token's signature does not verify")
