"""The dead-letter queue as operators see it: what no longer retries by itself, retrying it, discarding it.

Three kinds of item stop retrying after their bounded attempts:

- ``study``: a study received by ``dxassist listen`` whose analysis kept failing; its files are in
  ``DXASSIST_HOME/dead-letter/studies/<study>``; retrying moves them back to ``incoming/`` (the listener
  takes them up within seconds);
- ``build``: a filed result whose DICOM outputs (SR, heatmap captures) could not be built; retrying
  hands it back to the outbox worker of ``dxassist serve`` / ``listen``;
- ``delivery``: one output to one destination, refused for good or out of attempts; retrying puts it
  back in its old place in the destination's queue.

Listing them is audited (``dead-letter:read``, one entry per item listed, naming its result's
patient): the builds and deliveries listed are read in the transaction that appends the entries.

Each item has an id ``<kind>:<ref>`` (``delivery:42``, ``build:7``, ``study:1.2.840...``) that
``dxassist dead-letter retry`` and ``discard`` take. Every retry is audited (``dead-letter:retry``, the
item's id as the resource): a build's or a delivery's in the transaction that hands it back, a study's
right after its folder moved (``success``), or did not (``not_found``, ``failure``).

Discarding gives up on an item for good, so that what will never be sent stops holding patient data: a
delivery keeps its row (state ``discarded``) but not its bytes, a build is never tried again and drops
its source header, a study's folder is deleted from disk. Every discard is audited
(``dead-letter:discard``) the same way as a retry. :class:`DeadLetterGauge` exposes the counts in
``/metrics`` as ``dxassist_dead_letters{kind}``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom._stable import DEAD_STUDIES_DIR
from inference.observability import correlated, current_request_id, new_correlation_id
from inference.services._errors import ServiceError

if TYPE_CHECKING:
    from inference.record import AuditIn, Record

logger = logging.getLogger(__name__)

KINDS: Final = ("study", "build", "delivery")
INCOMING_DIR: Final = "incoming"
RETRY_ACTION: Final = "dead-letter:retry"
DISCARD_ACTION: Final = "dead-letter:discard"
READ_ACTION: Final = "dead-letter:read"


class DeadLetterError(ServiceError, ValueError):
    """An id given to retry or discard is malformed or names nothing in the dead-letter queue, or a
    study's folder could not be moved back or deleted."""


@dataclass(frozen=True)
class DeadLetter:
    """One item of the dead-letter queue.

    Attributes:
        id: ``<kind>:<ref>``, what ``retry`` and ``discard`` take.
        kind: ``study``, ``build`` or ``delivery``.
        subject: The result id (build, delivery) or the study's folder name (study).
        destination: The destination (delivery), the destinations waiting (build), or None.
        attempts: Attempts made.
        code: Error code of the last failure.
        error: Transport, status or exception type of the last failure (never patient data).
        since: When it became a dead letter (ISO 8601, UTC).
    """

    id: str
    kind: str
    subject: str
    destination: str | None
    attempts: int
    code: str | None
    error: str | None
    since: str | None


def list_dead_letters(
    *, record: Record, home: Path, kind: str | None = None, subject: str, role: str = "admin"
) -> list[DeadLetter]:
    """Every dead letter (of one ``kind`` when given), studies first, then builds, then deliveries, audited.

    What is listed names results and studies (health data): the builds and deliveries are read in one
    transaction with the listing's audit entries (``dead-letter:read`` by ``subject``, one per item
    listed with the patient of its result, one naming nothing for an empty queue); the dead studies are
    read from the spool just before and named in the same entries.

    Args:
        record: The patient record (builds and deliveries).
        home: The listener's spool (``DXASSIST_DIMSE_SPOOL``, ``DXASSIST_HOME`` by default): its studies.
        kind: Only this kind.
        subject: Who lists, for the audit trail (``cli:<user>`` from the command line).
        role: Their role.

    Raises:
        RecordError: The entries could not be written: nothing is listed.
    """
    from inference.record import AuditIn

    audit = AuditIn(subject=subject, role=role, facility=None, action=READ_ACTION)
    if current_request_id() is not None:
        return _listed(record, home, kind, audit=audit)
    # From the command line: the log lines and audit entries of this listing share an id.
    with correlated(new_correlation_id("dead-letters")):
        return _listed(record, home, kind, audit=audit)


