"""The hash-chained audit trail: append under a lock, verify from the first entry to the head.

Each entry stores ``seq`` (1, 2, 3, ... without gaps), ``prev_hash`` (the ``hash`` of entry ``seq - 1``,
64 zeros for the first) and ``hash`` = sha256 of its canonical content (every column that says who did
what, when, from where, to which patient and with what outcome, plus ``seq`` and ``prev_hash``, and the
``request_id`` of the HTTP request that made it when there is one).

Appends are serialised so the chain never forks: the one row of ``audit_chain_head`` is read with
``SELECT ... FOR UPDATE`` (PostgreSQL) inside a transaction that SQLite starts with ``BEGIN IMMEDIATE``
(one writer at a time). :func:`verify` recomputes every hash: an edited entry fails its own hash, a
deleted one leaves a gap in ``seq`` (or, at the end, a head that points past the last entry).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, cast

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    column,
    exists,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    table,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from inference.observability import current_request_id
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._models import (
    AuditChainHead,
    AuditEvent,
    BreakGlass,
    Consent,
    Finding,
    Patient,
    Result,
    Study,
)
from inference.record._types import as_utc, utcnow

if TYPE_CHECKING:
    from inference.record._anchor import AnchoredHead, HeadAnchor

GENESIS: Final = "0" * 64
HEAD_ID: Final = 1
CONTENT_FIELDS: Final[tuple[str, ...]] = (
    "seq",
    "time",
    "subject",
    "role",
    "facility",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "client",
    "prev_hash",
)
"""The columns an entry's hash covers (``id`` is the database's row number and is not covered)."""
_MAX_PROBLEMS: Final = 50
PENDING_HEAD: Final = "dxassist_audit_head"
"""``session.info`` key: the head this transaction appended, anchored once it commits."""
_LOCKED_HEAD: Final = "dxassist_audit_locked_head"
"""``session.info`` key: ``(transaction, head row)`` of the transaction that locked the head last."""


@dataclass(frozen=True)
class PendingHead:
    """What a transaction appended to the chain: the entry its first new entry chains onto (``base_seq``,
    ``base_hash``) and its last new entry (``seq``, ``hash``), to anchor once it commits."""

    base_seq: int
    base_hash: str
    seq: int
    hash: str


def _appended(session: Session, *, prev_seq: int, prev_hash: str, seq: int, digest: str) -> None:
    pending = session.info.get(PENDING_HEAD)
    if isinstance(pending, PendingHead):
        prev_seq, prev_hash = pending.base_seq, pending.base_hash
    session.info[PENDING_HEAD] = PendingHead(prev_seq, prev_hash, seq, digest)


def _time_text(value: datetime) -> str:
    # Microseconds: both SQLite (text) and PostgreSQL (timestamptz) keep them exactly.
    return as_utc(value).isoformat(timespec="microseconds")


def canonical(content: dict[str, Any]) -> bytes:
    """The bytes an entry's hash is computed over: sorted-key compact JSON of :data:`CONTENT_FIELDS`."""
    values = {name: content.get(name) for name in CONTENT_FIELDS}
    if content.get("request_id") is not None:
        # Covered when present (migration 0010): entries written before it keep their hashes.
        values["request_id"] = content["request_id"]
    if isinstance(values["time"], datetime):
        values["time"] = _time_text(values["time"])
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(content: dict[str, Any]) -> str:
    """sha256 (hex) of :func:`canonical` ``(content)``."""
    return hashlib.sha256(canonical(content)).hexdigest()


def _content(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in (*CONTENT_FIELDS, "request_id")}


_LOCK_HEAD: Final = select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()
"""Built once (building and keying a statement costs about as much as running it)."""


def _locked_head(session: Session) -> AuditChainHead | None:
    """The chain head, locked for this transaction (``SELECT ... FOR UPDATE``).

    A transaction that appended before holds the lock and the head it moved (in the session, not expired):
    that head is the current one, and is not read again. Read again otherwise, and inside a savepoint
    (rolling it back would release a lock taken in it).
    """
    transaction = session.get_transaction()
    held = session.info.get(_LOCKED_HEAD)
    if held is not None and not session.in_nested_transaction():
        locked_in, moved = held
        if locked_in is transaction and moved in session and not inspect(moved).expired_attributes:
            return cast(AuditChainHead, moved)
    head: AuditChainHead | None = session.scalars(_LOCK_HEAD).first()
    if head is not None and not session.in_nested_transaction():
        session.info[_LOCKED_HEAD] = (transaction, head)
    return head


