"""A client that syncs from a searchset Bundle's ``timestamp`` (``_lastUpdated=ge<timestamp>``, or
``$everything?_since=<timestamp>``) misses nothing that changes while the page is read: the timestamp is
never later than what the page was read from, on both backends.

A write is committed after each statement of the read in turn (SQLAlchemy's cursor event, in the reading
thread): whatever the moment, the change is on the page or the client's next sync brings it (a duplicate
is fine, a loss is not). On SQLite a read transaction reads one snapshot, taken at its first statement;
on PostgreSQL each statement reads its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from _record_data import patient, triage
from sqlalchemy import event, select, update

from inference.record import AuditIn, Record
from inference.record._models import Patient
from inference.record._scope import EVERYTHING, Scope

BASE = "http://127.0.0.1:8000/fhir"


@contextmanager
def _write_after(record: Record, statement: int, write: Callable[[], None]) -> Iterator[list[int]]:
    """Runs ``write`` once, right after the ``statement``-th SELECT of what the block reads (none when it
    reads fewer); yields a list that holds how many SELECTs the block ran once it ends."""
    seen = [0]
    active = [True]

    def after(*_args: Any) -> None:
        sql = str(_args[2]).lstrip().upper()
        if not active[0] or not sql.startswith("SELECT"):
            return
        seen[0] += 1
        if seen[0] == statement:
            active[0] = False
            write()
            # The reader goes on in a later millisecond than the write (Bundle instants are to the ms).
            time.sleep(0.003)
            active[0] = True

    event.listen(record.engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(record.engine, "after_cursor_execute", after)


def _ids(bundle: dict[str, Any], resource_type: str) -> set[str]:
    return {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type}


def test_a_patient_filed_while_a_search_reads_is_on_the_page_or_found_by_the_next_sync(
    record: Record,
) -> None:
    record.results.save_triage(data=triage(pat=patient("IPP-GAP-0")))

    def search() -> dict[str, Any]:
        return record.fhir.search(
            resource_type="Patient", params={"_lastUpdated": "ge2000-01-01", "_count": "500"}, base_url=BASE
        )

    with _write_after(record, 0, lambda: None) as seen:
        search()
    assert seen[0] >= 2  # the count, then the page
    filed: list[str] = []

    def write() -> None:
        stored = record.results.save_triage(data=triage(pat=patient(f"IPP-GAP-{len(filed) + 1}")))
        filed.append(stored.patient_id)

    for statement in range(1, seen[0] + 1):
        with _write_after(record, statement, write):
            bundle = search()
        assert len(filed) == statement
        patient_id = filed[-1]
        synced = record.fhir.search(
            resource_type="Patient",
            params={"_lastUpdated": f"ge{bundle['timestamp']}", "_count": "500"},
            base_url=BASE,
        )
        assert patient_id in _ids(bundle, "Patient") | _ids(synced, "Patient"), statement


def test_a_result_filed_while_everything_reads_is_on_the_page_or_brought_by_since(record: Record) -> None:
    first = record.results.save_triage(data=triage(pat=patient("IPP-GAP-E")))

    def everything(**params: str) -> dict[str, Any]:
        bundle = record.fhir.everything(
            patient_id=first.patient_id, params={"_count": "500", **params}, base_url=BASE
        )
        assert bundle is not None
        return bundle

    with _write_after(record, 0, lambda: None) as seen:
        everything()
    assert seen[0] >= 3
    filed: list[str] = []

    def write() -> None:
        filed.append(record.results.save_triage(data=triage(pat=patient("IPP-GAP-E"))).result_id)

    for statement in range(1, seen[0] + 1):
        with _write_after(record, statement, write):
            bundle = everything()
        assert len(filed) == statement
        result_id = filed[-1]
        synced = everything(_since=bundle["timestamp"])
        brought = _ids(bundle, "RiskAssessment") | _ids(synced, "RiskAssessment")
        assert result_id in brought, statement


def test_a_change_in_the_same_millisecond_as_since_is_brought(record: Record) -> None:
    """Both backends keep ``updated`` to the microsecond; instants are served to the millisecond and
    ``_since`` / ``_lastUpdated=ge`` compare at or after: a change later in that millisecond comes back."""
    first = record.results.save_triage(data=triage(pat=patient("IPP-GAP-MS")))
    changed = datetime(2026, 3, 4, 5, 6, 7, 123999, tzinfo=UTC)
    with record.engine.begin() as connection:
        connection.execute(update(Patient).where(Patient.id == first.patient_id).values(updated=changed))
    served = record.fhir.read(resource_type="Patient", resource_id=first.patient_id)
    assert served is not None and served["meta"]["lastUpdated"] == "2026-03-04T05:06:07.123Z"
    since = "2026-03-04T05:06:07.123Z"
    bundle = record.fhir.everything(patient_id=first.patient_id, params={"_since": since}, base_url=BASE)
    assert bundle is not None and first.patient_id in _ids(bundle, "Patient")
    found = record.fhir.search(resource_type="Patient", params={"_lastUpdated": f"ge{since}"}, base_url=BASE)
    assert first.patient_id in _ids(found, "Patient")


SYNC_CLIENT = Scope(subject="sync-client", facility=None, grounds=frozenset({EVERYTHING}))
SYNC_AUDIT = AuditIn(subject="sync-client", role="admin", facility=None, action="fhir:read")


def _read_while_filing(
    record: Record, paused_after: str, file: Callable[[], str], read: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], str]:
    """``read()`` while ``file()`` runs in another thread, paused after its statement that starts with
    ``paused_after`` (its rows stamped, not committed) until the read ends. On SQLite the read waits for
    that writer's lock: the pause times out, the filing commits, then the read reads it. Returns the read's
    Bundle and what ``file`` returned."""
    stamped, done = threading.Event(), threading.Event()

    def after(*args: Any) -> None:
        if threading.current_thread() is writer and str(args[2]).lstrip().upper().startswith(paused_after):
            stamped.set()
            done.wait(timeout=2)

    filed: list[str] = []
    writer = threading.Thread(target=lambda: filed.append(file()))
    event.listen(record.engine, "after_cursor_execute", after)
    try:
        writer.start()
        assert stamped.wait(timeout=30)
        time.sleep(0.003)  # the read's instants are to the millisecond: it starts in a later one
        bundle = read()
        done.set()
        writer.join(timeout=30)
    finally:
        event.remove(record.engine, "after_cursor_execute", after)
    assert filed
    return bundle, filed[0]


def test_a_filing_in_flight_while_an_audited_search_reads_is_found_by_the_next_sync(record: Record) -> None:
    """A filing stamps the new patient's ``updated`` when it writes the row, and commits later (its audit
    entry, its result's rows): a search that reads in between does not see it, so the Bundle's timestamp
    must not be later than that stamp, or a client syncing with ``_lastUpdated=ge<timestamp>`` never gets
    the patient. The search is the API's (audited, scoped)."""
    record.results.save_triage(data=triage(pat=patient("IPP-GAP-F0")))

    def search(since: str) -> dict[str, Any]:
        return record.fhir_reads.search(
            resource_type="Patient",
            params={"_lastUpdated": f"ge{since}", "_count": "500"},
            base_url=BASE,
            scope=SYNC_CLIENT,
            audit=SYNC_AUDIT,
        )

    bundle, patient_id = _read_while_filing(
        record,
        "INSERT INTO PATIENTS",
        lambda: record.results.save_triage(data=triage(pat=patient("IPP-GAP-F1"))).patient_id,
        lambda: search("2000-01-01"),
    )
    synced = search(bundle["timestamp"])
    assert patient_id in _ids(bundle, "Patient") | _ids(synced, "Patient")