def _listed(record: Record, home: Path, kind: str | None, *, audit: AuditIn | None) -> list[DeadLetter]:
    """The dead letters (of ``kind``); read with their audit entries when ``audit`` is given, else
    unaudited, for a retry or a discard of every one (which audits each item it acts on)."""
    from inference.dicom._stable import dead_studies

    studies = [
        DeadLetter(
            id=f"study:{item['key']}",
            kind="study",
            subject=str(item["study"]),  # the Study UID; the id names the folder (node and study)
            destination=None,
            attempts=int(item.get("attempts") or 0),
            code=item.get("code"),
            error=item.get("error"),
            since=item.get("dead_at"),
        )
        for item in (dead_studies(home / DEAD_STUDIES_DIR) if kind in (None, "study") else [])
    ]
    builds, deliveries = kind in (None, "build"), kind in (None, "delivery")
    if audit is not None:
        dead_builds, dead_deliveries = record.outbox.read_dead_letters(
            audit=audit,
            builds=builds,
            deliveries=deliveries,
            studies=[item.id.removeprefix("study:") for item in studies],
        )
    else:
        dead_builds = record.builds.dead() if builds else []
        dead_deliveries = record.outbox.dead() if deliveries else []
    out = list(studies)
    out += [
        DeadLetter(
            id=f"build:{row['id']}",
            kind="build",
            subject=row["result_id"],
            destination=",".join(row["destinations"]) or None,
            attempts=row["attempts"],
            code=row["error_code"],
            error=row["last_error"],
            since=row["dead_at"],
        )
        for row in dead_builds
    ]
    out += [
        DeadLetter(
            id=f"delivery:{row['id']}",
            kind="delivery",
            subject=row["result_id"],
            destination=row["destination"],
            attempts=row["attempts"],
            code=row["error_code"],
            error=row["last_error"],
            since=row["dead_at"],
        )
        for row in dead_deliveries
    ]
    return out


