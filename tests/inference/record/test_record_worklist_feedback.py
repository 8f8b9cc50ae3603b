"""Worklist order, reader feedback tied to the exact model version, authorisation look-ups."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _record_data import CXR_MODEL, imaging, patient, triage

from inference.record import InvalidFeedback, NotFound, Record, Verdict


def test_worklist_is_most_urgent_first_then_oldest_first(record: Record) -> None:
    routine_old = record.save_imaging_result(data=imaging(priority="routine")).result_id
    urgent_old = record.save_imaging_result(data=imaging(priority="urgent")).result_id
    critical = record.save_triage_result(data=triage(priority="critical")).result_id
    urgent_new = record.save_triage_result(data=triage(priority="urgent")).result_id
    routine_new = record.save_imaging_result(data=imaging(priority="routine")).result_id

    items = record.worklist()
    assert [item["result_id"] for item in items] == [
        critical,
        urgent_old,
        urgent_new,
        routine_old,
        routine_new,
    ]
    assert items[0]["kind"] == "triage" and items[0]["positive_findings"] == ["deterioration"]
    assert items[1]["positive_findings"] == ["pleural_effusion"] and items[1]["study_instance_uid"]
    assert [item["result_id"] for item in record.worklist(limit=2, offset=1)] == [urgent_old, urgent_new]
    assert all("name" not in item["patient"] for item in items)


def test_worklist_filters_by_facility_and_drops_reviewed_results(record: Record) -> None:
    north = record.save_imaging_result(data=imaging(pat=patient("IPP-N", facility="north"))).result_id
    south = record.save_imaging_result(data=imaging(pat=patient("IPP-S", facility="south"))).result_id
    assert [i["result_id"] for i in record.worklist(facility="south")] == [south]
    assert record.worklist(facility="east") == []
    record.save_feedback(result_id=north, reader="dr-a", verdicts=[Verdict("pleural_effusion", "agree")])
    assert [i["result_id"] for i in record.worklist()] == [south]
    assert record.get_result(result_id=north)["status"] == "reviewed"  # type: ignore[index]


def test_feedback_keeps_the_model_version_of_the_result(record: Record) -> None:
    data = imaging()
    old = record.save_imaging_result(data=data).result_id
    # A newer model version is served afterwards; feedback on the old result still names the old one.
    record.save_imaging_result(data=replace(data, model=replace(CXR_MODEL, version="4")))
    feedback_id = record.save_feedback(
        result_id=old,
        reader="dr-b",
        verdicts=[
            Verdict("pleural_effusion", "agree"),
            Verdict("pneumothorax", "correct", correct_label=True),
        ],
    )
    (stored,) = record.feedback(result_id=old)
    assert stored["feedback_id"] == feedback_id
    assert stored["model"] == {"name": "cxr-findings", "version": "3"}
    assert stored["verdicts"][1] == {"code": "pneumothorax", "verdict": "correct", "correct_label": True}
    assert stored["reader"] == "dr-b"


def test_triage_feedback_uses_the_deterioration_code(record: Record) -> None:
    result_id = record.save_triage_result(data=triage()).result_id
    record.save_feedback(result_id=result_id, reader="dr-c", verdicts=[Verdict("deterioration", "disagree")])
    assert record.feedback(result_id=result_id)[0]["model"] == {"name": "vitals-triage", "version": "2"}


def test_invalid_feedback_is_refused_and_changes_nothing(record: Record) -> None:
    result_id = record.save_imaging_result(data=imaging()).result_id
    with pytest.raises(InvalidFeedback, match="accepted codes are pleural_effusion, pneumothorax"):
        record.save_feedback(result_id=result_id, reader="dr-d", verdicts=[Verdict("nodule", "agree")])
    with pytest.raises(InvalidFeedback, match="use one of agree, disagree, correct"):
        record.save_feedback(result_id=result_id, reader="dr-d", verdicts=[Verdict("pneumothorax", "maybe")])
    with pytest.raises(InvalidFeedback, match="needs correct_label"):
        record.save_feedback(
            result_id=result_id, reader="dr-d", verdicts=[Verdict("pneumothorax", "correct")]
        )
    with pytest.raises(InvalidFeedback, match="at least one verdict"):
        record.save_feedback(result_id=result_id, reader="dr-d", verdicts=[])
    with pytest.raises(NotFound):
        record.save_feedback(result_id="missing", reader="dr-d", verdicts=[Verdict("nodule", "agree")])
    assert record.feedback(result_id=result_id) == []
    assert record.get_result(result_id=result_id)["status"] == "open"  # type: ignore[index]


def test_authorisation_lookups(record: Record) -> None:
    stored = record.save_imaging_result(data=imaging(pat=patient("IPP-F", facility="west")))
    assert record.patient_facility(patient_id=stored.patient_id) == "west"
    assert record.result_patient(result_id=stored.result_id) == (stored.patient_id, "west")
    assert record.result_patient(result_id="missing") is None
    assert record.patient_facility(patient_id="missing") is None