def test_a_result_in_flight_while_an_audited_everything_reads_is_brought_by_since(record: Record) -> None:
    """The same for ``$everything`` (the API's, audited): a result filed while the page was read is on it
    or brought by ``_since=<timestamp>``."""
    first = record.results.save_triage(data=triage(pat=patient("IPP-GAP-FE")))

    def everything(**params: str) -> dict[str, Any]:
        read = record.fhir_reads.everything(
            patient_id=first.patient_id,
            params={"_count": "500", **params},
            base_url=BASE,
            scope=SYNC_CLIENT,
            audit=SYNC_AUDIT,
        )
        assert read.value is not None
        return read.value

    bundle, result_id = _read_while_filing(
        record,
        "INSERT INTO RESULTS",
        lambda: record.results.save_triage(data=triage(pat=patient("IPP-GAP-FE"))).result_id,
        everything,
    )
    synced = everything(_since=bundle["timestamp"])
    assert result_id in _ids(bundle, "RiskAssessment") | _ids(synced, "RiskAssessment")


def test_everything_lists_what_was_filed_while_another_transaction_stays_open(record: Record) -> None:
    """A transaction left open on the database (a dump, an idle session) holds the Bundle's timestamp back,
    never what the page lists: a result committed before the read is on it, and on the next page too."""
    first = record.results.save_triage(data=triage(pat=patient("IPP-GAP-OPEN")))
    with record.engine.connect() as open_elsewhere, open_elsewhere.begin():
        open_elsewhere.execute(select(Patient.id).limit(1)).all()
        time.sleep(0.003)
        filed = record.results.save_triage(data=triage(pat=patient("IPP-GAP-OPEN"))).result_id
        read = record.fhir_reads.everything(
            patient_id=first.patient_id,
            params={"_count": "1", "_type": "RiskAssessment"},
            base_url=BASE,
            scope=SYNC_CLIENT,
            audit=SYNC_AUDIT,
        )
        assert read.value is not None
        listed = _ids(read.value, "RiskAssessment")
        assert read.value["total"] == 2
        following = dict(
            parse_qsl(
                urlsplit(next(link["url"] for link in read.value["link"] if link["relation"] == "next")).query
            )
        )
        second = record.fhir_reads.everything(
            patient_id=first.patient_id, params=following, base_url=BASE, scope=SYNC_CLIENT, audit=SYNC_AUDIT
        )
        assert second.value is not None
        listed |= _ids(second.value, "RiskAssessment")
        assert filed in listed
        # Every page carries the first page's timestamp, which a resuming client may use.
        assert second.value["timestamp"] == read.value["timestamp"]