def append(session: Session, **columns: Any) -> AuditEvent:
    """Chain a new entry onto the head and move the head, inside the caller's write transaction.

    Args:
        session: A session in a transaction begun for writing (SQLite: ``BEGIN IMMEDIATE``).
        **columns: ``time``, ``subject``, ``role``, ``facility``, ``action``, ``resource_type``,
            ``resource_id``, ``patient_id``, ``outcome``, ``client``; ``request_id`` defaults to the id
            of the HTTP request being served (:func:`inference.observability.current_request_id`).

    Raises:
        RecordError: The chain head is missing (the schema is older than migration 0003).
    """
    event = append_unflushed(session, **columns)
    session.flush()
    return event


def append_unflushed(session: Session, **columns: Any) -> AuditEvent:
    """:func:`append`, leaving the entry (and the head moved) to the session's next flush, at the latest
    its commit: the entries of several appends in one transaction are then written together."""
    head = _locked_head(session)
    if head is None:
        raise RecordError("The audit chain head is missing; run the record's migrations (0003).")
    prev_seq, prev_hash = head.seq, head.hash
    seq = prev_seq + 1
    columns.setdefault("request_id", current_request_id())
    event = AuditEvent(**columns, seq=seq, prev_hash=prev_hash)
    digest = entry_hash(_content(event))
    event.hash = digest
    session.add(event)
    head.seq = seq
    head.hash = digest
    _appended(session, prev_seq=prev_seq, prev_hash=prev_hash, seq=seq, digest=digest)
    return event


def columns_of(
    audit: AuditIn,
    *,
    resource_type: str,
    resource_id: str | None,
    patient_id: str | None,
    outcome: str,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The columns of :func:`append` for the entry of ``audit`` (who does what) on one resource, at
    ``time`` (default now)."""
    return {
        "time": time or utcnow(),
        "subject": audit.subject,
        "role": audit.role,
        "facility": audit.facility,
        "action": audit.action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "patient_id": patient_id,
        "outcome": outcome,
        "client": audit.client,
    }


def append_change(
    session: Session,
    audit: AuditIn,
    *,
    resource_type: str,
    resource_id: str,
    patient_id: str | None,
    outcome: str = "success",
) -> AuditEvent:
    """The entry of a change made by ``audit.subject``, chained in the transaction of the change itself:
    the change is committed with its entry or not at all.

    The change's pending rows are flushed first, so their own errors (a concurrent writer that won a
    race, which the caller retries) surface as they are.

    Raises:
        RecordError: The entry could not be written; the caller's transaction, the change with it, is
            rolled back.
    """
    session.flush()
    try:
        return append(
            session,
            **columns_of(
                audit,
                resource_type=resource_type,
                resource_id=resource_id,
                patient_id=patient_id,
                outcome=outcome,
            ),
        )
    except SQLAlchemyError as e:
        raise RecordError("The audit entry could not be written; nothing was changed.") from e


_ENTRIES: Final = cast(Table, AuditEvent.__table__)
_HEADS: Final = cast(Table, AuditChainHead.__table__)
_HEAD_ROW: Final = select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.id == HEAD_ID).with_for_update()
_INSERT_ENTRY: Final = insert(_ENTRIES)
_MOVE_HEAD: Final = (
    update(_HEADS).where(_HEADS.c.id == HEAD_ID).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
"""Built once: the statements of :func:`append_alone` (Core on the tables, no unit of work)."""


def append_alone(session: Session, **columns: Any) -> int:
    """:func:`append` for a transaction that writes this one entry and nothing else (an access audited
    on its own): the head is read, the entry inserted and the head moved by three Core statements, without
    the ORM's unit of work: measured 1.3 -> 0.9 ms of CPU per audited access, interpreter time that a
    picture being drawn beside it waits for. Returns the entry's ``seq``.

    The session must hold no ORM audit head of its own (a fresh transaction: :func:`append` and this are
    not mixed in one transaction).

    Raises:
        RecordError: The chain head is missing (the schema is older than migration 0003).
    """
    return append_onto(session, lock_head_row(session), **columns)


def lock_head_row(session: Session) -> Any:
    """The chain head's ``(seq, hash)``, locked for the rest of the transaction (``SELECT ... FOR UPDATE``
    on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the one write lock): taken first by an
    audited read, every audited change of the data it reads (a consent withdrawn, a grant opened) is
    ordered wholly before or wholly after it, in the chain as in the data.

    Raises:
        RecordError: The chain head is missing (the schema is older than migration 0003).
    """
    head = session.execute(_HEAD_ROW).first()
    if head is None:
        raise RecordError("The audit chain head is missing; run the record's migrations (0003).")
    return head


def append_onto(session: Session, head: Any, **columns: Any) -> int:
    """:func:`append_alone` onto a head already locked by :func:`lock_head_row` in this transaction (and
    not moved since). Returns the entry's ``seq``."""
    return append_all_onto(session, head, [columns])


