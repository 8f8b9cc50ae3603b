"""Bearer tokens: EdDSA (Ed25519) JSON Web Tokens issued and verified by this server."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inference.security._errors import Unauthenticated
from inference.security._keys import signing_key
from inference.security._roles import ROLES
from inference.security._subjects import reserved

if TYPE_CHECKING:
    from inference.config import Settings

ALGORITHM = "EdDSA"
# Clocks of the machines of one hospital drift a little; more would widen the replay window.
LEEWAY_SECONDS = 30
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]
_NAME_MAX = 128
"""Longest subject or facility a token may carry (the audit trail's columns)."""
_RESERVED = (
    "The token subject names one of the server's own kinds of actor (web users are 'web:<username>', the "
    "command line 'cli:<user>', DICOM senders 'dimse:<AE title>', and its own services' names); a token "
    "may not speak for them on the audit trail. Choose another subject."
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: who, in which role, bound to which facility (None: not bound).

    A bearer token's caller also carries the token's id (``jti``) and issue time (``iat``), which a
    revocation names (``dxassist token revoke``); neither takes part in comparisons.
    """

    subject: str
    role: str
    facility: str | None = None
    token_id: str | None = field(default=None, compare=False)
    issued_at: datetime | None = field(default=None, compare=False)


def issue_token(
    settings: Settings,
    *,
    subject: str,
    role: str,
    facility: str | None = None,
    ttl: int | None = None,
) -> str:
    """Sign a bearer token.

    Args:
        settings: Gives the key directory, issuer, audience and default lifetime.
        subject: Who the token is for (a user or system name; not a patient).
        role: One of the roles of :class:`~inference.security.Role`.
        facility: The facility the caller belongs to, if any.
        ttl: Lifetime in seconds (default ``settings.security.token_ttl_seconds``).

    Returns:
        The compact JWT.

    Raises:
        ValueError: An unknown role, an empty subject, a subject of the server's own kinds of actor
            (``web:<user>``, ``cli:<user>``, ``dimse:<AE>``, ...: :mod:`inference.security._subjects`) or a
            non-positive lifetime.
    """
    import jwt

    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; accepted roles are {', '.join(sorted(ROLES))}.")
    if not subject.strip():
        raise ValueError("The token subject must not be empty.")
    # What verification accepts (principal_from_claims), so that no token is issued that would never work.
    if len(subject) > _NAME_MAX or not subject.isprintable():
        raise ValueError(f"The token subject must be at most {_NAME_MAX} printable characters.")
    if reserved(subject):
        raise ValueError(_RESERVED)
    if facility is not None and (not facility or len(facility) > _NAME_MAX or not facility.isprintable()):
        raise ValueError(f"The facility must be 1 to {_NAME_MAX} printable characters.")
    lifetime = settings.security.token_ttl_seconds if ttl is None else int(ttl)
    if lifetime <= 0:
        raise ValueError("The token lifetime must be a positive number of seconds.")
    longest = settings.security.token_max_ttl_seconds
    if lifetime > longest:
        raise ValueError(
            f"The token lifetime may be at most {longest} seconds (DXASSIST_TOKEN_MAX_TTL_SECONDS); a "
            "token that leaks stays valid that long unless revoked (`dxassist token revoke`)."
        )
    key = signing_key(settings)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.security.issuer,
        "aud": settings.security.audience,
        "sub": subject,
        "role": role,
        "facility": facility,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})


def decode_claims(
    settings: Settings, token: str, key: Any, *, algorithm: str, required: list[str]
) -> dict[str, Any]:
    """Verify ``token`` with ``key`` and only ``algorithm``; return its claims.

    Checks the signature, issuer, audience, ``exp`` and ``nbf`` (30-second leeway) and the required claims.

    Raises:
        Unauthenticated: Any check failed; the message says which, never the token.
    """
    import jwt

    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.security.audience,
            issuer=settings.security.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as e:
        raise Unauthenticated(
            "The bearer token has expired; ask for a new one.",
            code="token_expired",
            claimed=_expired_principal(settings, token, key, algorithm=algorithm, required=required),
        ) from e
    except jwt.ImmatureSignatureError as e:
        raise Unauthenticated("The bearer token is not valid yet.", code="invalid_token") from e
    except jwt.InvalidAudienceError as e:
        raise Unauthenticated(
            "The bearer token was issued for another audience.", code="invalid_token"
        ) from e
    except jwt.InvalidIssuerError as e:
        raise Unauthenticated("The bearer token was issued by another issuer.", code="invalid_token") from e
    except jwt.MissingRequiredClaimError as e:
        raise Unauthenticated(f"The bearer token lacks the '{e.claim}' claim.", code="invalid_token") from e
    except jwt.InvalidTokenError as e:
        # Covers bad signatures, other algorithms (including 'none'), and garbage.
        raise Unauthenticated(
            f"The bearer token is not a valid token of this server ({algorithm}-signed JWT).",
            code="invalid_token",
        ) from e


def _expired_principal(
    settings: Settings, token: str, key: Any, *, algorithm: str, required: list[str]
) -> Principal | None:
    """Who an expired token speaks for if every other check passes (its signature above all), else None.

    Only the audit entry of the refusal uses it: the token is refused either way. An attacker's token
    never gets this far (its signature fails), so its claims never reach the trail.
    """
    import jwt

    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.security.audience,
            issuer=settings.security.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": required, "verify_signature": True, "verify_exp": False},
        )
        return principal_from_claims(settings, claims)
    except (jwt.InvalidTokenError, Unauthenticated):
        return None


def _role(value: Any) -> str | None:
    # External issuers often send a list of roles: exactly one of ours must be in it.
    if isinstance(value, str):
        return value if value in ROLES else None
    if isinstance(value, list):
        known = {v for v in value if isinstance(v, str) and v in ROLES}
        return known.pop() if len(known) == 1 else None
    return None


def principal_from_claims(settings: Settings, claims: dict[str, Any]) -> Principal:
    """The caller a verified token speaks for (role and facility from the configured claim names).

    Raises:
        Unauthenticated: No known role (or several), no subject, a subject of the server's own kinds of
            actor (web users, the CLI, DICOM senders), or a facility that is not a string.
    """
    role = _role(claims.get(settings.security.role_claim))
    subject = claims.get("sub")
    facility = claims.get(settings.security.facility_claim)
    if role is None:
        raise Unauthenticated(
            "The bearer token carries no known role (or more than one).", code="invalid_token"
        )
    if not isinstance(subject, str) or not subject or len(subject) > _NAME_MAX:
        raise Unauthenticated("The bearer token carries no usable subject.", code="invalid_token")
    if reserved(subject):
        # A token speaking for a web user or the server's own actors would be that actor on the trail.
        raise Unauthenticated(_RESERVED, code="invalid_token")
    if facility is not None and (not isinstance(facility, str) or not 0 < len(facility) <= _NAME_MAX):
        raise Unauthenticated(
            "The bearer token's facility claim must be a short string.", code="invalid_token"
        )
    token_id = claims.get("jti")
    issued = claims.get("iat")
    return Principal(
        subject=subject,
        role=role,
        facility=facility,
        token_id=token_id if isinstance(token_id, str) and 0 < len(token_id) <= 64 else None,
        issued_at=(
            datetime.fromtimestamp(issued, UTC)
            if isinstance(issued, int | float) and not isinstance(issued, bool) and 0 <= issued < 2**37
            else None
        ),
    )


def own_token(settings: Settings, token: str) -> Principal:
    """Who a token this server's own key just signed speaks for (``dxassist token issue``), checked with
    that key whatever issuer the server trusts (``DXASSIST_JWKS_URL`` names another).

    Raises:
        Unauthenticated: The token is not one of this key's.
    """
    key = signing_key(settings)
    return principal_from_claims(
        settings, decode_claims(settings, token, key.public, algorithm=ALGORITHM, required=_REQUIRED_CLAIMS)
    )


def verify_token(settings: Settings, token: str) -> Principal:
    """Check a bearer token and return who it speaks for.

    Embedded mode (no ``jwks_url``): only EdDSA tokens signed by this server's key. Production mode
    (``DXASSIST_JWKS_URL``): tokens of the external issuer, signed with a key of its JWKS and the one
    algorithm of ``DXASSIST_JWT_ALGORITHM``. Both check issuer, audience and the validity window
    (``nbf`` ≤ now < ``exp``, with a 30-second leeway) and need a known role.

    Raises:
        Unauthenticated: Anything else; the message says which check failed, never the token.
    """
    if settings.security.jwks_url:
        from inference.security._jwks import verify_external

        claims = verify_external(settings, token)
    else:
        key = signing_key(settings)
        claims = decode_claims(settings, token, key.public, algorithm=ALGORITHM, required=_REQUIRED_CLAIMS)
    return principal_from_claims(settings, claims)
