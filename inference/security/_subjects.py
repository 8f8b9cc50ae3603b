"""Who the audit trail names: one space of subjects, shared by every kind of actor, kept apart by kind.

A bearer token names its subject freely (``dxassist token issue --subject``, or an external issuer's
``sub``); web users are named by their account; the server's own actors have fixed names. On the trail,
and for personal grants (break-the-glass), a subject *is* the actor: a web user named like a PACS
token's subject, or a token whose subject reads like the CLI's ``cli:<user>``, would be the same actor.
So each kind has its own part of the space: web users' subjects are ``web:<username>``, and a token may
not name a subject of another kind's part.
"""

from __future__ import annotations

from typing import Final

WEB_PREFIX: Final = "web:"
"""A web user's subject: ``web:`` and the account's username."""

RESERVED_PREFIXES: Final[tuple[str, ...]] = (WEB_PREFIX, "cli:", "dimse:")
"""Subjects that start so belong to the server's own kinds of actor: web users, the command line
(``cli:<user>``), DICOM senders (``dimse:<AE title>``)."""

RESERVED_SUBJECTS: Final[frozenset[str]] = frozenset(
    {
        "dxassist-model-host",
        "dxassist-outbox",
        "dxassist-shadow",
        "dxassist-training-inputs",
        "unknown-user",
        "batch",
    }
)
"""The server's own actors' names: the model host, the outbox, shadow scoring, the keeper of training
inputs, the placeholder of a failed sign-in, batch scoring."""


def web_subject(username: str) -> str:
    """The subject of the web user ``username`` on the audit trail (``web:<username>``)."""
    return f"{WEB_PREFIX}{username}"


def reserved(subject: str) -> bool:
    """Whether ``subject`` names one of the server's own kinds of actor, which no token may speak for."""
    folded = subject.strip().casefold()
    return folded in RESERVED_SUBJECTS or folded.startswith(RESERVED_PREFIXES)