def append_all_onto(session: Session, head: Any, entries: Sequence[Mapping[str, Any]]) -> int:
    """Chain ``entries`` (the columns of :func:`append`, in order) onto a head locked by
    :func:`lock_head_row` in this transaction: one insert of every entry and one move of the head.
    Returns the last entry's ``seq`` (the head's when ``entries`` is empty)."""
    seq, prev_hash = int(head.seq), str(head.hash)
    rows = []
    request_id = current_request_id()
    for columns in entries:
        seq += 1
        entry = {"request_id": request_id, **columns, "seq": seq, "prev_hash": prev_hash}
        prev_hash = entry_hash(entry)
        rows.append({**entry, "hash": prev_hash})
    if not rows:
        return seq
    session.execute(_INSERT_ENTRY, rows)
    session.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev_hash})
    _appended(session, prev_seq=int(head.seq), prev_hash=str(head.hash), seq=seq, digest=prev_hash)
    return seq


def append_requeued(
    session: Session, *, table: Any, ids: Sequence[int], kind: str, columns: Mapping[str, Any]
) -> None:
    """One entry per dead letter handed back for new attempts, in the transaction that hands it back.

    Args:
        session: The write transaction of the requeue.
        table: The queue's table (``outbox`` or ``output_builds``: ``id`` and ``result_id`` columns).
        ids: The rows requeued.
        kind: ``delivery`` or ``build``: the entry's ``resource_id`` is the dead-letter id
            (``delivery:42``), its ``resource_type`` ``DeadLetter``.
        columns: Who asked (``subject``, ``role``, ``facility``, ``client``), the ``action`` and
            ``outcome``; ``patient_id`` is the patient of each row's result.
    """
    rows = session.execute(select(table.c.id, table.c.result_id).where(table.c.id.in_(list(ids)))).all()
    wanted = {row.result_id for row in rows}
    patients = dict(session.execute(select(Result.id, Result.patient_id).where(Result.id.in_(wanted))).all())
    for row in sorted(rows, key=lambda r: int(r.id)):
        append(
            session,
            **columns,
            resource_type="DeadLetter",
            resource_id=f"{kind}:{row.id}",
            patient_id=patients.get(row.result_id),
        )


@dataclass(frozen=True)
class AuditProblem:
    """One place where the chain does not hold: the entry (``seq``, or ``None``) and what is wrong."""

    seq: int | None
    row_id: int | None
    reason: str


@dataclass
class AuditReport:
    """What :func:`verify` found: entries read, the head, and every problem (empty when intact)."""

    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[AuditProblem] = field(default_factory=list)
    anchored_seq: int | None = None

    @property
    def ok(self) -> bool:
        """True when every entry matches its hash and chains onto the one before, up to the head."""
        return not self.problems

    def add(self, problem: AuditProblem) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(problem)


def _rows(session: Session) -> Iterator[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.seq.is_not(None)).order_by(AuditEvent.seq)
    yield from session.scalars(query.execution_options(yield_per=1000))


