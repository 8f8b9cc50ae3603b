"""The web pages' own services: local accounts, sign-in with lockout, cookie sessions, the reading
worklist and the reader's actions (a verdict per finding, mark as read).

A page is one more client of the services: the same roles, facility scope and audit trail as the API
(the principal of a session is built from its account exactly as a bearer token's would be).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from inference.explain import choose_language
from inference.record import (
    Accounts,
    FeedbackEntry,
    NotFound,
    PriorStudies,
    RecentTriageResults,
    SessionRow,
    Verdict,
    ViewedPatient,
    WorklistItem,
)
from inference.security import ROLES, WEB_PREFIX, Principal, Role, Unauthenticated, scope_for, web_subject
from inference.security._passwords import (
    check_password_policy,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from inference.services import _sso
from inference.services._access import UNSEEN_RESULT, audit, audit_entry, served, written
from inference.services._context import Actor, Context, db
from inference.services._deliveries import with_build_warning
from inference.services._results import ResultView
from inference.services._sso import SsoRefused, SsoStart, SsoUnavailable

if TYPE_CHECKING:
    from inference.record import Record

logger = logging.getLogger(__name__)

_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
# The session's idle clock is written at most this often: a page that refreshes itself every 30 s would
# otherwise write to the database on every refresh.
_TOUCH_EVERY = timedelta(seconds=60)
# The stored "hash" of an account without a password: no password verifies against it (not a scrypt hash).
SSO_ONLY = "!sso-only"
# The username a refused sign-in that counts against no account counts its failure on: no account has it
# (check_username), so the count's UPDATE changes no row.
_NO_ACCOUNT = ""


class SignInRefused(Unauthenticated):
    """Wrong username or password, a disabled account, or a locked one (HTTP 401 on the pages)."""

    code = "sign_in_refused"


class AccountLocked(SignInRefused):
    """Too many failed sign-ins in a row; the account opens again at ``until``."""

    code = "account_locked"

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser.

    Attributes:
        token: The cookie value (only known right after sign-in; empty when read back).
        principal: Who the session speaks for.
        csrf: The token every form of this session must send back.
        expires: The absolute expiry.
    """

    token: str
    principal: Principal
    csrf: str
    expires: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _id_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def check_username(username: str) -> str:
    """Refuse usernames that would be confusing in the audit trail.

    Raises:
        ValueError: Empty, longer than 64 characters, or with characters other than letters, digits and
            ``. _ - @``.
    """
    if not 1 <= len(username) <= 64 or not set(username) <= _USERNAME_CHARS:
        raise ValueError("A username has 1 to 64 characters: letters, digits, '.', '_', '-' or '@'.")
    return username


# -- accounts (the ``dxassist user`` commands) -------------------------------------------------------


def add_user(
    record: Record, *, username: str, password: str | None, role: str, facility: str | None,
    sso_issuer: str | None = None, sso_subject: str | None = None,
) -> None:  # fmt: skip
    """Create a local account; ``password=None``: one without a password, which signs in through single
    sign-on only (``dxassist user add --sso-only``). ``sso_subject``: the provider's ``sub`` of the person,
    bound from the start (``--sso-subject``; with ``sso_issuer``, the configured provider), so that only
    this person's ID tokens sign in to it, also at the first single sign-on.

    Raises:
        ValueError: Bad username, unknown role, a password the policy refuses, a subject without an
            issuer or longer than 255 characters.
        Conflict: The username is taken, or another account is bound to this subject.
    """
    check_username(username)
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; accepted roles are {', '.join(sorted(ROLES))}.")
    if facility is not None and not 0 < len(facility) <= 128:
        raise ValueError("A facility name has 1 to 128 characters.")
    sso = None
    if sso_subject is not None:
        if sso_issuer is None:
            raise ValueError(
                "An identity-provider subject needs single sign-on configured (DXASSIST_UI_OIDC_ISSUER)."
            )
        if not 0 < len(sso_subject) <= 255 or not sso_subject.isascii() or not sso_subject.isprintable():
            raise ValueError("An identity-provider subject has 1 to 255 printable ASCII characters.")
        sso = (sso_issuer, sso_subject)
    if password is not None:
        check_password_policy(password)
    stored = hash_password(password) if password is not None else SSO_ONLY
    Accounts(record).add(
        username=username, password_hash=stored, role=role, facility=facility, now=_now(), sso=sso
    )


