"""The outbox: DICOM objects waiting for delivery to a PACS, one row per object and destination.

A row is written before any attempt to send it (``pending``), and leaves that state once: ``sent`` when
the destination accepted it, ``dead`` (the dead-letter state) when the destination refused it for good or
it ran out of attempts, ``withheld`` when the patient objected to sharing after it was queued (never
sent, never retried: the intended outcome, not a dead letter); an operator's retry (:func:`requeue`)
makes a dead row ``pending`` again, in its old place in the queue, and an operator's discard
(:meth:`Outbox.discard`) makes it ``discarded`` for good (never sent, never retried). The UNIQUE constraint
on ``(result_id, destination, object_uid)`` makes enqueuing idempotent, so a result is delivered once
per destination however often it is enqueued. Rows of one destination are sent in ``id`` order: only
the oldest pending row of a destination is ever handed out, so a later result never overtakes an
earlier one that is waiting for its retry.

:class:`Outbox` is ``Record.outbox`` (it works through the record's one session factory); ``last_error``
holds transport and status text only, never patient data.

A row keeps its Part-10 bytes only while they may still be sent: a capture (``sc``, a few megabytes of
RGB pixels) drops them once ``sent``, and every ``withheld`` row drops them (nothing of a patient who
objected to sharing is kept for sharing), and so does every ``discarded`` row. A sent SR keeps its bytes
(a few kilobytes): the SR of a study analysed again names it as the report it supersedes at that
destination (:meth:`Outbox.prior_report`; an SR never sent there, discarded included, is never named).
A dead letter keeps them for an operator's retry, until an operator discards it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from inference.record import _audit, _builds, _consent
from inference.record._database import Database
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._lease import (
    claim_first,
    database_now,
    discard_dead,
    finish_pending,
    requeue_dead,
    write_session,
)
from inference.record._models import Result
from inference.record._reads import audited_transaction
from inference.record._result_types import Delivery
from inference.record._types import UTCDateTime, iso, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


logger = logging.getLogger(__name__)

STATES: Final = ("pending", "sent", "dead", "withheld", "discarded")
KINDS: Final = ("sr", "sc")
KEPT_ONCE_SENT: Final = ("sr",)
"""Kinds whose bytes a ``sent`` row keeps (the others drop them: :data:`NO_PAYLOAD`)."""
NO_PAYLOAD: Final = b""
"""What a row holds in ``payload`` once its bytes are no longer needed (the column is NOT NULL)."""
_ERROR_MAX: Final = 512
DELIVERY_SUBJECT: Final = "dxassist-outbox"
"""The audit subject of the outbox worker's deliveries (a service, not a person)."""
CONSENT_WITHDRAWN: Final = "consent_withdrawn"
"""The error code of an object cancelled because the patient objected after it was queued."""
DELIVERY_ACTION: Final = "result:deliver"
"""The audit action of a delivery to a destination: a disclosure of health data outside dxassist."""