def verify(session: Session) -> AuditReport:
    """Walk the whole trail in ``seq`` order and check every hash and link, then the head."""
    report = AuditReport()
    head = session.get(AuditChainHead, HEAD_ID)
    if head is None:
        report.add(AuditProblem(None, None, "The audit chain head is missing; the trail cannot be checked."))
        return report
    report.head_seq, report.head_hash = head.seq, head.hash
    unchained = session.scalars(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(5)).all()
    for row_id in unchained:
        report.add(
            AuditProblem(None, row_id, "The entry has no position in the chain (it was inserted by hand).")
        )
    expected_seq, expected_prev = 1, GENESIS
    for event in _rows(session):
        report.entries += 1
        seq = int(event.seq or 0)
        if seq != expected_seq:
            # A gap breaks the link too; one problem says it better than two.
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq} to {seq - 1}"
            report.add(AuditProblem(seq, event.id, f"Entry {missing} before this one is missing (deleted)."))
        elif event.prev_hash != expected_prev:
            report.add(AuditProblem(seq, event.id, "The entry does not chain onto the entry before it."))
        if entry_hash(_content(event)) != event.hash:
            report.add(AuditProblem(seq, event.id, "The entry's content was changed after it was written."))
        expected_seq, expected_prev = seq + 1, str(event.hash)
    last_seq = expected_seq - 1
    if head.seq != last_seq or head.hash != expected_prev:
        if head.seq > last_seq:
            reason = f"The newest entries after {last_seq} (up to {head.seq}) are missing (deleted)."
        else:
            reason = "The chain head does not point at the newest entry (it was changed by hand)."
        report.add(AuditProblem(head.seq, None, reason))
    return report


_ANCHOR_MISSING: Final = "The audit head anchor file is missing (it was deleted)."


@dataclass(frozen=True)
class AnchorReading:
    """What the anchor file held when it was read: its head (None: nothing anchored), or why not."""

    head: AnchoredHead | None = None
    problem: str | None = None


def read_anchor(anchor: HeadAnchor) -> AnchorReading:
    """Read ``anchor`` without raising."""
    from inference.record._anchor import AnchorError

    try:
        return AnchorReading(head=anchor.read())
    except AnchorError as e:
        return AnchorReading(problem=str(e))


def check_anchor(record: Any, report: AuditReport, before: AnchorReading) -> None:
    """Add a problem to ``report`` unless the chain holds the anchored head exactly.

    A trail rewritten from some entry on (every hash recomputed) or cut at the end (head moved back)
    verifies on its own; against the anchor written outside the database it does not.

    ``before`` is the anchor as read *before* the chain was walked. The anchor moves after each commit,
    so on a server that is filing meanwhile, an anchor read after the walk may name entries committed
    after the walk's snapshot: that would read as a cut tail. Read first, it names an entry the walk
    saw (unless the trail was cut).
    """
    if before.problem is not None:
        report.add(AuditProblem(None, None, before.problem))
        return
    anchored = before.head
    if anchored is None:
        # Nothing anchored when the walk began. An anchor written since then (the first entries were
        # being filed) is checked if the walk reached its entry; a later one says nothing of this walk.
        after = read_anchor(record.anchor)
        if after.problem is not None:
            report.add(AuditProblem(None, None, after.problem))
            return
        if after.head is None:
            if record.anchor.keyed and report.head_seq > 0:
                report.add(AuditProblem(None, None, _ANCHOR_MISSING))
            return
        if after.head.seq > report.head_seq:
            return
        anchored = after.head
    report.anchored_seq = anchored.seq
    if anchored.seq > report.head_seq:
        report.add(
            AuditProblem(
                anchored.seq,
                None,
                f"The trail ends at entry {report.head_seq} but entry {anchored.seq} was anchored: "
                "its tail was removed.",
            )
        )
        return
    with record.sessions() as session:
        found = session.scalars(select(AuditEvent.hash).where(AuditEvent.seq == anchored.seq)).first()
    if found != anchored.hash:
        report.add(
            AuditProblem(
                anchored.seq,
                None,
                "The entry at the anchored head has another hash than the one anchored: the trail was "
                "rewritten (re-chained) from this entry or earlier.",
            )
        )


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """An entry as plain values (time as an aware datetime)."""
    return {
        "id": event.id,
        "seq": event.seq,
        "time": as_utc(event.time),
        "subject": event.subject,
        "role": event.role,
        "facility": event.facility,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "patient_id": event.patient_id,
        "outcome": event.outcome,
        "client": event.client,
        "request_id": event.request_id,
        "hash": event.hash,
    }


