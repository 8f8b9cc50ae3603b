"""Errors of :mod:`inference.security`: one root, two children the API maps to 401 and 403."""

from __future__ import annotations

from inference.errors import InferenceError


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
    """No bearer token, or a token that is malformed, expired, not yet valid or not ours (HTTP 401)."""

    code = "unauthenticated"


class Forbidden(SecurityError):
    """A valid token whose role or facility does not allow the action (HTTP 403)."""

    code = "forbidden"


class SigningKeyError(SecurityError):
    """The signing key cannot be read (wrong passphrase, corrupted file); a server configuration problem."""

    code = "signing_key_unreadable"
