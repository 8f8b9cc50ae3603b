"""Revoked bearer tokens: one token by its id (``jti``), or every token of a subject issued up to a moment.

A leaked token of this server's own key used to stay valid until it expired (a PACS's token may live for
months), or until the key was replaced, which revokes every token at once. The server reads this table
every few seconds (:class:`inference.services.RevocationList`) and refuses what it names. Each
revocation is written with its audit entry in one transaction; the table holds no patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from inference.record import _audit
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._models import Base
from inference.record._types import UTCDateTime

if TYPE_CHECKING:
    from inference.record._database import Database

MAX_ROWS = 100_000
"""Most revocations read at once (far more than an installation makes: each is an operator's act)."""


class TokenRevocation(Base):
    """One revocation: of the token ``jti``, or of every token of ``subject`` issued at or before
    ``issued_until``."""

    __tablename__ = "token_revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    jti: Mapped[str | None] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(128), index=True)
    issued_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(String(500))


@dataclass(frozen=True, slots=True)
class Revoked:
    """What the server refuses: token ids, and per subject the newest issue time revoked."""

    token_ids: frozenset[str]
    subjects: dict[str, datetime]

    def covers(
        self, *, token_id: str | None, subject: str, issued_at: datetime | None, skew: timedelta
    ) -> bool:
        """Whether a token with these claims is revoked.

        A subject's cut-off is the revoking machine's clock; the token's ``iat`` is its issuer's. A
        token issued before the revocation by an issuer whose clock is ahead carries a later ``iat``:
        the cut-off covers every ``iat`` up to ``skew`` after it (the clock difference tokens are
        accepted with), and a token without ``iat`` (it cannot show it was issued after).
        """
        if token_id is not None and token_id in self.token_ids:
            return True
        until = self.subjects.get(subject)
        return until is not None and (issued_at is None or issued_at <= until + skew)


@dataclass(frozen=True, slots=True)
class RevocationRow:
    """One revocation as ``dxassist token revocations`` lists it."""

    jti: str | None
    subject: str | None
    issued_until: datetime | None
    revoked_at: datetime
    revoked_by: str
    reason: str | None


class TokenRevocations:
    """The revocations of bearer tokens (``record.tokens``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def revoke(
        self,
        *,
        jti: str | None,
        subject: str | None,
        now: datetime,
        reason: str | None,
        audit: AuditIn,
    ) -> None:
        """Revoke the token ``jti``, or every token of ``subject`` issued up to ``now`` (exactly one of
        the two), with its audit entry (``token:revoke``) in the same transaction.

        Raises:
            ValueError: Neither or both of ``jti`` and ``subject``.
            RecordError: Nothing was written.
        """
        if (jti is None) == (subject is None):
            raise ValueError("Revoke one token (its id) or one subject's tokens, not both or neither.")

        def work(session: Session) -> None:
            session.add(
                TokenRevocation(
                    jti=jti,
                    subject=subject,
                    issued_until=now if subject is not None else None,
                    revoked_at=now,
                    revoked_by=audit.subject,
                    reason=reason,
                )
            )
            _audit.append_change(
                session,
                audit,
                resource_type="Token",
                resource_id=f"jti:{jti}" if jti is not None else f"subject:{subject}"[:128],
                patient_id=None,
            )

        self._db.write(work)

    def unrevoke(self, *, jti: str | None, subject: str | None, audit: AuditIn) -> int:
        """Take back the revocation of the token ``jti``, or every revocation of ``subject``'s tokens
        (exactly one of the two; a revocation made by mistake), with its audit entry
        (``token:unrevoke``) in the same transaction. The tokens it covered work again once the servers
        re-read the list.

        Returns:
            How many revocations were taken back; 0 when none names ``jti`` or ``subject`` (nothing is
            written then, no audit entry either).

        Raises:
            ValueError: Neither or both of ``jti`` and ``subject``.
            RecordError: Nothing was written.
        """
        if (jti is None) == (subject is None):
            raise ValueError(
                "Take back one token's revocation (its id) or one subject's, not both or neither."
            )
        named = TokenRevocation.jti == jti if jti is not None else TokenRevocation.subject == subject

        def work(session: Session) -> int:
            rows = session.scalars(select(TokenRevocation).where(named)).all()
            for row in rows:
                session.delete(row)
            if rows:
                _audit.append_change(
                    session,
                    audit,
                    resource_type="Token",
                    resource_id=f"jti:{jti}" if jti is not None else f"subject:{subject}"[:128],
                    patient_id=None,
                )
            return len(rows)

        return self._db.write(work)

    def revoked(self) -> Revoked:
        """Everything revoked (read by the server every few seconds).

        Raises:
            RecordError: The table cannot be read.
        """
        try:
            with self._db.sessions() as session:
                rows = session.execute(
                    select(TokenRevocation.jti, TokenRevocation.subject, TokenRevocation.issued_until)
                    .order_by(TokenRevocation.id.desc())
                    .limit(MAX_ROWS)
                ).all()
        except SQLAlchemyError as e:
            raise RecordError("The revoked tokens cannot be read.") from e
        ids = frozenset(jti for jti, _subject, _until in rows if jti is not None)
        subjects: dict[str, datetime] = {}
        for _jti, subject, until in rows:
            if (
                subject is not None
                and until is not None
                and (subject not in subjects or until > subjects[subject])
            ):
                subjects[subject] = until
        return Revoked(token_ids=ids, subjects=subjects)

    def listing(self) -> list[RevocationRow]:
        """Every revocation, newest first."""
        with self._db.sessions() as session:
            rows = session.scalars(
                select(TokenRevocation).order_by(TokenRevocation.id.desc()).limit(MAX_ROWS)
            ).all()
            return [
                RevocationRow(r.jti, r.subject, r.issued_until, r.revoked_at, r.revoked_by, r.reason)
                for r in rows
            ]