# Audit entries name what they touched by these resource types (the API's and the FHIR views').
_RESULT_TYPES: Final = ("Result", "DiagnosticReport", "RiskAssessment", "Provenance", "Image", "Heatmap")
_PATIENT_TYPES: Final = ("Patient", "Consent")
# A read of several patients at once (a FHIR search, a worklist) writes one entry per patient disclosed
# and names no row (:func:`inference.record._reads.read_listing`); these types list results.
_LISTING_TYPES: Final = (
    "DiagnosticReport",
    "RiskAssessment",
    "Provenance",
    "Observation",
    "ImagingStudy",
    "Worklist",
)
# The one role that reads every facility's results (the access table's "none of these" column).
_READS_EVERYTHING: Final = "admin"


def grants_of(facility: str) -> Any:
    """SQL condition on :class:`BreakGlass` rows: the grants ``facility``'s auditor reviews.

    Those its staff opened, those on a patient it filed first (the patient itself is its own), and those
    that opened one of its results: it had filed a result of the patient before the grant expired. A
    grant that ran out before the facility filed anything of the patient opened nothing of its own, so
    filing a study of a patient does not open the patient's past emergency accesses either.
    """
    own_patient = aliased(Patient)
    own_result = aliased(Result)
    return or_(
        BreakGlass.facility == facility,
        exists(
            select(own_patient.id).where(
                own_patient.id == BreakGlass.patient_id, own_patient.facility == facility
            )
        ),
        exists(
            select(own_result.id).where(
                own_result.patient_id == BreakGlass.patient_id,
                own_result.facility == facility,
                own_result.created_at < BreakGlass.expires_at,
            )
        ),
    )


def _about_data_of(facility: str) -> Any:
    """Entries about a row ``facility`` owns: one of its results (or a FHIR view of one: report, risk
    assessment, provenance, a finding's or a vital sign's Observation; its image or a heatmap), one of its
    studies, or a patient it filed first (the patient itself and its consent, which are that facility's
    to keep), an operator's retry of one of its results' dead letters, the break-the-glass grants that
    opened its results (:func:`grants_of`), and the searches and worklists that may have disclosed one
    of its results (:func:`_listing_of`).

    Filing a result of a patient does not open the rest of the patient's trail: who at another facility
    read that facility's results is the other facility's business, not this one's.
    """
    results = select(Result.id).where(Result.facility == facility)
    findings = (
        select(Finding.id).join(Result, Finding.result_id == Result.id).where(Result.facility == facility)
    )
    vitals = select(Result.vitals_id).where(Result.facility == facility, Result.vitals_id.is_not(None))
    studies = select(Study.id).where(Study.facility == facility)
    patients = select(Patient.id).where(Patient.facility == facility)
    return or_(
        and_(AuditEvent.resource_type.in_(_RESULT_TYPES), AuditEvent.resource_id.in_(results)),
        and_(
            AuditEvent.resource_type == "Observation",
            or_(
                AuditEvent.resource_id.in_(findings),
                # A vital sign's Observation id is its vitals row's id (36 characters), a dash, a suffix.
                func.substr(AuditEvent.resource_id, 1, 36).in_(vitals),
            ),
        ),
        and_(AuditEvent.resource_type == "ImagingStudy", AuditEvent.resource_id.in_(studies)),
        and_(AuditEvent.resource_type.in_(_PATIENT_TYPES), AuditEvent.patient_id.in_(patients)),
        # An operator's retry of a dead letter re-sends one of its results' outputs.
        and_(AuditEvent.resource_type == "DeadLetter", AuditEvent.resource_id.in_(_dead_letters_of(results))),
        and_(
            AuditEvent.resource_type == "BreakGlass",
            AuditEvent.action == "break-glass:open",
            AuditEvent.resource_id.in_(select(BreakGlass.id).where(grants_of(facility))),
        ),
        _listing_of(facility),
    )


