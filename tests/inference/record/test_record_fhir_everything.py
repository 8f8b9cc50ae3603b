"""Patient ``$everything`` over the record, on both backends: the patient's rows are read a batch at a time
(to count ``total`` without holding the record), and the pages still add up to all of it, once, in order."""

from __future__ import annotations

import pytest
from _record_data import imaging, patient, triage

from inference.record import Record

BASE = "http://127.0.0.1:8000/fhir"


def _match(entry: dict) -> bool:
    """A match of the page, not a Device it includes because its matches reference it."""
    return bool(entry["search"]["mode"] == "match")


def test_pages_across_many_batches_are_complete_and_in_order(
    record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference.record.fhir import _everything

    monkeypatch.setattr(_everything, "_BATCH", 3)  # several batches of a few studies and results
    for _ in range(5):
        stored = record.results.save_imaging(data=imaging(pat=patient("IPP-EVERY")))
        record.results.save_triage(data=triage(pat=patient("IPP-EVERY")))
    record.results.save_triage(data=triage(pat=patient("IPP-SOMEONE-ELSE")))
    patient_id = stored.patient_id

    def page(**params: str) -> dict:
        bundle = record.fhir.everything(patient_id=patient_id, params=params, base_url=BASE)
        assert bundle is not None
        return bundle

    whole = page(_count="500")
    ids = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in whole["entry"] if _match(e)]
    assert whole["total"] == len(ids) == len(set(ids))
    assert {t for t, _ in ids} == {
        "Patient",
        "ImagingStudy",
        "DiagnosticReport",
        "RiskAssessment",
        "Observation",
        "Provenance",
    }
    # 1 Patient; per imaging result a study, a report, its findings and a provenance; per triage result
    # an assessment, its vital signs and a provenance: all of this patient's, none of the other's.
    reports = [i for t, i in ids if t == "DiagnosticReport"]
    assessments = [i for t, i in ids if t == "RiskAssessment"]
    assert len(reports) == len(assessments) == 5
    paged: list[tuple[str, str]] = []
    for offset in range(0, len(ids), 4):
        bundle = page(_count="4", _offset=str(offset))
        assert bundle["total"] == len(ids)
        paged += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"] if _match(e)]
    assert paged == ids
    # A next link's ``_after`` no longer listed (a consent withdrawn meanwhile): ``_offset`` places it.
    gone = page(_count="4", _offset="4", _after="Observation/no-longer-listed")
    listed = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in gone["entry"] if _match(e)]
    assert listed == ids[4:8]
