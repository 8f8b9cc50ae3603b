"""Who is looking at a page: the session cookie, the permission check and the CSRF check.

The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and, outside development, ``Secure`` with the
``__Host-`` prefix (the browser then refuses it from a sub-domain or over plain HTTP). Every state-changing
form carries the session's CSRF token (synchronizer token); the sign-in form, which has no session yet,
carries a token that must match a short-lived cookie of its own (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Form, Request

from inference.config import Settings
from inference.security import PATIENT_DATA, PERMISSIONS, Forbidden, Unauthenticated, allowed
from inference.services import Actor, Context, WebSession, audit_denial, resume_session

# The sign-in form's cookie in development; see signin_cookie_name.
SIGNIN_CSRF_COOKIE: Final = "dxassist_signin"


class SignInNeeded(Unauthenticated):
    """No session, or one that expired: a page answers with the sign-in form."""

    code = "sign_in_needed"


class CsrfRefused(Forbidden):
    """A form came without the CSRF token of its session (HTTP 403)."""

    code = "csrf_refused"


# The dependencies here are ``async def`` (nothing in them waits): FastAPI would run a plain ``def`` one
# in a worker thread, a hop per dependency and request.
async def context(request: Request) -> Context:
    """The engines of the API process the pages are mounted in."""
    ctx: Context = request.app.state.parent.state.ctx
    return ctx


async def settings(request: Request) -> Settings:
    """The API process's settings."""
    value: Settings = request.app.state.parent.state.settings
    return value


ContextDep = Annotated[Context, Depends(context)]
SettingsDep = Annotated[Settings, Depends(settings)]


def secure_cookies(settings: Settings) -> bool:
    """Cookies are ``Secure`` everywhere but in development (plain HTTP on loopback)."""
    return settings.environment != "development"


def session_cookie_name(settings: Settings) -> str:
    """``__Host-dxassist_session`` when cookies are Secure, ``dxassist_session`` in development."""
    return "__Host-dxassist_session" if secure_cookies(settings) else "dxassist_session"


def signin_cookie_name(settings: Settings) -> str:
    """The sign-in form's double-submit cookie: ``__Host-`` prefixed when cookies are Secure, so that a
    sibling host of the hospital's domain cannot plant one and sign a browser in to its own account."""
    return f"__Host-{SIGNIN_CSRF_COOKIE}" if secure_cookies(settings) else SIGNIN_CSRF_COOKIE


def cookie_options(settings: Settings) -> dict[str, Any]:
    """The attributes every cookie of the pages is set with."""
    return {"httponly": True, "samesite": "strict", "secure": secure_cookies(settings), "path": "/"}


def sso_cookie_name(settings: Settings) -> str:
    """The single sign-on flow's cookie: ``__Host-`` prefixed when cookies are Secure."""
    return "__Host-dxassist_sso" if secure_cookies(settings) else "dxassist_sso"


def sso_cookie_options(settings: Settings) -> dict[str, Any]:
    """The flow cookie's attributes: ``SameSite=Lax``, the one exception to Strict, because the provider
    sends the browser back with a top-level navigation from its own site, which carries Lax cookies only."""
    return {"httponly": True, "samesite": "lax", "secure": secure_cookies(settings), "path": "/"}


@dataclass(frozen=True, slots=True)
class Reader:
    """The signed-in reader of a page: the actor for the services, the session for CSRF and sign-out."""

    actor: Actor
    session: WebSession
    token: str


async def current_reader(request: Request, ctx: ContextDep, settings: SettingsDep) -> Reader:
    """The reader of the session cookie; the request counts as the reader's activity (idle clock).

    Raises:
        SignInNeeded: No cookie, or a session that is unknown, idle too long or expired.
    """
    return await _reader(request, ctx, settings, activity=True)


async def unattended_reader(request: Request, ctx: ContextDep, settings: SettingsDep) -> Reader:
    """Like :func:`current_reader`, for a request a page makes by itself (the worklist's refresh): the
    session's idle clock keeps running, so a worklist left open on a workstation still signs out.

    Raises:
        SignInNeeded: No cookie, or a session that is unknown, idle too long or expired.
    """
    return await _reader(request, ctx, settings, activity=False)


async def _reader(request: Request, ctx: Context, settings: Settings, *, activity: bool) -> Reader:
    token = request.cookies.get(session_cookie_name(settings), "")
    session = await resume_session(ctx=ctx, token=token, activity=activity) if token else None
    if session is None:
        raise SignInNeeded("Sign in to see this page.")
    actor = Actor(principal=session.principal, client=request.client.host if request.client else None)
    return Reader(actor=actor, session=session, token=token)


ReaderDep = Annotated[Reader, Depends(current_reader)]


def page_permission(permission: str, *, activity: bool = True) -> Any:
    """A dependency: the signed-in reader, if the role holds ``permission`` (denials audited, 403).

    ``activity=False``: a request the page makes by itself, which does not move the idle clock.
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"Permission {permission!r} is not in the permission table; add it there first.")
    who = Depends(current_reader if activity else unattended_reader)

    # ``who`` is a local, which a string annotation (PEP 563) could not name: it goes in the default.
    async def dependency(ctx: ContextDep, reader: Reader = who) -> Reader:
        role = reader.actor.principal.role
        if not allowed(role, permission):
            if permission in PATIENT_DATA:
                await audit_denial(ctx, reader.actor, action=permission)
            raise Forbidden(f"The role '{role}' does not allow '{permission}'.")
        return reader

    # Read by the pages' own route table test, like deps.require's.
    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def check_csrf(expected: str, sent: str | None) -> None:
    """Compare a form's CSRF token with the expected one in constant time.

    Raises:
        CsrfRefused: Missing or different.
    """
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("The form was refused: its security token is missing or stale; reload the page.")


def form_permission(permission: str | None) -> Any:
    """Like :func:`page_permission`, for a form post: the CSRF token must match the session's too.

    ``None``: any signed-in reader (sign-out).
    """
    inner = page_permission(permission) if permission is not None else Depends(current_reader)

    # ``inner`` is a local, which a string annotation (PEP 563) could not name: it goes in the default.
    async def dependency(
        csrf_token: Annotated[str | None, Form(max_length=128)] = None, reader: Reader = inner
    ) -> Reader:
        check_csrf(reader.session.csrf, csrf_token)
        return reader

    if permission is not None:
        dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def new_signin_token() -> str:
    """A fresh token for the sign-in form and its cookie."""
    return secrets.token_urlsafe(32)
