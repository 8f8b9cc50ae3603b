"""Bearer tokens: EdDSA (Ed25519) JSON Web Tokens issued and verified by this server."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.security._errors import Unauthenticated
from inference.security._keys import signing_key
from inference.security._roles import ROLES

if TYPE_CHECKING:
    from inference.config import Settings

ALGORITHM = "EdDSA"
# Clocks of the machines of one hospital drift a little; more would widen the replay window.
LEEWAY_SECONDS = 30
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: who, in which role, bound to which facility (None: not bound)."""

    subject: str
    role: str
    facility: str | None = None


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
        ttl: Lifetime in seconds (default ``settings.token_ttl_seconds``).

    Returns:
        The compact JWT.

    Raises:
        ValueError: An unknown role, an empty subject or a non-positive lifetime.
    """
    import jwt

    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; accepted roles are {', '.join(sorted(ROLES))}.")
    if not subject.strip():
        raise ValueError("The token subject must not be empty.")
    lifetime = settings.token_ttl_seconds if ttl is None else int(ttl)
    if lifetime <= 0:
        raise ValueError("The token lifetime must be a positive number of seconds.")
    key = signing_key(settings)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "role": role,
        "facility": facility,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_token(settings: Settings, token: str) -> Principal:
    """Check a bearer token and return who it speaks for.

    Only EdDSA tokens signed by this server's key, for its issuer and audience, inside their validity
    window (``nbf`` ≤ now < ``exp``, with a 30-second leeway) and carrying a known role are accepted.

    Raises:
        Unauthenticated: Anything else; the message says which check failed, never the token.
    """
    import jwt

    key = signing_key(settings)
    try:
        claims = jwt.decode(
            token,
            key.public,
            algorithms=[ALGORITHM],
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": _REQUIRED_CLAIMS, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError as e:
        raise Unauthenticated("The bearer token has expired; ask for a new one.", code="token_expired") from e
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
            "The bearer token is not a valid token of this server (EdDSA-signed JWT).", code="invalid_token"
        ) from e
    role = claims.get("role")
    subject = claims.get("sub")
    facility = claims.get("facility")
    if not isinstance(role, str) or role not in ROLES:
        raise Unauthenticated("The bearer token carries no known role.", code="invalid_token")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("The bearer token carries no subject.", code="invalid_token")
    if facility is not None and not isinstance(facility, str):
        raise Unauthenticated("The bearer token's facility claim must be a string.", code="invalid_token")
    return Principal(subject=subject, role=role, facility=facility)