def list_users(record: Record) -> list[dict[str, Any]]:
    """Every account: username, role, facility, state, last sign-in, whether it signs in through single
    sign-on only (``sso_only``) and whether it is bound to a provider subject (``sso_bound``); never the
    hash, never the subject itself."""
    now = _now()
    return [
        {
            "username": a.username,
            "role": a.role,
            "facility": a.facility,
            "state": "disabled"
            if a.disabled
            else ("locked" if a.locked_until is not None and a.locked_until > now else "active"),
            "last_sign_in": a.last_sign_in,
            "sso_only": a.password_hash == SSO_ONLY,
            "sso_bound": a.sso_subject is not None,
        }
        for a in Accounts(record).list()
    ]


def unbind_user(record: Record, *, username: str) -> bool:
    """Forget the provider subject an account is bound to: its next single sign-on binds it again (when
    the person's account at the provider really changed). The caller audits it.

    Returns:
        Whether the account was bound.

    Raises:
        NotFound: No such account.
    """
    return Accounts(record).unbind_sso(username=username)


def disable_user(record: Record, *, username: str) -> None:
    """Disable an account and end its sessions.

    Raises:
        NotFound: No such account.
    """
    Accounts(record).set_disabled(username=username, disabled=True)


# -- sign-in and sessions ----------------------------------------------------------------------------


def _principal(username: str, role: str, facility: str | None) -> Principal:
    # ``web:<username>``: a web user is never the same actor as a token of the same name (a PACS's).
    return Principal(subject=web_subject(username), role=role, facility=facility)


async def sign_in(
    *, ctx: Context, username: str, password: str, client: str | None, replaces: str = ""
) -> WebSession:
    """Check a username and password; open a session.

    Every attempt is audited (``ui:sign_in``), failures too. After ``ui_lockout_attempts`` failures in a
    row the account is locked for ``ui_lockout_minutes``; a locked account refuses even the right password.
    ``replaces``: the session cookie the browser already had, if any; a successful sign-in ends that
    session (audited as its reader's ``ui:sign_out``), a refused one leaves it open.

    Raises:
        SignInRefused: Unknown user, wrong password or disabled account (one message for all three, so
            the page does not tell which usernames exist).
        AccountLocked: The account is locked (a ``SignInRefused``: the pages answer it like the others,
            only the audit trail says ``locked``).
    """
    settings = ctx.settings
    accounts = Accounts(ctx.record)
    # A NUL can be in no username, and PostgreSQL text cannot hold one: refused like an unknown user.
    known = username and len(username) <= 64 and "\x00" not in username
    account = await db(accounts.get, username=username) if known else None
    now = _now()
    # An account without a password costs a hash like the others: the timing does not tell it apart.
    usable = account is not None and account.password_hash != SSO_ONLY
    stored = account.password_hash if account is not None and usable else dummy_hash()
    matches = await ctx.workers.run(verify_password, password, stored)
    who = (
        Actor(principal=_principal(account.username, account.role, account.facility), client=client)
        if account is not None
        else Actor(principal=Principal(subject="unknown-user", role="none"), client=client)
    )
    locked = account is not None and account.locked_until is not None and account.locked_until > now
    if account is None or not usable or not matches or account.disabled or locked:
        # Every refusal does the same work whatever its reason, so that neither the page nor the time it
        # takes tells which usernames exist: the password check above, one failure counted (on the
        # account when it is open to guesses, else on no row: an UPDATE of the same shape), one audit
        # entry. Only the trail tells the reasons apart.
        counted = account is not None and not account.disabled and not locked
        locked_until = await db(
            accounts.register_failure,
            username=account.username if counted and account is not None else _NO_ACCOUNT,
            max_attempts=settings.ui.ui_lockout_attempts,
            lock_until=now + timedelta(minutes=settings.ui.ui_lockout_minutes),
        )
        until = account.locked_until if locked and account is not None else locked_until
        await audit(
            ctx, who, action="ui:sign_in", outcome="failure" if until is None else "locked",
            resource_type="Account",
        )  # fmt: skip
        if until is not None:
            raise AccountLocked(
                "This account is locked after repeated failed sign-ins; try again later or ask an "
                "administrator.",
                until=until,
            )
        raise SignInRefused("The username or password is not correct, or the account is disabled.")
    new_hash = await ctx.workers.run(hash_password, password) if needs_rehash(account.password_hash) else None
    return await _open_session(ctx, who, now=now, new_hash=new_hash, method=None, replaces=replaces)


