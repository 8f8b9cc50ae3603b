"""Errors of :mod:`inference.security`: one root, children the API maps to 401, 403 and 503."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.security._tokens import Principal


class SecurityError(InferenceError):
    """Root of every error raised by :mod:`inference.security`.

    Attributes:
        code: Stable machine code, used as the API error code.
        message: Full sentence for the caller; never holds a token, a key or patient data.
    """

    code = "security_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class Unauthenticated(SecurityError):
    """No bearer token, or a token that is malformed, expired, not yet valid or not ours (HTTP 401).

    Attributes:
        claimed: Who the token speaks for when it is genuine (signature, issuer, audience, role and
            subject verified) and was refused only because it expired or was revoked; None otherwise.
            The audit entry of the refusal names it; nothing else trusts it.
    """

    code = "unauthenticated"

    def __init__(self, message: str, *, code: str | None = None, claimed: Principal | None = None) -> None:
        super().__init__(message, code=code)
        self.claimed = claimed


class Forbidden(SecurityError):
    """A valid token whose role or facility does not allow the action (HTTP 403)."""

    code = "forbidden"


class SigningKeyError(SecurityError):
    """The signing key cannot be read (wrong passphrase, corrupted file); a server configuration problem."""

    code = "signing_key_unreadable"


class TokenCheckUnavailable(SecurityError):
    """A bearer token cannot be checked now: what it is checked against cannot be read (HTTP 503, with
    ``Retry-After``). Nothing is wrong with the token; the same request may succeed later.

    Attributes:
        retry_after_seconds: When to try again (the ``Retry-After`` header).
    """

    code = "token_check_unavailable"
    retry_after_seconds = 30

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_seconds: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        if retry_after_seconds is not None:
            self.retry_after_seconds = retry_after_seconds