# The table as created by migration 0002 and widened by 0016 (Core, so the record's ORM stays untouched).
_metadata = MetaData()
outbox = Table(
    "outbox",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("result_id", String(36), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("object_uid", String(64), nullable=False),
    Column("sop_class_uid", String(64), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime()),
    Column("last_error", String(_ERROR_MAX)),
    Column("created", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("error_code", String(32)),
    Column("dead_at", UTCDateTime()),
)


@dataclass(frozen=True)
class OutboxObject:
    """One DICOM object to deliver: its kind, SOP UIDs and Part-10 bytes."""

    kind: str
    object_uid: str
    sop_class_uid: str
    payload: bytes


@dataclass(frozen=True)
class OutboxItem:
    """A row handed to the worker (claimed: no other worker sends it until the lease ends)."""

    id: int
    result_id: str
    destination: str
    kind: str
    object_uid: str
    sop_class_uid: str
    payload: bytes
    attempts: int


@dataclass(frozen=True)
class Claim:
    """What one claim of a destination's queue did (:meth:`Outbox.claim`).

    Attributes:
        item: The object handed out, or ``None`` when nothing of the destination is due now.
        withheld: How many objects the claim moved to ``withheld`` on its way to ``item`` (their patient
            objected since they were queued), committed before the claim returned: what the delivery
            worker counts as ``dxassist_deliveries_total{state="withheld"}``.
    """

    item: OutboxItem | None
    withheld: int = 0


class Outbox:
    """The outbox of deliveries to PACS destinations (one row per object and destination)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def enqueue(
        self,
        *,
        result_id: str,
        destinations: Sequence[str],
        objects: Sequence[OutboxObject],
        build_id: int | None = None,
    ) -> int:
        """Put every object in the outbox for every destination, once; queued pairs are kept as they are.

        Args:
            result_id: The committed result the objects were made from.
            destinations: Destination names (from the settings).
            objects: The objects to deliver.
            build_id: The output build that made them, marked done in the same transaction.

        Returns:
            How many rows were added (0 when everything was queued already).

        Raises:
            RecordError: A kind outside ``sr``/``sc`` or a database failure.
        """
        for obj in objects:
            if obj.kind not in KINDS:
                raise RecordError(
                    f"Outbox object kind {obj.kind!r} is not accepted; use one of {', '.join(KINDS)}."
                )
        if not destinations or not objects:
            return 0
        for _attempt in range(3):
            try:
                with self._db.transaction() as session:
                    write_session(session)
                    existing = {
                        (row.destination, row.object_uid)
                        for row in session.execute(
                            select(outbox.c.destination, outbox.c.object_uid).where(
                                outbox.c.result_id == result_id
                            )
                        )
                    }
                    now = utcnow()
                    rows = [
                        {
                            "result_id": result_id,
                            "destination": destination,
                            "kind": obj.kind,
                            "object_uid": obj.object_uid,
                            "sop_class_uid": obj.sop_class_uid,
                            "payload": obj.payload,
                            "state": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created": now,
                        }
                        for destination in destinations
                        for obj in objects
                        if (destination, obj.object_uid) not in existing
                    ]
                    if rows:
                        session.execute(insert(outbox), rows)
                    if build_id is not None:
                        _builds.mark_done_in(session, job_id=build_id)
                    return len(rows)
            except IntegrityError:
                # A concurrent enqueue of the same result won the race: read what it wrote and try again.
                logger.info("A concurrent enqueue of the same result won a race; retrying.")
            except DBAPIError as e:
                raise RecordError("The outbox could not be written; nothing was queued.") from e
        raise RecordError("The outbox could not be written because concurrent enqueues kept conflicting.")

    def claim(self, *, destination: str, now: datetime | None = None, lease_seconds: float = 120.0) -> Claim:
        """Hand out the oldest pending object of a destination when due and not leased by another worker.

        Only the oldest pending row is considered, so deliveries of one destination keep their order.

        The patient's consent is read again in the claim's transaction: an object queued (or retried by an
        operator) before the patient objected to national sharing or to AI processing is never handed out.
        It goes to the state ``withheld`` with code ``consent_withdrawn`` (:data:`CONSENT_WITHDRAWN`), its
        cancelled delivery audited (outcome ``failure``) in that transaction, and the next row is
        considered. It is not a dead letter: no retry hands it back. A dead letter an operator retries is
        cancelled the same way as long as the objection stands.

        Returns:
            The claimed item (``None`` when nothing of this destination is due now) and how many objects
            were withheld on the way; both committed when this returns.
        """
        withheld = 0
        with self._db.transaction() as session:
            write_session(session)
            now = now or database_now(session)
            while True:
                row = claim_first(
                    session,
                    outbox,
                    select(outbox)
                    .where(outbox.c.destination == destination, outbox.c.state == "pending")
                    .order_by(outbox.c.id),
                    now=now,
                    lease_seconds=lease_seconds,
                    ready=lambda found: found.next_attempt_at <= now,
                )
                if row is None:
                    item = None
                    break
                if _sharing_allowed(session, row.result_id):
                    item = OutboxItem(
                        id=row.id,
                        result_id=row.result_id,
                        destination=row.destination,
                        kind=row.kind,
                        object_uid=row.object_uid,
                        sop_class_uid=row.sop_class_uid,
                        payload=row.payload,
                        attempts=row.attempts,
                    )
                    break
                _cancel(session, row.id, now=now)
                withheld += 1
        return Claim(item=item, withheld=withheld)

    def claim_next(
        self, *, destination: str, now: datetime | None = None, lease_seconds: float = 120.0
    ) -> OutboxItem | None:
        """The item of :meth:`claim` alone (objects withheld on the way are withheld all the same).

        Returns:
            The claimed item, or ``None`` when nothing of this destination is due now.
        """
        return self.claim(destination=destination, now=now, lease_seconds=lease_seconds).item

    def _finish(self, item_id: int, values: dict[str, Any], *, audit: str | None = None) -> None:
        # ``audit``: the outcome of the delivery's audit entry, written in the transaction that ends the
        # row's delivery, so a row is never sent (or given up) without its entry, nor the other way round.
        finish_pending(
            self._db,
            outbox,
            item_id,
            values,
            failure="The outbox state could not be updated.",
            then=None
            if audit is None
            else lambda session: _append_delivery(session, item_id=item_id, outcome=audit),
        )

    def mark_sent(self, *, item_id: int, now: datetime | None = None) -> None:
        """The destination accepted the object: the row is ``sent`` and the disclosure audited (outcome
        ``success``, see :func:`_append_delivery`) in one transaction."""
        now = now or utcnow()
        self._finish(
            item_id,
            {
                "state": "sent",
                "sent_at": now,
                "attempts": outbox.c.attempts + 1,
                "lease_until": None,
                "last_error": None,
                # The destination has it: a capture's bytes are not needed again (an SR's are, see above).
                "payload": case(
                    (outbox.c.kind.in_(KEPT_ONCE_SENT), outbox.c.payload), else_=literal(NO_PAYLOAD)
                ),
            },
            audit="success",
        )

    def mark_retry(
        self, *, item_id: int, error: str, next_attempt_at: datetime, code: str | None = None
    ) -> None:
        """The attempt failed for a reason that may pass (destination down, busy, out of resources)."""
        self._finish(
            item_id,
            {
                "attempts": outbox.c.attempts + 1,
                "next_attempt_at": next_attempt_at,
                "lease_until": None,
                "last_error": error[:_ERROR_MAX],
                "error_code": code,
            },
        )

    def mark_dead(self, *, item_id: int, error: str, code: str, now: datetime | None = None) -> None:
        """The object goes to the dead-letter state: refused for good, or out of attempts. Not sent again
        until an operator retries it (:func:`requeue`). The failed delivery is audited (outcome
        ``failure``) in the same transaction."""
        self._finish(
            item_id,
            {
                "state": "dead",
                "attempts": outbox.c.attempts + 1,
                "lease_until": None,
                "last_error": error[:_ERROR_MAX],
                "error_code": code[:32],
                "dead_at": now or utcnow(),
            },
            audit="failure",
        )

    def dead(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The dead letters of the outbox, oldest first: ``{id, result_id, destination, kind, object,
        attempts, error_code, last_error, dead_at}``."""
        with self._db.sessions() as session:
            return _dead_in(session, limit=limit)

    def read_dead_letters(
        self,
        *,
        audit: AuditIn,
        builds: bool = True,
        deliveries: bool = True,
        studies: Sequence[str] = (),
        limit: int = 1000,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The dead builds and dead deliveries an operator lists (``([], ...)`` for a kind not asked),
        read in one transaction with the listing's audit entries.

        One entry per dead letter listed (``audit``'s action, resource ``DeadLetter``, the id
        ``build:7``, ``delivery:42``, or ``study:<folder>`` for each of ``studies``, the dead studies read
        from the spool beforehand; outcome ``success``), naming the patient of its result, so each
        facility's auditor finds who saw its results' dead letters; one entry naming nothing when the
        queue is empty. The audit chain's head is locked first, as for every audited read.

        Raises:
            RecordError: The record failed, or the entries could not be written: nothing is listed.
        """
        with audited_transaction(self._db) as (session, head):
            dead_builds = _builds.dead_in(session, limit=limit) if builds else []
            dead_deliveries = _dead_in(session, limit=limit) if deliveries else []
            wanted = {row["result_id"] for row in (*dead_builds, *dead_deliveries)}
            patients: dict[str, str] = (
                dict(session.execute(select(Result.id, Result.patient_id).where(Result.id.in_(wanted))).all())
                if wanted
                else {}
            )
            listed: list[tuple[str | None, str | None]] = [(f"study:{key}"[:128], None) for key in studies]
            listed += [(f"build:{row['id']}", patients.get(row["result_id"])) for row in dead_builds]
            listed += [(f"delivery:{row['id']}", patients.get(row["result_id"])) for row in dead_deliveries]
            now = utcnow()
            _audit.append_all_onto(
                session,
                head,
                [
                    _audit.columns_of(
                        audit,
                        resource_type="DeadLetter",
                        resource_id=resource_id,
                        patient_id=patient_id,
                        outcome="success",
                        time=now,
                    )
                    for resource_id, patient_id in listed or [(None, None)]
                ],
            )
        return dead_builds, dead_deliveries

    def count_dead(self) -> int:
        """How many objects are in the dead-letter state."""
        with self._db.sessions() as session:
            return int(
                session.scalar(select(func.count()).select_from(outbox).where(outbox.c.state == "dead")) or 0
            )

    def requeue(
        self,
        *,
        ids: Sequence[int] | None = None,
        now: datetime | None = None,
        audit: dict[str, Any] | None = None,
    ) -> list[int]:
        """Give dead objects a fresh set of attempts (``ids``, or every dead one when None); return them.

        The row keeps its id, so it takes its old place in its destination's queue: results still reach the
        destination in the order they were filed. With ``audit`` (who asked: the audit columns but the
        resource and patient), each object requeued gets an audit entry in the same transaction.
        """
        return requeue_dead(
            self._db,
            outbox,
            ids=ids,
            now=now or utcnow(),
            audit=audit,
            kind="delivery",
            failure="The outbox could not be updated; nothing was requeued.",
        )

    def discard(
        self, *, ids: Sequence[int], audit: dict[str, Any], dead_before: datetime | None = None
    ) -> list[int]:
        """End dead objects for good (``ids``; with ``dead_before``, only those dead since then or earlier);
        return those discarded.

        A discarded row keeps its place in the result's deliveries (state ``discarded``, its error code
        and text) but not its bytes, and is never sent nor retried: the result is not queued again for
        that destination either. Each object discarded is audited (``audit``: who asked and the action;
        outcome ``success``, or ``not_found`` for an id no longer dead) in the same transaction.

        Raises:
            RecordError: The database refused the write; nothing was discarded.
        """
        return discard_dead(
            self._db,
            outbox,
            ids=ids,
            dead_before=dead_before,
            emptied={"payload": NO_PAYLOAD},
            audit=audit,
            kind="delivery",
            failure="The outbox could not be updated; nothing was discarded.",
        )

    def count_pending(self, *, destination: str | None = None) -> int:
        """How many objects wait for delivery (to one destination, or to all)."""
        query = select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
        if destination is not None:
            query = query.where(outbox.c.destination == destination)
        with self._db.sessions() as session:
            return int(session.scalar(query) or 0)

    def pending_destinations(self) -> list[str]:
        """Destination names that have objects waiting."""
        with self._db.sessions() as session:
            return sorted(
                session.scalars(select(outbox.c.destination).where(outbox.c.state == "pending").distinct())
            )

    def deliveries(self, *, result_id: str) -> tuple[Delivery, ...]:
        """The delivery state of every object of a result, in queue order (see :func:`deliveries_in`)."""
        with self._db.sessions() as session:
            return deliveries_in(session, result_id)

    def earlier_results(self, *, result_id: str) -> int:
        """How many results of the same study and facility were filed before ``result_id`` (0 for the
        study's first analysis; ties in time broken by id): the outputs of each analysis get series
        numbers of their own."""
        with self._db.sessions() as session:
            this = session.execute(
                select(Result.study_id, Result.facility, Result.created_at).where(Result.id == result_id)
            ).first()
            if this is None or this.study_id is None:
                return 0
            earlier = (
                select(func.count())
                .select_from(Result)
                .where(
                    Result.study_id == this.study_id,
                    Result.facility.is_not_distinct_from(this.facility),
                    Result.id != result_id,
                    or_(
                        Result.created_at < this.created_at,
                        and_(Result.created_at == this.created_at, Result.id < result_id),
                    ),
                )
            )
            return int(session.scalar(earlier) or 0)

    def prior_report(self, *, result_id: str, destination: str) -> bytes | None:
        """The Part-10 SR of the latest earlier result of the same study and facility that ``destination``
        received (state ``sent``): the report a new SR of ``result_id`` supersedes there. None when there is
        none.

        Per destination: an SR that reached another destination only (this one was down, or refused it)
        is not in this one's archive, so a new SR naming it would point its viewers at nothing.
        """
        with self._db.sessions() as session:
            this = session.execute(
                select(Result.study_id, Result.facility, Result.created_at).where(Result.id == result_id)
            ).first()
            if this is None or this.study_id is None:
                return None
            earlier = (
                select(outbox.c.payload)
                .join(Result.__table__, Result.id == outbox.c.result_id)
                .where(
                    Result.study_id == this.study_id,
                    Result.facility.is_not_distinct_from(this.facility),
                    Result.id != result_id,
                    Result.created_at <= this.created_at,
                    outbox.c.kind == "sr",
                    outbox.c.state == "sent",
                    outbox.c.destination == destination,
                )
                .order_by(Result.created_at.desc(), outbox.c.id.desc())
                .limit(1)
            )
            payload = session.scalar(earlier)
        return None if payload is None else bytes(payload)


def _sharing_allowed(session: Session, result_id: str) -> bool:
    """Whether the patient of ``result_id`` still lets their AI results leave dxassist, read in ``session``.

    Every destination is outside the record (the enqueue checks the same consent for all of them), and
    what is sent is an AI result, so an objection to national sharing or to AI processing stops it.
    """
    patient_id = session.scalar(select(Result.patient_id).where(Result.id == result_id))
    if patient_id is None:
        return False
    consent = _consent.state(session, patient_id)
    return consent.national_sharing and consent.ai_processing


def _cancel(session: Session, item_id: int, *, now: datetime) -> None:
    """End a claimed row whose patient objected since it was queued: withheld, never sent, and audited."""
    session.execute(
        update(outbox)
        .where(outbox.c.id == item_id)
        .values(
            state="withheld",
            payload=NO_PAYLOAD,
            lease_until=None,
            last_error="The patient objected to sharing since the object was queued; it was not sent.",
            error_code=CONSENT_WITHDRAWN,
            dead_at=now,
        )
    )
    _append_delivery(session, item_id=item_id, outcome="failure")
    logger.info(
        "delivery cancelled: the patient objected since it was queued",
        extra={"event": "delivery_cancelled", "item_id": item_id, "code": CONSENT_WITHDRAWN},
    )


def _append_delivery(session: Session, *, item_id: int, outcome: str) -> None:
    """Audit the end of one object's delivery to a destination (IHE ATNA "DICOM Instances Transferred").

    Sending a result to a PACS discloses the patient's data outside dxassist, so the facility's auditors
    must see it: the entry names the patient and the facility of the result, the destination as its
    resource (``Destination``/name), the outbox worker as its subject, and the delivery attempt's
    correlation id (``delivery-<hex>``, the id of the attempt's log lines) as its ``request_id``.
    """
    row = session.execute(
        select(outbox.c.result_id, outbox.c.destination).where(outbox.c.id == item_id)
    ).first()
    if row is None:
        return
    owner = session.execute(
        select(Result.patient_id, Result.facility).where(Result.id == row.result_id)
    ).first()
    _audit.append(
        session,
        time=utcnow(),
        subject=DELIVERY_SUBJECT,
        role="system",
        facility=owner.facility if owner is not None else None,
        action=DELIVERY_ACTION,
        resource_type="Destination",
        resource_id=row.destination,
        patient_id=owner.patient_id if owner is not None else None,
        outcome=outcome,
        client=None,
    )


def deliveries_in(session: Session, result_id: str) -> tuple[Delivery, ...]:
    """The delivery state of every object of a result, in queue order, read in ``session``.

    ``object`` is the SOP Instance UID of the delivered DICOM object, ``error`` the code of the last
    failure.
    """
    rows = session.execute(
        select(
            outbox.c.destination,
            outbox.c.kind,
            outbox.c.object_uid,
            outbox.c.state,
            outbox.c.attempts,
            outbox.c.sent_at,
            outbox.c.last_error,
            outbox.c.error_code,
        )
        .where(outbox.c.result_id == result_id)
        .order_by(outbox.c.id)
    )
    return tuple(
        Delivery(
            destination=row.destination,
            kind=row.kind,
            object=row.object_uid,
            state=row.state,
            attempts=row.attempts,
            sent_at=row.sent_at,
            last_error=row.last_error,
            error=row.error_code,
        )
        for row in rows
    )


def _dead_in(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """:meth:`Outbox.dead` in ``session``'s transaction."""
    rows = session.execute(
        select(
            outbox.c.id,
            outbox.c.result_id,
            outbox.c.destination,
            outbox.c.kind,
            outbox.c.object_uid,
            outbox.c.attempts,
            outbox.c.error_code,
            outbox.c.last_error,
            outbox.c.dead_at,
        )
        .where(outbox.c.state == "dead")
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [
        {
            "id": row.id,
            "result_id": row.result_id,
            "destination": row.destination,
            "kind": row.kind,
            "object": row.object_uid,
            "attempts": row.attempts,
            "error_code": row.error_code,
            "last_error": row.last_error,
            "dead_at": iso(row.dead_at) if row.dead_at is not None else None,
        }
        for row in rows
    ]
