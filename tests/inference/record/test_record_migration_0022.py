"""Migration 0022 on both backends, over rows filed before it: a patient's and a study's ``updated`` is the
latest moment the record may have changed them (so a client syncing with ``_since`` misses nothing), and a
device on file is given what its model was trained on from the sentence its results carry."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from _record_data import CXR_MODEL, imaging, migrate, patient, replace, triage, uid

from inference.record import Record
from inference.record._types import UTCDateTime

BASE = "http://127.0.0.1:8000/fhir"
LINE = "dxassist-export data set (n=4200 frontal images)"
SAID = (
    f"Model cxr-findings version 3 was trained on {LINE}. Its output holds for patients and equipment like "
    "those of that data; a clinician decides."
)
SYNTHETIC = (
    "This model was trained on synthetic data only; its output has not been validated on real patients "
    "and must not be used for diagnosis."
)


def _at(day: int) -> datetime:
    return datetime(2026, 1, day, 8, 0, tzinfo=UTC)


_PATIENTS = sa.table("patients", sa.column("id", sa.String), sa.column("created", UTCDateTime()))
_STUDIES = sa.table("studies", sa.column("id", sa.String), sa.column("created", UTCDateTime()))
_RESULTS = sa.table(
    "results",
    sa.column("id", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("warnings", sa.JSON),
)


def _meta(record: Record, resource_type: str, resource_id: str) -> str:
    resource = record.fhir.read(resource_type=resource_type, resource_id=resource_id)
    assert resource is not None
    return str(resource["meta"]["lastUpdated"])


def _device_of(record: Record, result_id: str) -> dict:
    provenance = record.fhir.read(resource_type="Provenance", resource_id=result_id)
    assert provenance is not None
    device_id = provenance["agent"][0]["who"]["reference"].removeprefix("Device/")
    device = record.fhir.read(resource_type="Device", resource_id=device_id)
    assert device is not None
    return device


def test_rows_on_file_get_when_they_last_changed_and_devices_their_training(record: Record) -> None:
    study_uid = uid()
    first = record.results.save_imaging(data=imaging(pat=patient("IPP-M22"), study_uid=study_uid))
    second = record.results.save_imaging(data=imaging(pat=patient("IPP-M22"), study_uid=study_uid))
    # Another facility's result changes nothing of the patient (its demographics are the first facility's).
    theirs = record.results.save_triage(data=triage(pat=patient("IPP-M22", facility="south")))
    quiet = record.results.save_triage(data=triage(pat=patient("IPP-M22-QUIET")))
    older = record.results.save_imaging(data=imaging(model=replace(CXR_MODEL, version="2")))
    migrate(record, "0021")
    with record.engine.begin() as connection:
        connection.execute(_PATIENTS.update().values(created=_at(1)))
        connection.execute(_STUDIES.update().values(created=_at(1)))
        for stored, day, warnings in (
            (first, 2, ["Pleural effusion likely.", SAID]),
            (second, 3, [SAID]),
            (theirs, 4, [SYNTHETIC]),
            (quiet, 1, [SYNTHETIC]),
            (older, 1, ["Model trained on synthetic data; not for clinical use."]),  # an older sentence
        ):
            connection.execute(
                _RESULTS.update()
                .where(_RESULTS.c.id == stored.result_id)
                .values(created_at=_at(day), warnings=warnings)
            )
    migrate(record, "head")

    assert _meta(record, "Patient", first.patient_id) == "2026-01-03T08:00:00.000Z"
    assert _meta(record, "Patient", quiet.patient_id) == "2026-01-01T08:00:00.000Z"
    studies = record.fhir.search(
        resource_type="ImagingStudy", params={"patient": first.patient_id}, base_url=BASE
    )
    [study] = [entry["resource"] for entry in studies["entry"]]
    assert study["meta"]["lastUpdated"] == "2026-01-03T08:00:00.000Z"
    found = record.fhir.search(
        resource_type="Patient", params={"_lastUpdated": "ge2026-01-03"}, base_url=BASE
    )
    assert {entry["resource"]["id"] for entry in found["entry"]} == {first.patient_id}

    imaging_device = _device_of(record, first.result_id)
    assert imaging_device["note"] == [{"text": SAID}]
    assert imaging_device["property"][0]["valueCode"] == [{"text": LINE}]
    triage_device = _device_of(record, quiet.result_id)
    assert triage_device["note"] == [{"text": SYNTHETIC}] and "property" not in triage_device
    # Its results never said it: the Device says nothing rather than a guess.
    assert "note" not in _device_of(record, older.result_id)