def _parse(ids: Iterable[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for item in ids:
        kind, _, ref = item.partition(":")
        if kind not in KINDS or not ref:
            raise DeadLetterError(
                f"{item[:80]!r} is not a dead-letter id; ids look like study:<folder>, build:<n> or "
                "delivery:<n> (see `dxassist dead-letter list`)."
            )
        if kind != "study" and not ref.isdigit():
            raise DeadLetterError(f"{item[:80]!r} is not a dead-letter id; {kind} ids end with a number.")
        wanted[kind].append(ref)
    return wanted


def retry_dead_letters(
    *,
    record: Record,
    home: Path,
    ids: Sequence[str] = (),
    kind: str | None = None,
    every: bool = False,
    subject: str,
    role: str = "admin",
) -> list[str]:
    """Give dead letters a fresh set of attempts, audited; return the ids retried.

    Args:
        record: The patient record (builds and deliveries).
        home: The listener's spool (``DXASSIST_DIMSE_SPOOL``, ``DXASSIST_HOME`` by default): its studies.
        ids: Ids from :func:`list_dead_letters`.
        kind: With ``every``: only this kind.
        every: Retry every dead letter (of ``kind``) instead of ``ids``.
        subject: Who asked, for the audit trail (``cli:<user>`` from the command line).
        role: Their role.

    Raises:
        DeadLetterError: An id is malformed or not in the dead-letter queue (nothing is retried then),
            or a study's folder could not be moved back (audited as ``failure``).
    """
    if current_request_id() is not None:
        return _retry(record=record, home=home, ids=ids, kind=kind, every=every, subject=subject, role=role)
    # From the command line: the log lines and audit entries of this retry share an id.
    with correlated(new_correlation_id("retry")):
        return _retry(record=record, home=home, ids=ids, kind=kind, every=every, subject=subject, role=role)


def _retry(
    *, record: Record, home: Path, ids: Sequence[str], kind: str | None, every: bool, subject: str, role: str
) -> list[str]:
    if every:
        ids = [item.id for item in _listed(record, home, kind, audit=None)]
    wanted = _known(record, home, _parse(ids), done="retried")
    who: dict[str, Any] = {
        "subject": subject,
        "role": role,
        "facility": None,
        "client": None,
        "action": RETRY_ACTION,
    }
    retried = [f"study:{ref}" for ref in wanted["study"] if _release(record, home, ref, who)]
    if wanted["build"]:
        audit = {**who, "time": datetime.now(UTC), "outcome": "success"}
        requeued = record.builds.requeue(ids=[int(r) for r in wanted["build"]], audit=audit)
        retried += [f"build:{n}" for n in requeued]
    if wanted["delivery"]:
        numbers = [int(r) for r in wanted["delivery"]]
        audit = {**who, "time": datetime.now(UTC), "outcome": "success"}
        retried += [f"delivery:{n}" for n in record.outbox.requeue(ids=numbers, audit=audit)]
    logger.info("dead letters retried", extra={"event": "dead_letter_retry", "instances": len(retried)})
    return retried


def _known(record: Record, home: Path, wanted: dict[str, list[str]], *, done: str) -> dict[str, list[str]]:
    """``wanted`` when each of its ids is in the dead-letter queue now.

    Raises:
        DeadLetterError: Some are not (nothing is ``done`` then: ``retried``, ``discarded``).
    """
    from inference.dicom._stable import dead_studies

    known_studies = {item["key"] for item in dead_studies(home / DEAD_STUDIES_DIR)}
    known_builds = {str(row["id"]) for row in record.builds.dead(limit=1_000_000)}
    known_deliveries = {str(row["id"]) for row in record.outbox.dead(limit=1_000_000)}
    missing = (
        [f"study:{ref}" for ref in wanted["study"] if ref not in known_studies]
        + [f"build:{ref}" for ref in wanted["build"] if ref not in known_builds]
        + [f"delivery:{ref}" for ref in wanted["delivery"] if ref not in known_deliveries]
    )
    if missing:
        raise DeadLetterError(
            f"Not in the dead-letter queue: {', '.join(m[:80] for m in missing[:10])}; nothing was {done}."
        )
    return wanted


def discard_dead_letters(
    *,
    record: Record,
    home: Path,
    ids: Sequence[str] = (),
    kind: str | None = None,
    every: bool = False,
    older_than: timedelta | None = None,
    subject: str,
    role: str = "admin",
) -> list[str]:
    """Give up on dead letters for good, audited; return the ids discarded.

    A delivery becomes ``discarded`` and drops its bytes (never sent, never retried; the result lists it
    so); a build becomes ``discarded`` and drops its source header (never built; the result no longer
    lists its outputs as owed); a study's folder under ``dead-letter/studies`` is deleted with its files.
    Each is audited (``dead-letter:discard``, the item's id as the resource): a build's or a delivery's in
    the transaction that discards it, a study's right after its folder was deleted (``success``), or was
    gone (``not_found``) or could not be deleted (``failure``).

    Args:
        record: The patient record (builds and deliveries).
        home: The listener's spool (``DXASSIST_DIMSE_SPOOL``, ``DXASSIST_HOME`` by default): its studies.
        ids: Ids from :func:`list_dead_letters`.
        kind: With ``every``: only this kind.
        every: Discard every dead letter (of ``kind``) instead of ``ids``.
        older_than: With ``every``: only the dead letters that became dead at least this long ago (a
            study whose reason file says not when is kept).
        subject: Who asked, for the audit trail (``cli:<user>`` from the command line).
        role: Their role.

    Raises:
        DeadLetterError: An id is malformed or not in the dead-letter queue, or ``older_than`` came
            without ``every`` (nothing is discarded then), or a study's folder could not be deleted
            (audited as ``failure``; what is left of it stays a dead letter).
    """
    if older_than is not None and not every:
        raise DeadLetterError(
            "An age limit applies to every dead letter (--all), not to ids given one by one."
        )
    if current_request_id() is not None:
        return _discard(
            record=record,
            home=home,
            ids=ids,
            kind=kind,
            every=every,
            older_than=older_than,
            who=(subject, role),
        )
    # From the command line: the log lines and audit entries of this discard share an id.
    with correlated(new_correlation_id("discard")):
        return _discard(
            record=record,
            home=home,
            ids=ids,
            kind=kind,
            every=every,
            older_than=older_than,
            who=(subject, role),
        )


def _discard(
    *,
    record: Record,
    home: Path,
    ids: Sequence[str],
    kind: str | None,
    every: bool,
    older_than: timedelta | None,
    who: tuple[str, str],
) -> list[str]:
    dead_before = None if older_than is None else datetime.now(UTC) - older_than
    if every:
        current = _listed(record, home, kind, audit=None)
        ids = [item.id for item in current if dead_before is None or _dead_by(item.since, dead_before)]
    wanted = _known(record, home, _parse(ids), done="discarded")
    asked: dict[str, Any] = {
        "subject": who[0],
        "role": who[1],
        "facility": None,
        "client": None,
        "action": DISCARD_ACTION,
    }
    discarded = [f"study:{ref}" for ref in wanted["study"] if _remove(record, home, ref, asked)]
    if wanted["build"]:
        numbers = [int(r) for r in wanted["build"]]
        audit = {**asked, "time": datetime.now(UTC)}
        gone = record.builds.discard(ids=numbers, audit=audit, dead_before=dead_before)
        discarded += [f"build:{n}" for n in gone]
    if wanted["delivery"]:
        numbers = [int(r) for r in wanted["delivery"]]
        audit = {**asked, "time": datetime.now(UTC)}
        gone = record.outbox.discard(ids=numbers, audit=audit, dead_before=dead_before)
        discarded += [f"delivery:{n}" for n in gone]
    logger.info("dead letters discarded", extra={"event": "dead_letter_discard", "instances": len(discarded)})
    return discarded


def _dead_by(since: str | None, cutoff: datetime) -> bool:
    """Whether a dead letter whose ``since`` is this became dead at ``cutoff`` or earlier (False: unknown)."""
    if not since:
        return False
    try:
        when = datetime.fromisoformat(since)
    except ValueError:
        return False
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) <= cutoff


def _remove(record: Record, home: Path, ref: str, who: dict[str, Any]) -> bool:
    """Delete a dead study's folder and its files, then audit the deletion with its outcome.

    Like a retry's move, a deletion cannot share the database's transaction: the entry is written right
    after it (``success``, ``not_found`` when the folder went meanwhile, ``failure`` when it could not be
    deleted, what is left of it still listed).
    """
    folder = home / DEAD_STUDIES_DIR / ref
    if "/" in ref or "\\" in ref or ref.startswith(".") or not folder.is_dir():
        _audit_study(record, ref, who, "not_found")
        return False
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        _audit_study(record, ref, who, "not_found")
        return False
    except OSError as e:
        _audit_study(record, ref, who, "failure")
        raise DeadLetterError(
            f"The folder of study:{ref[:80]} could not be deleted ({type(e).__name__}); "
            "what is left of it stays in the dead-letter queue."
        ) from e
    _audit_study(record, ref, who, "success")
    return True


def _release(record: Record, home: Path, ref: str, who: dict[str, Any]) -> bool:
    """Move a dead study's folder back to ``incoming/``, then audit the move with its outcome.

    A folder move cannot share the database's transaction: the entry is written right after it, saying
    what happened (``success``, ``not_found`` when it went meanwhile, ``failure`` when the move failed).
    """
    from inference.dicom._stable import release_study

    try:
        moved = release_study(home / DEAD_STUDIES_DIR, home / INCOMING_DIR, ref)
    except OSError as e:
        _audit_study(record, ref, who, "failure")
        raise DeadLetterError(
            f"The folder of study:{ref[:80]} could not be moved back ({type(e).__name__}); "
            "it stays in the dead-letter queue."
        ) from e
    _audit_study(record, ref, who, "success" if moved else "not_found")
    return moved


def _audit_study(record: Record, ref: str, who: dict[str, Any], outcome: str) -> None:
    record.audit.append(
        subject=who["subject"],
        role=who["role"],
        facility=who["facility"],
        action=who["action"],
        resource_type="DeadLetter",
        resource_id=f"study:{ref}"[:128],
        patient_id=None,
        outcome=outcome,
        client=who["client"],
    )


class DeadLetterGauge:
    """``dxassist_dead_letters{kind}``: how many items are in the dead-letter queue now, read at scrape.

    One instance per process is registered with the Prometheus registry; each open context points it at
    its record and home (:meth:`attach`), so tests that open several apps in one process share it.
    """

    _instance: DeadLetterGauge | None = None

    def __init__(self) -> None:
        self._sources: list[tuple[Record, Path]] = []

    @classmethod
    def attach(cls, record: Record, home: Path) -> DeadLetterGauge:
        """Register the gauge once, and make it read ``record`` and ``home``."""
        from inference.observability import register_scrape_collector

        if cls._instance is None:
            cls._instance = cls()
            register_scrape_collector(cls._instance)
        cls._instance._sources.append((record, home))
        return cls._instance

    def detach(self, record: Record) -> None:
        """Stop reading ``record`` (its context is closing)."""
        self._sources = [(r, h) for r, h in self._sources if r is not record]

    def describe(self) -> list[Any]:
        """No description at registration: the metric is produced at scrape time."""
        return []

    def collect(self) -> Iterable[Any]:
        """One sample per kind, from the latest attached record and home."""
        from prometheus_client.core import GaugeMetricFamily

        from inference.dicom._stable import count_dead_studies

        family = GaugeMetricFamily(
            "dxassist_dead_letters",
            "Items in the dead-letter queue now (no more automatic attempts), by kind "
            "(study, build, delivery).",
            labels=["kind"],
        )
        if self._sources:
            record, home = self._sources[-1]
            try:
                counts = {
                    "study": count_dead_studies(home / DEAD_STUDIES_DIR),
                    "build": record.builds.count(state="dead"),
                    "delivery": record.outbox.count_dead(),
                }
            except Exception:  # a scrape must answer even while the database is down
                logger.warning("The dead-letter counts could not be read for /metrics.", exc_info=True)
                counts = {}
            for kind, value in counts.items():
                family.add_metric([kind], float(value))
        yield family
