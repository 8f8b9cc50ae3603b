"""Local accounts and web sessions of the radiologist's pages (the embedded default; an external sign-on
puts its own proxy in front, see docs/ui.md).

Kept apart from :class:`~inference.record.Record`'s results: the tables live in the same database (one
backup, one migration chain) but nothing here touches patient data. Session ids are stored as their
sha256 only, so a copy of the database does not hand out live sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from inference.record._errors import Conflict, NotFound, RecordError
from inference.record._models import Base
from inference.record._types import UTCDateTime

if TYPE_CHECKING:
    from inference.record._store import Record


class UserAccount(Base):
    """A local account: who signs in to the pages, in which role and facility."""

    __tablename__ = "user_accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    facility: Mapped[str | None] = mapped_column(String(128))
    disabled: Mapped[bool] = mapped_column(Boolean)
    failed_attempts: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    last_sign_in: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sso_issuer: Mapped[str | None] = mapped_column(String(2048))
    sso_subject: Mapped[str | None] = mapped_column(String(255))


class WebSession(Base):
    """A signed-in browser: the sha256 of its cookie, its CSRF token and its two expiry clocks."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("user_accounts.username"))
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
    id_token_hint: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the services see it (no hash beyond what sign-in needs)."""

    username: str
    role: str
    facility: str | None
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created: datetime
    last_sign_in: datetime | None
    password_hash: str
    sso_issuer: str | None = None
    sso_subject: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A stored session joined with its account."""

    id_hash: str
    csrf: str
    created: datetime
    last_seen: datetime
    expires: datetime
    account: Account


def _account(row: UserAccount) -> Account:
    return Account(
        username=row.username,
        role=row.role,
        facility=row.facility,
        disabled=row.disabled,
        failed_attempts=row.failed_attempts,
        locked_until=row.locked_until,
        created=row.created,
        last_sign_in=row.last_sign_in,
        password_hash=row.password_hash,
        sso_issuer=row.sso_issuer,
        sso_subject=row.sso_subject,
    )


