"""Break-the-glass grants as a concern of the record (the rules live in ``_break_glass``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from inference.record import _break_glass
from inference.record._database import Database
from inference.record._inputs import AuditIn
from inference.record._reads import Disclosure, read_listing
from inference.record._scope import Scope


class BreakGlass:
    """Emergency access grants, each audited in the transaction that opens it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, *, patient_id: str, reason: str, minutes: int, audit: AuditIn) -> dict[str, Any]:
        """Open a break-the-glass access for ``audit.subject``, audited in the same transaction.

        Raises:
            NotFound: No patient has this id.
            InvalidData: A reason or duration outside the accepted range (see ``_break_glass``).
        """
        return self._db.write(
            lambda session: _break_glass.open_grant(
                session, patient_id=patient_id, reason=reason, minutes=minutes, audit=audit
            )
        )

    def grants(
        self, *, facility: str | None, active_only: bool = False, limit: int = 50, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """Break-the-glass grants for auditors, newest first: ``(total, page)``."""
        with self._db.sessions() as session:
            return _break_glass.listing(
                session, facility=facility, active_only=active_only, limit=limit, offset=offset
            )

    def read_grants(
        self,
        *,
        facility: str | None,
        scope: Scope,
        audit: AuditIn,
        active_only: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """:meth:`grants` for an auditor, audited in the same transaction (``read_listing``): one
        ``BreakGlass`` entry per patient listed (one without a patient when none is).

        Raises:
            RecordError: The record failed, or the entries could not be written: nothing is served.
        """

        def fetch(session: Session) -> tuple[int, list[dict[str, Any]]]:
            return _break_glass.listing(
                session, facility=facility, active_only=active_only, limit=limit, offset=offset
            )

        def disclosed(_session: Session, found: tuple[int, list[dict[str, Any]]]) -> Disclosure:
            return Disclosure(patients=[str(item["patient_id"]) for item in found[1]])

        return read_listing(
            self._db, scope=scope, audit=audit, resource_type="BreakGlass", fetch=fetch, disclosed=disclosed
        )