async def _open_session(
    ctx: Context, who: Actor, *, now: datetime, new_hash: str | None, method: str | None, replaces: str,
    id_token_hint: str | None = None,
) -> WebSession:  # fmt: skip
    """The session of an account whose holder was just proven (password or single sign-on), in place of
    the browser's session ``replaces`` (a cookie value, or empty)."""
    await _end_replaced(ctx, replaces, client=who.client, now=now)
    accounts = Accounts(ctx.record)
    username = who.principal.subject.removeprefix(WEB_PREFIX)
    await db(accounts.register_success, username=username, now=now, new_hash=new_hash)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=ctx.settings.ui.ui_session_max_hours)
    await db(
        accounts.open_session, id_hash=_id_hash(token), username=username, csrf=csrf, now=now,
        expires=expires, id_token_hint=id_token_hint,
    )  # fmt: skip
    await audit(
        ctx, who, action="ui:sign_in", outcome="success", resource_type="Account", resource_id=method
    )  # fmt: skip
    return WebSession(token=token, principal=who.principal, csrf=csrf, expires=expires)


async def _end_replaced(ctx: Context, token: str, *, client: str | None, now: datetime) -> None:
    """End the session a browser had open when it signs in again: on a workstation handed to the next
    reader without a sign-out, the former reader's session must not stay usable until its idle timeout.
    Audited as that session's own reader's ``ui:sign_out``; ended here, not at the identity provider."""
    if not token or len(token) > 128:
        return
    accounts = Accounts(ctx.record)
    id_hash = _id_hash(token)
    row = await db(accounts.session, id_hash=id_hash)
    if row is None:
        return
    await db(accounts.close_session, id_hash=id_hash)
    if _ended(row, now=now, idle_minutes=ctx.settings.ui.ui_session_idle_minutes):
        return  # over already, not signed out now
    account = row.account
    who = Actor(principal=_principal(account.username, account.role, account.facility), client=client)
    await audit(ctx, who, action="ui:sign_out", outcome="success", resource_type="Account")


def _ended(row: SessionRow, *, now: datetime, idle_minutes: int) -> bool:
    """Whether a stored session no longer signs anyone in: its account disabled, idle too long, expired."""
    return (
        row.account.disabled or now >= row.expires or now - row.last_seen >= timedelta(minutes=idle_minutes)
    )


# -- single sign-on (OpenID Connect) -----------------------------------------------------------------

# The audit entries of a single sign-on name this as their resource (``Account`` / ``oidc``), where a
# password sign-in names the ``Account`` alone.
SSO_METHOD = "oidc"
# An account bound to the provider's subject at its first single sign-on (trust on first use); the
# administrator's binding and unbinding at the terminal are ``user:sso_bind`` and ``user:sso_unbind``.
SSO_BIND = "ui:sso_bind"


async def _audit_sso_failure(ctx: Context, who: Actor) -> None:
    await audit(
        ctx, who, action="ui:sign_in", outcome="failure", resource_type="Account", resource_id=SSO_METHOD
    )


async def start_sso(*, ctx: Context, redirect_uri: str) -> SsoStart:
    """Begin a single sign-on: the provider's authorization URL and the flow's cookie value.

    Raises:
        SsoUnavailable: Single sign-on is configured but the provider's discovery document cannot be read.
    """
    return await _sso.start(ctx.settings, redirect_uri=redirect_uri)