def _listing_of(facility: str) -> Any:
    """Entries of searches and worklists (one per patient, naming no row) that may have disclosed one of
    ``facility``'s results: it had filed a result of the patient by then, and the reader could read
    another facility's results of the patient (a break-the-glass grant it read through, a reader of every
    facility's results, or the patient's consent to sharing between facilities). A worklist of a
    facility-bound reader lists that facility's results only.

    Its own staff's reads are its own already; a reader of another facility that could read only its own
    facility's rows disclosed nothing of this one's, and is not shown.
    """
    filed_then = exists(
        select(Result.id).where(
            Result.patient_id == AuditEvent.patient_id,
            Result.facility == facility,
            Result.created_at <= AuditEvent.time,
        )
    )
    shared = exists(
        select(Consent.patient_id).where(
            Consent.patient_id == AuditEvent.patient_id, Consent.facility_sharing
        )
    )
    return and_(
        AuditEvent.resource_id.is_(None),
        AuditEvent.resource_type.in_(_LISTING_TYPES),
        or_(
            AuditEvent.resource_type != "Worklist",
            AuditEvent.facility.is_(None),
            AuditEvent.role == _READS_EVERYTHING,
        ),
        or_(AuditEvent.outcome == "break_glass", AuditEvent.role == _READS_EVERYTHING, shared),
        filed_then,
    )


def _dead_letters_of(results: Any) -> Any:
    """The dead-letter ids (``delivery:42``, ``build:7``: :func:`append_requeued`) of the outbox rows and
    output builds of ``results`` (a SELECT of result ids)."""
    queues = (("delivery", "outbox"), ("build", "output_builds"))
    parts = []
    for kind, name in queues:
        # The two columns by name: ``_outbox`` and ``_builds`` declare the tables and import this module.
        queue = table(name, column("id"), column("result_id"))
        parts.append(
            select(literal(f"{kind}:", String) + sql_cast(queue.c.id, String)).where(
                queue.c.result_id.in_(results)
            )
        )
    return union_all(*parts)


def search(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    since_inclusive: bool = True,
    until_inclusive: bool = False,
    patient_id: str | None = None,
    agent: str | None = None,
    seq: int | None = None,
    max_seq: int | None = None,
    limit: int = 50,
    offset: int = 0,
    facility: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Entries matching every given filter, newest first: ``(total matches, one page)``.

    ``max_seq`` leaves out the entries appended after it, so that the pages of one search stay the same
    list while the trail grows (each page read is an entry itself).

    ``facility`` scopes the trail for an auditor of that facility to what it needs to know: entries of its
    own staff, and every entry about its own data, whoever made it (:func:`_about_data_of`): its results,
    its studies, the patients it filed first, the grants that opened its results, the searches and
    worklists that may have disclosed them. Filing a result of another facility's patient shows nothing
    of who at the other facility read the other facility's data.
    """
    conditions: list[Any] = [AuditEvent.seq.is_not(None)]
    if facility is not None:
        conditions.append(or_(AuditEvent.facility == facility, _about_data_of(facility)))
    if since is not None:
        conditions.append(AuditEvent.time >= since if since_inclusive else AuditEvent.time > since)
    if until is not None:
        conditions.append(AuditEvent.time <= until if until_inclusive else AuditEvent.time < until)
    if patient_id is not None:
        conditions.append(AuditEvent.patient_id == patient_id)
    if agent is not None:
        conditions.append(AuditEvent.subject == agent)
    if seq is not None:
        conditions.append(AuditEvent.seq == seq)
    if max_seq is not None:
        conditions.append(AuditEvent.seq <= max_seq)
    total = int(session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions)) or 0)
    if limit == 0:
        return total, []
    rows = session.scalars(
        select(AuditEvent).where(*conditions).order_by(AuditEvent.seq.desc()).limit(limit).offset(offset)
    )
    return total, [event_dict(e) for e in rows]
