"""Migration 0025 on both backends: ``devices.version`` and ``devices.updated`` say which version of a
Device (a model version) a client holds and when it last changed (FHIR ``meta.versionId``,
``meta.lastUpdated``, the read's ``ETag`` and ``Last-Modified``).

A Device is version 1 when filed. It changes when the record completes it: a device filed before migration
0022 whose results never said what its model was trained on is given it from the model file when that
version is put into service (``Record.devices.in_service``); it keeps saying it once the version leaves
service, as version 2. The downgrade to 0024 drops the columns; the upgrade gives every device on file
version 1 as of its filing (the record kept no earlier version), an older server's device included.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from _record_data import CXR_MODEL, TRIAGE_MODEL, imaging, migrate, replace, triage

from inference.record import Record
from inference.record._types import UTCDateTime

BASE = "http://127.0.0.1:8000/fhir"
FILED = datetime(2026, 2, 3, 10, 15, tzinfo=UTC)
SYNTHETIC = (
    "This model was trained on synthetic data only; its output has not been validated on real patients "
    "and must not be used for diagnosis."
)
LINE = "tiny test model (no training data)"
SERVED = replace(TRIAGE_MODEL, training=SYNTHETIC, training_data=LINE)

_DEVICES = sa.table(
    "devices",
    sa.column("id", sa.String),
    sa.column("model_name", sa.String),
    sa.column("model_version", sa.String),
    sa.column("model_sha256", sa.String),
    sa.column("created", UTCDateTime()),
    sa.column("training", sa.Text),
    sa.column("training_data", sa.Text),
)


def _columns(record: Record) -> set[str]:
    return {c["name"] for c in sa.inspect(record.engine).get_columns("devices")} & {"version", "updated"}


def _device(record: Record, device_id: str) -> dict:
    device = record.fhir.read(resource_type="Device", resource_id=device_id)
    assert device is not None
    return device


def _device_of(record: Record, result_id: str) -> str:
    provenance = record.fhir.read(resource_type="Provenance", resource_id=result_id)
    assert provenance is not None
    return str(provenance["agent"][0]["who"]["reference"].removeprefix("Device/"))


def _since(record: Record, instant: str) -> set[str]:
    bundle = record.fhir.search(
        resource_type="Device", params={"_lastUpdated": f"ge{instant}"}, base_url=BASE
    )
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def test_a_device_moves_to_its_next_version_when_the_record_completes_it(record: Record) -> None:
    # Filed with what its model was trained on: nothing to complete, version 1 as long as it is kept.
    told = _device_of(record, record.results.save_triage(data=replace(triage(), model=SERVED)).result_id)
    assert record.devices.in_service(model=SERVED) is False
    filed = _device(record, told)
    assert filed["meta"]["versionId"] == "1" and filed["note"] == [{"text": SYNTHETIC}]
    # Filed without what its model was trained on, as migration 0022 leaves a device whose results never
    # said it.
    quiet = _device_of(record, record.results.save_imaging(data=imaging(model=CXR_MODEL)).result_id)
    before = _device(record, quiet)
    assert before["meta"]["versionId"] == "1" and "note" not in before

    # Put into service: the model file says it, the Device says it from now on, as its next version.
    served = replace(CXR_MODEL, training=SYNTHETIC, training_data=LINE)
    assert record.devices.in_service(model=served) is True
    after = _device(record, quiet)
    assert after["note"] == [{"text": SYNTHETIC}]
    assert after["property"][0]["valueCode"] == [{"text": LINE}]
    assert after["meta"]["versionId"] == "2"
    assert after["meta"]["lastUpdated"] > before["meta"]["lastUpdated"]
    # A client syncing Devices by _lastUpdated gets the completed one, not the unchanged one.
    assert _since(record, after["meta"]["lastUpdated"]) == {quiet}
    # Put into service again (another replica, a restart): it says the same, still version 2.
    assert record.devices.in_service(model=served) is False
    assert _device(record, quiet) == after
    # A version not filed yet, or other weights under the same number, changes nothing.
    assert record.devices.in_service(model=replace(served, version="8")) is False
    assert record.devices.in_service(model=replace(served, sha256="d" * 64)) is False
    assert _device(record, told) == filed


def test_devices_on_file_become_version_1_as_of_their_filing(record: Record) -> None:
    device_id = _device_of(record, record.results.save_triage(data=replace(triage(), model=SERVED)).result_id)
    filed = _device(record, device_id)
    assert _columns(record) == {"version", "updated"}

    migrate(record, "0024")
    assert _columns(record) == set()
    # An older server version files a device while versions are mixed: no version, no updated.
    old_id = str(uuid.uuid4())
    with record.engine.begin() as connection:
        connection.execute(
            _DEVICES.insert().values(
                id=old_id, model_name="vitals-triage", model_version="5", model_sha256="c" * 64, created=FILED
            )
        )
    migrate(record, "head")

    assert _columns(record) == {"version", "updated"}
    assert _device(record, device_id) == filed
    old = _device(record, old_id)
    assert old["meta"] == {"versionId": "1", "lastUpdated": "2026-02-03T10:15:00.000Z"}
    assert old_id in _since(record, "2026-02-03T10:15:00Z") and old_id not in _since(record, "2026-02-04")