async def finish_sso(
    *, ctx: Context, params: Mapping[str, str], flow: str, redirect_uri: str, client: str | None,
    replaces: str = "",
) -> WebSession:  # fmt: skip
    """Check the provider's answer and open a session for the active local account it names.

    The account (same username as the provider's username claim) gives the role and facility, as for a
    password sign-in. It must be bound to the ID token's ``(iss, sub)``: an unbound account is bound at
    this first single sign-on (audited as ``ui:sso_bind``); a token of another subject under the same
    username (recycled or renamed at the provider), or of a subject bound to another account, is refused
    (audited under the placeholder subject). The password lockout does not apply (it guards the password)
    and a success resets it. Every attempt is audited (``ui:sign_in``, resource ``Account`` / ``oidc``);
    until the provider vouched for the account's person, under the same placeholder subject as an unknown
    username. ``replaces``: the browser's session cookie, ended by a success as in :func:`sign_in`.

    Raises:
        SsoRefused: A stale or forged flow, a provider's error or refusal, an ID token that does not
            verify, an unknown or disabled account, an account bound to another subject (one message
            for all).
        SsoUnavailable: The provider cannot be reached (audited as a failure too).
    """
    nobody = Actor(principal=Principal(subject="unknown-user", role="none"), client=client)
    try:
        identity = await _sso.finish(ctx.settings, params=params, flow=flow, redirect_uri=redirect_uri)
    except (SsoRefused, SsoUnavailable):
        await _audit_sso_failure(ctx, nobody)
        raise
    username = identity.username
    accounts = Accounts(ctx.record)
    known = len(username) <= 64 and set(username) <= _USERNAME_CHARS
    account = await db(accounts.get, username=username) if known else None
    if account is None or account.disabled:
        who = (
            nobody
            if account is None
            else Actor(principal=_principal(account.username, account.role, account.facility), client=client)
        )
        await _audit_sso_failure(ctx, who)
        raise SsoRefused("The identity provider vouched for no active account of these pages.")
    who = Actor(principal=_principal(account.username, account.role, account.facility), client=client)
    pair = (identity.issuer, identity.subject)
    if account.sso_subject is None:
        # Trust on first use: the first single sign-on binds the account to the person it proved.
        if not await db(accounts.bind_sso, username=username, issuer=pair[0], subject=pair[1]):
            _mismatch()
            await _audit_sso_failure(ctx, nobody)
            raise SsoRefused("The identity provider vouched for no active account of these pages.")
        await audit(
            ctx, who, action=SSO_BIND, outcome="success", resource_type="Account", resource_id=username
        )
    elif (account.sso_issuer, account.sso_subject) != pair:
        # Another person under the same username (recycled or renamed at the provider), or a binding made
        # with the hospital's former provider (DXASSIST_UI_OIDC_ISSUER changed): the administrator unbinds.
        _mismatch(issuer=account.sso_issuer != pair[0])
        await _audit_sso_failure(ctx, nobody)
        raise SsoRefused("The identity provider vouched for no active account of these pages.")
    return await _open_session(
        ctx, who, now=_now(), new_hash=None, method=SSO_METHOD, replaces=replaces,
        id_token_hint=identity.id_token,
    )  # fmt: skip


def _mismatch(*, issuer: bool = False) -> None:
    if issuer:
        logger.warning(
            "a single sign-on was refused: the account is bound at another identity provider (issuer); "
            "after a change of DXASSIST_UI_OIDC_ISSUER, `dxassist user sso-unbind` lets its next single "
            "sign-on bind it to the new one",
            extra={"code": "sso_refused", "reason": "issuer"},
        )
        return
    logger.warning(
        "a single sign-on was refused: the account is bound to another subject of the provider",
        extra={"code": "sso_refused", "reason": "subject"},
    )


async def resume_session(*, ctx: Context, token: str, activity: bool = True) -> WebSession | None:
    """The session a cookie names, or None when it is unknown, idle too long, past its absolute expiry,
    or its account was disabled (an expired session is deleted).

    ``activity``: the request is the reader's (it moves the idle clock). False for one a page makes by
    itself (the worklist's refresh every 30 s): it must not keep the session of a workstation nobody
    is at open past ``ui_session_idle_minutes``.
    """
    if not token or len(token) > 128:
        return None
    accounts = Accounts(ctx.record)
    id_hash = _id_hash(token)
    row = await db(accounts.session, id_hash=id_hash)
    if row is None:
        return None
    now = _now()
    if _ended(row, now=now, idle_minutes=ctx.settings.ui.ui_session_idle_minutes):
        await db(accounts.close_session, id_hash=id_hash)
        return None
    if activity and now - row.last_seen >= _TOUCH_EVERY:
        await db(accounts.touch, id_hash=id_hash, now=now)
    account = row.account
    return WebSession(
        token="", principal=_principal(account.username, account.role, account.facility), csrf=row.csrf,
        expires=row.expires,
    )  # fmt: skip


