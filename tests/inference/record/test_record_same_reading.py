"""One reading of a patient's vital signs files one result, whoever of the facility sends it; on both
backends. A request without an observation time is never taken for another's copy.

Before, a reading was "the same" only from the same token: a monitor's gateway and a nurse's app of one
ward sending the same reading filed two results, two lines on the worklist.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from _record_data import patient, triage
from sqlalchemy import text

from inference.record import Record, StoredResult, TriageResultIn, request_keys

CHARTED = datetime(2026, 11, 22, 8, 15, tzinfo=UTC)


def _count(record: Record, table: str) -> int:
    with record.engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _send(
    record: Record,
    data: TriageResultIn,
    *,
    subject: str = "monitor-gateway",
    facility: str | None = "north",
    charted: datetime | None = CHARTED,
    received: datetime | None = None,
    vitals: dict | None = None,
) -> StoredResult:
    """File ``data`` as ``POST /v1/vitals`` does: observed when charted, else when received."""
    received = received or datetime.now(UTC)
    sent = vitals if vitals is not None else dict(data.vitals)
    keys = request_keys(
        subject=subject,
        facility=facility,
        patient=data.patient,
        observed_at=charted,
        vitals=sent,
        idempotency_key=None,
    )
    filed = replace(data, observed_at=charted or received, vitals=sent, request=keys)
    return record.results.save_triage(data=filed)


def test_two_senders_of_one_facility_sending_one_reading_file_one_result(record: Record) -> None:
    data = triage(pat=patient("IPP-SAME"))
    gateway = _send(record, data, subject="monitor-gateway")
    nurse = _send(record, data, subject="nurse-app")
    assert gateway.created and not nurse.created
    assert nurse.result_id == gateway.result_id
    assert _count(record, "results") == 1

    # Another facility's sender files its own result (its own worklist; it may not read the first).
    south = _send(record, data, subject="nurse-app", facility="south")
    assert south.created and south.result_id != gateway.result_id

    # Another time, or other values at the same time, are other readings.
    later = _send(record, data, charted=CHARTED + timedelta(minutes=15))
    corrected = _send(record, data, vitals={**data.vitals, "spo2": 89.0})
    assert later.created and corrected.created
    assert len({gateway.result_id, south.result_id, later.result_id, corrected.result_id}) == 4


def test_a_token_without_a_facility_shares_its_readings_with_no_other(record: Record) -> None:
    data = triage(pat=patient("IPP-NOFAC"))
    first = _send(record, data, subject="script-a", facility=None)
    again = _send(record, data, subject="script-a", facility=None)
    other = _send(record, data, subject="script-b", facility=None)
    assert first.created and not again.created and again.result_id == first.result_id
    assert other.created


def test_untimed_copies_are_each_filed(record: Record) -> None:
    """Without ``observed_at`` the server cannot tell a resend from a new reading of the same values a
    moment later: each is filed (a sender that retries charts ``observed_at`` or sends a key)."""
    data = triage(pat=patient("IPP-UNTIMED"))
    now = datetime.now(UTC)
    first = _send(record, data, charted=None, received=now)
    again = _send(record, data, charted=None, received=now + timedelta(seconds=1))
    assert first.created and again.created and again.result_id != first.result_id
    assert _count(record, "results") == 2


def test_concurrent_copies_of_one_reading_file_one_result(record: Record) -> None:
    data = triage(pat=patient("IPP-RACE"))
    received = datetime.now(UTC)
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def submit() -> None:
        barrier.wait()
        try:
            outcomes.append(_send(record, data, subject=f"sender-{threading.get_ident()}", received=received))
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            outcomes.append(e)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(o, StoredResult) for o in outcomes), outcomes
    assert sum(o.created for o in outcomes if isinstance(o, StoredResult)) == 1
    assert _count(record, "results") == 1


def test_a_resend_filed_before_readings_were_keyed_by_facility_is_still_found(record: Record) -> None:
    """A result filed under the old key (the sending token's subject and facility, stored by earlier
    versions) answers that token's resend after the upgrade."""
    data = triage(pat=patient("IPP-UPGRADE"))
    content = json.dumps(
        {
            "patient": [data.patient.identifier, data.patient.issuer or ""],
            "observed_at": "2026-11-22T08:15:00.000Z",
            "vitals": {name: data.vitals[name] for name in sorted(data.vitals)},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    old_key = hashlib.sha256("\x1f".join(["observation", "monitor-gateway\x1fnorth", content]).encode())
    first = _send(record, data)
    with record.engine.begin() as connection:
        connection.execute(text("UPDATE results SET observation_key = :k"), {"k": old_key.hexdigest()})
    again = _send(record, data)
    assert not again.created and again.result_id == first.result_id