class Accounts:
    """Accounts and sessions, in the record's database.

    Args:
        record: The record whose engine and sessions are used.
    """

    def __init__(self, record: Record) -> None:
        self._sessions = record.sessions

    def add(
        self, *, username: str, password_hash: str, role: str, facility: str | None, now: datetime,
        sso: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Create an account; ``sso``: the provider's ``(issuer, subject)`` it is bound to from the start.

        Raises:
            Conflict: An account with this username exists, or another one is bound to ``sso``.
        """
        row = UserAccount(
            username=username, password_hash=password_hash, role=role, facility=facility, disabled=False,
            failed_attempts=0, locked_until=None, created=now, last_sign_in=None,
            sso_issuer=sso[0] if sso else None, sso_subject=sso[1] if sso else None,
        )  # fmt: skip
        try:
            with self._sessions() as session, session.begin():
                if sso is not None and self._bound_to(session, sso) is not None:
                    raise Conflict("Another account is bound to this identity-provider subject.")
                session.add(row)
        except IntegrityError as e:
            raise Conflict(f"An account named {username!r} already exists.") from e
        except SQLAlchemyError as e:
            raise RecordError("The account could not be stored.") from e

    def list(self) -> list[Account]:
        """Every account, by username."""
        with self._sessions() as session:
            return [_account(r) for r in session.scalars(select(UserAccount).order_by(UserAccount.username))]

    def get(self, *, username: str) -> Account | None:
        """One account, or None."""
        with self._sessions() as session:
            row = session.get(UserAccount, username)
            return None if row is None else _account(row)

    def set_disabled(self, *, username: str, disabled: bool) -> None:
        """Disable (or enable) an account; disabling ends its open sessions at once.

        Raises:
            NotFound: No account has this username.
        """
        with self._sessions() as session, session.begin():
            row = session.get(UserAccount, username)
            if row is None:
                raise NotFound(f"No account is named {username!r}.")
            row.disabled = disabled
            if disabled:
                session.execute(delete(WebSession).where(WebSession.username == username))

    @staticmethod
    def _bound_to(session: Session, sso: tuple[str, str]) -> str | None:
        return session.scalar(
            select(UserAccount.username).where(
                UserAccount.sso_issuer == sso[0], UserAccount.sso_subject == sso[1]
            )
        )

    def bind_sso(self, *, username: str, issuer: str, subject: str) -> bool:
        """Bind an unbound account to the provider's ``(issuer, subject)`` (its first single sign-on).

        Returns:
            True when the account is now bound to this pair (bound here, or already to it); False when it
            is bound to another pair, does not exist, or another account is bound to this pair.
        """
        try:
            with self._sessions() as session, session.begin():
                holder = self._bound_to(session, (issuer, subject))
                if holder is not None:
                    return holder == username
                # One conditional UPDATE: two first sign-ins at once cannot both bind.
                bound = session.execute(
                    update(UserAccount)
                    .where(UserAccount.username == username, UserAccount.sso_subject.is_(None))
                    .values(sso_issuer=issuer, sso_subject=subject)
                )
                if getattr(bound, "rowcount", 0):
                    return True
                # Bound meanwhile by a sign-in this one waited for (PostgreSQL: read committed): by the
                # same person (a second workstation) or another.
                return self._bound_to(session, (issuer, subject)) == username
        except IntegrityError:  # the same pair bound to another account meanwhile
            return False

    def unbind_sso(self, *, username: str) -> bool:
        """Forget an account's provider subject (its next single sign-on binds it again).

        Returns:
            Whether the account was bound.

        Raises:
            NotFound: No account has this username.
        """
        with self._sessions() as session, session.begin():
            row = session.get(UserAccount, username)
            if row is None:
                raise NotFound(f"No account is named {username!r}.")
            was = row.sso_subject is not None
            row.sso_issuer = row.sso_subject = None
            return was

    def register_failure(self, *, username: str, max_attempts: int, lock_until: datetime) -> datetime | None:
        """Count a failed sign-in; lock the account once ``max_attempts`` failures follow each other.

        Returns:
            When the account is locked until (None: not locked).
        """
        with self._sessions() as session, session.begin():
            # One UPDATE, so that concurrent guesses cannot each read the same count.
            session.execute(
                update(UserAccount)
                .where(UserAccount.username == username)
                .values(failed_attempts=UserAccount.failed_attempts + 1)
            )
            row = session.get(UserAccount, username)
            if row is None:
                return None
            if row.failed_attempts >= max_attempts:
                row.locked_until = lock_until
                row.failed_attempts = 0
                return lock_until
            return None

    def register_success(self, *, username: str, now: datetime, new_hash: str | None) -> None:
        """Reset the failure count after a sign-in (and store a re-hashed password when given)."""
        with self._sessions() as session, session.begin():
            row = session.get(UserAccount, username)
            if row is not None:
                row.failed_attempts = 0
                row.locked_until = None
                row.last_sign_in = now
                if new_hash is not None:
                    row.password_hash = new_hash

    def open_session(
        self, *, id_hash: str, username: str, csrf: str, now: datetime, expires: datetime,
        id_token_hint: str | None = None,
    ) -> None:  # fmt: skip
        """Store a new session (expired ones of every user are purged on the way); ``id_token_hint``: the
        ID token of a single sign-on, for the sign-out at the provider."""
        with self._sessions() as session, session.begin():
            session.execute(delete(WebSession).where(WebSession.expires < now))
            session.add(
                WebSession(
                    id_hash=id_hash, username=username, csrf=csrf, created=now, last_seen=now,
                    expires=expires, id_token_hint=id_token_hint,
                )
            )  # fmt: skip

    def session(self, *, id_hash: str) -> SessionRow | None:
        """A stored session with its account, or None."""
        with self._sessions() as session:
            row = session.get(WebSession, id_hash)
            if row is None:
                return None
            account = session.get(UserAccount, row.username)
            if account is None:
                return None
            return SessionRow(
                id_hash=row.id_hash, csrf=row.csrf, created=row.created, last_seen=row.last_seen,
                expires=row.expires, account=_account(account),
            )  # fmt: skip

    def touch(self, *, id_hash: str, now: datetime) -> None:
        """Move a session's idle clock to ``now``."""
        with self._sessions() as session, session.begin():
            session.execute(update(WebSession).where(WebSession.id_hash == id_hash).values(last_seen=now))

    def close_session(self, *, id_hash: str) -> str | None:
        """Forget a session (sign-out, expiry).

        Returns:
            The ID token it kept (a session opened by single sign-on), or None.
        """
        with self._sessions() as session, session.begin():
            hint = session.scalar(select(WebSession.id_token_hint).where(WebSession.id_hash == id_hash))
            session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))
            return hint