async def sign_out(*, ctx: Context, actor: Actor, token: str, post_logout_redirect_uri: str) -> str | None:
    """End a session (audited as ``ui:sign_out``).

    A session opened by single sign-on is ended at the identity provider too when its discovery document
    names an ``end_session_endpoint`` (OpenID Connect RP-Initiated Logout 1.0): the local session is gone
    first, then the browser goes there with the session's ID token as ``id_token_hint``.

    Args:
        ctx: The services' context.
        actor: Who signs out.
        token: The session cookie's value.
        post_logout_redirect_uri: Where the provider sends the browser back (the sign-in page; it must be
            registered at the provider).

    Returns:
        The provider's end-session URL to send the browser to, or None: the sign-out was local only (a
        password session, a provider without the endpoint or that cannot be read now).
    """
    hint = await db(Accounts(ctx.record).close_session, id_hash=_id_hash(token))
    await audit(ctx, actor, action="ui:sign_out", outcome="success", resource_type="Account")
    if hint is None or not ctx.settings.ui.ui_oidc:
        return None
    return await _sso.end_session_url(
        ctx.settings, id_token=hint, post_logout_redirect_uri=post_logout_redirect_uri
    )


# -- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingList:
    """A reader's worklist as the page shows it.

    Attributes:
        items: The open results listed, most urgent first.
        more: Whether more open results (that the filters accept) wait than are listed.
    """

    items: list[WorklistItem]
    more: bool


async def reading_worklist(
    *,
    ctx: Context,
    actor: Actor,
    limit: int = 200,
    priority: str | None = None,
    ai_status: str | None = None,
) -> ReadingList:
    """Open results of the reader's scope, most urgent first, with the starvation guard applied.

    A routine result that has waited longer than ``worklist_max_wait_minutes`` ranks with the urgent
    ones and its item says ``escalated``. The list is read and audited in one transaction, for the items
    listed only: an entry that cannot be written serves nothing.

    Args:
        ctx: The services' context.
        actor: The reader.
        limit: At most this many items (1 to 500).
        priority: The page's priority filter (``critical``, ``urgent``, ``routine``), or None.
        ai_status: The page's AI status filter (``analysed``, ``not_assessable``, ``failed``), or None.
            The filters choose before the limit, in the query: a filter finds its items however many
            others rank above them.

    Raises:
        RecordError: The record failed, or the audit entries could not be written; nothing is listed.
    """
    principal = actor.principal
    wait = ctx.settings.ui.worklist_max_wait_minutes
    items, more = await db(
        ctx.record.results.read_worklist_page,
        scope=scope_for(principal),
        audit=audit_entry(actor, action="worklist:read"),
        limit=limit,
        facility=None if principal.role == Role.ADMIN else principal.facility,
        escalate_before=_now() - timedelta(minutes=wait) if wait > 0 else None,
        priority=priority,
        ai_status=ai_status,
    )
    return ReadingList(items=items, more=more)


async def record_verdicts(*, ctx: Context, actor: Actor, result_id: str, verdicts: Sequence[Verdict]) -> None:
    """Store a reader's verdicts without closing the result (the viewer's Agree / Disagree buttons).

    Raises:
        NotFound: No result has this id.
        Forbidden: Another facility's result (sharing consent and break-the-glass open reading only).
        InvalidFeedback: A verdict names a finding the result does not have.
        RecordError: The audit entry could not be written; nothing was stored.
    """
    # The check, the verdicts and their entry in one transaction: a consent withdrawn or a grant ended
    # meanwhile is wholly before or wholly after them; an entry refused leaves nothing stored.
    written(
        actor,
        await db(
            ctx.record.feedback.save_checked, result_id=result_id, reader=actor.principal.subject,
            verdicts=verdicts, close=False, scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="feedback:write"),
        ),
    )  # fmt: skip


