"""``dxassist token``: issue a token, revoke or take back the revocation of tokens, list the revocations
(each audited)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from inference._common_cli import (
    CliError,
    _open_record,
    _settings,
    _terminal_user,
    format_table,
)

if TYPE_CHECKING:
    from inference.security import Principal


def _token_id(value: str) -> str:
    # As the token carries it: ours are hex, an identity provider's may hold dashes, dots, underscores.
    if not 0 < len(value) <= 64 or not value.isascii() or not value.isprintable() or " " in value:
        raise argparse.ArgumentTypeError(
            "a token id is 1 to 64 ASCII characters without spaces (from `token issue`, or the jti claim of "
            "the identity provider's token)"
        )
    return value


def _token_subject(value: str) -> str:
    if not value.strip() or len(value) > 128 or not value.isprintable():
        raise argparse.ArgumentTypeError("a subject is 1 to 128 printable characters")
    return value


def _cmd_token_issue(args: argparse.Namespace) -> int:
    settings = _settings()
    from inference.security import issue_token, own_token

    try:
        token = issue_token(
            settings, subject=args.subject, role=args.role, facility=args.facility, ttl=args.ttl
        )
    except ValueError as e:
        raise CliError(str(e), status=2) from e
    issued = own_token(settings, token)
    lifetime = settings.security.token_ttl_seconds if args.ttl is None else args.ttl
    # A credential handed out is on the trail before anyone can use it: who, for whom, which id.
    record = _open_record(settings)
    try:
        record.audit.append(
            subject=_terminal_user(), role="admin", facility=None, action="token:issue",
            resource_type="Token", resource_id=_issued_line(issued),
            patient_id=None, outcome="success", client=None,
        )  # fmt: skip
    finally:
        record.close()
    print(token)
    print(
        f"token id (jti) {issued.token_id} for {issued.subject} ({issued.role}), valid {lifetime} s; "
        f"revoke it with `dxassist token revoke --jti {issued.token_id}`.",
        file=sys.stderr,
    )
    return 0


def _issued_line(issued: Principal) -> str:
    """What a ``token:issue`` entry names (its resource id, 128 characters): the token's id, role and
    facility first (what a security officer sorts by), then as much of the subject as fits."""
    head = f"jti:{issued.token_id} role:{issued.role} facility:{issued.facility or '-'} sub:"
    return (head + issued.subject)[:128]


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from inference.record import AuditIn

    settings = _settings()
    if (args.jti is None) == (args.subject is None):
        raise CliError("Give --jti ID (one token) or --subject NAME (every token of it issued so far).", 2)
    reason = args.reason.strip() if args.reason else None
    if reason is not None and (len(reason) > 500 or not reason.isprintable()):
        raise CliError("--reason: at most 500 printable characters.", status=2)
    from inference.services._revocations import CLOCK_SKEW

    now = datetime.now(UTC)
    record = _open_record(settings)
    try:
        record.tokens.revoke(
            jti=args.jti,
            subject=args.subject,
            now=now,
            reason=reason,
            audit=AuditIn(subject=_terminal_user(), role="admin", facility=None, action="token:revoke"),
        )
    finally:
        record.close()
    what = (
        f"token {args.jti}"
        if args.jti
        else f"every token of {args.subject} issued until now (and in the next {CLOCK_SKEW.seconds} s: "
        "issuers' clocks may be that far ahead); a new token for it works if issued from "
        # The first whole second after the cut-off: a token's iat is in whole seconds.
        f"{(now + CLOCK_SKEW).replace(microsecond=0) + timedelta(seconds=1):%Y-%m-%dT%H:%M:%SZ} on"
    )
    print(f"revoked {what}; servers refuse it within seconds (audited token:revoke).")
    return 0


def _cmd_token_unrevoke(args: argparse.Namespace) -> int:
    from inference.record import AuditIn

    if (args.jti is None) == (args.subject is None):
        raise CliError("Give --jti ID or --subject NAME (as `token revocations` lists it).", 2)
    record = _open_record(_settings())
    try:
        taken_back = record.tokens.unrevoke(
            jti=args.jti,
            subject=args.subject,
            audit=AuditIn(subject=_terminal_user(), role="admin", facility=None, action="token:unrevoke"),
        )
    finally:
        record.close()
    what = f"token {args.jti}" if args.jti else f"the tokens of {args.subject}"
    if not taken_back:
        raise CliError(f"No revocation of {what} to take back (`token revocations` lists them).", 1)
    print(
        f"took back {taken_back} revocation(s) of {what}; servers accept it within seconds "
        "(audited token:unrevoke)."
    )
    return 0


def _cmd_token_revocations(args: argparse.Namespace) -> int:
    record = _open_record(_settings())
    try:
        rows = record.tokens.listing()
    finally:
        record.close()
    print(
        format_table(
            ["revoked at", "token id", "subject (issued until)", "by", "reason"],
            [
                [
                    r.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    r.jti or "-",
                    f"{r.subject} ({r.issued_until:%Y-%m-%dT%H:%M:%SZ})"
                    if r.subject and r.issued_until
                    else "-",
                    r.revoked_by,
                    r.reason or "",
                ]
                for r in rows
            ],
        )
    )
    return 0