async def mark_read(*, ctx: Context, actor: Actor, result_id: str) -> None:
    """Close a result: it leaves the worklist (audited as ``feedback:write``).

    Raises:
        NotFound: No result has this id.
        Forbidden: Another facility's result (sharing consent and break-the-glass open reading only).
        RecordError: The audit entry could not be written; the result stays open.
    """
    written(
        actor,
        await db(
            ctx.record.feedback.close_checked, result_id=result_id, scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="feedback:write"),
        ),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class OtherVerdict:
    """Another reader's newest verdict on one finding of a result, as the viewer lists it.

    Attributes:
        code: The finding's code (``deterioration`` for vital signs).
        reader: The reader (the subject their verdict was recorded under).
        verdict: ``agree``, ``disagree`` or ``correct``.
        correct_label: With ``correct``: whether the finding is present.
        at: When the verdict was given.
    """

    code: str
    reader: str
    verdict: str
    correct_label: bool | None
    at: datetime


def other_verdicts(entries: Sequence[FeedbackEntry]) -> tuple[OtherVerdict, ...]:
    """Each other reader's newest verdict per finding (entries oldest first), oldest reader first."""
    newest: dict[tuple[str, str], OtherVerdict] = {}
    for entry in entries:
        for v in entry.verdicts:
            newest[(entry.reader, v.code)] = OtherVerdict(
                code=v.code,
                reader=entry.reader,
                verdict=v.verdict,
                correct_label=v.correct_label,
                at=entry.created,
            )
    return tuple(sorted(newest.values(), key=lambda o: o.at))


@dataclass(frozen=True, slots=True)
class ViewedResult:
    """A result as the viewer page shows it to one reader.

    Attributes:
        shown: The result, with the rationale in the reader's language.
        verdicts: The verdicts this reader already gave on it, by finding code (newest wins).
        priors: The patient's prior studies this reader may read, newest first (None for vital signs).
        study_date: The date of the result's own study (None for vital signs, or a study without one).
        patient: The patient's age and sex as this reader may read them (never logged).
        triage: The patient's recent vital-signs triage results this reader may read, newest first (None
            for vital signs).
    """

    shown: ResultView
    verdicts: dict[str, str]
    priors: PriorStudies | None = None
    study_date: str | None = None
    patient: ViewedPatient | None = None
    triage: RecentTriageResults | None = None
    others: tuple[OtherVerdict, ...] = ()


async def viewed_result(
    *, ctx: Context, actor: Actor, result_id: str, accept_language: str | None
) -> ViewedResult:
    """One result for the viewer, as :func:`~inference.services.get_result` reads it, with the verdicts
    the reader already gave on it and, for a chest radiograph, the patient's prior studies the reader may
    read (the worklist's access rules; at most ``PRIORS_SHOWN``): all read in one transaction with their
    audit entries, the result's and one per prior shown.

    Raises:
        NotFound: No result has this id, or none that the reader may read (one answer).
        RecordError: The record failed, or the audit entries could not be written; nothing is shown.
    """
    read = served(
        actor,
        await db(
            ctx.record.priors.read_with_priors,
            result_id=result_id,
            reader=actor.principal.subject,
            scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="results:read"),
        ),
        missing=UNSEEN_RESULT,
    )
    verdicts: dict[str, str] = {}
    for entry in read.feedback:
        for verdict in entry.verdicts:
            verdicts[verdict.code] = verdict.verdict
    return ViewedResult(
        shown=ResultView(with_build_warning(read.result), choose_language(accept_language)),
        verdicts=verdicts,
        priors=read.priors,
        study_date=read.study_date,
        patient=read.patient,
        triage=read.triage,
        others=other_verdicts(read.others),
    )


__all__ = [
    "AccountLocked",
    "NotFound",
    "OtherVerdict",
    "ReadingList",
    "SignInRefused",
    "SsoRefused",
    "SsoStart",
    "SsoUnavailable",
    "ViewedResult",
    "WebSession",
    "add_user",
    "check_username",
    "disable_user",
    "finish_sso",
    "list_users",
    "mark_read",
    "reading_worklist",
    "record_verdicts",
    "resume_session",
    "sign_in",
    "sign_out",
    "start_sso",
    "unbind_user",
    "viewed_result",
]
