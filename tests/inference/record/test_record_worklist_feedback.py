"""Worklist order, reader feedback tied to the exact model version, authorisation look-ups."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _record_data import CXR_MODEL, imaging, patient, triage

from inference.record import FeedbackVerdict, InvalidFeedback, ModelInfo, NotFound, Record, Verdict


def test_worklist_is_most_urgent_first_then_oldest_first(record: Record) -> None:
    routine_old = record.results.save_imaging(data=imaging(priority="routine")).result_id
    urgent_old = record.results.save_imaging(data=imaging(priority="urgent")).result_id
    critical = record.results.save_triage(data=triage(priority="critical")).result_id
    urgent_new = record.results.save_triage(data=triage(priority="urgent")).result_id
    routine_new = record.results.save_imaging(data=imaging(priority="routine")).result_id

    items = record.results.worklist()
    assert [item.result_id for item in items] == [
        critical,
        urgent_old,
        urgent_new,
        routine_old,
        routine_new,
    ]
    assert items[0].kind == "triage" and items[0].positive_findings == ("deterioration",)
    assert items[1].positive_findings == ("pleural_effusion",) and items[1].study_instance_uid
    assert [item.result_id for item in record.results.worklist(limit=2, offset=1)] == [
        urgent_old,
        urgent_new,
    ]
    assert all(not hasattr(item.patient, "name") for item in items)


def test_worklist_filters_by_facility_and_drops_reviewed_results(record: Record) -> None:
    north = record.results.save_imaging(data=imaging(pat=patient("IPP-N", facility="north"))).result_id
    south = record.results.save_imaging(data=imaging(pat=patient("IPP-S", facility="south"))).result_id
    assert [i.result_id for i in record.results.worklist(facility="south")] == [south]
    assert record.results.worklist(facility="east") == []
    record.feedback.save(result_id=north, reader="dr-a", verdicts=[Verdict("pleural_effusion", "agree")])
    assert [i.result_id for i in record.results.worklist()] == [south]
    assert record.results.get(result_id=north).status == "reviewed"  # type: ignore[union-attr]


def test_feedback_keeps_the_model_version_of_the_result(record: Record) -> None:
    data = imaging()
    old = record.results.save_imaging(data=data).result_id
    # A newer model version is served afterwards; feedback on the old result still names the old one.
    record.results.save_imaging(data=replace(data, model=replace(CXR_MODEL, version="4")))
    feedback_id = record.feedback.save(
        result_id=old,
        reader="dr-b",
        verdicts=[
            Verdict("pleural_effusion", "agree"),
            Verdict("pneumothorax", "correct", correct_label=True),
        ],
    )
    (stored,) = record.feedback.for_result(result_id=old)
    assert stored.feedback_id == feedback_id
    assert stored.model == ModelInfo(name="cxr-findings", version="3")
    assert stored.verdicts[1] == FeedbackVerdict(code="pneumothorax", verdict="correct", correct_label=True)
    assert stored.reader == "dr-b"


def test_triage_feedback_uses_the_deterioration_code(record: Record) -> None:
    result_id = record.results.save_triage(data=triage()).result_id
    record.feedback.save(result_id=result_id, reader="dr-c", verdicts=[Verdict("deterioration", "disagree")])
    assert record.feedback.for_result(result_id=result_id)[0].model == ModelInfo("vitals-triage", "2")


def test_invalid_feedback_is_refused_and_changes_nothing(record: Record) -> None:
    result_id = record.results.save_imaging(data=imaging()).result_id
    with pytest.raises(InvalidFeedback, match="accepted codes are pleural_effusion, pneumothorax"):
        record.feedback.save(result_id=result_id, reader="dr-d", verdicts=[Verdict("nodule", "agree")])
    with pytest.raises(InvalidFeedback, match="use one of agree, disagree, correct"):
        record.feedback.save(result_id=result_id, reader="dr-d", verdicts=[Verdict("pneumothorax", "maybe")])
    with pytest.raises(InvalidFeedback, match="needs correct_label"):
        record.feedback.save(
            result_id=result_id, reader="dr-d", verdicts=[Verdict("pneumothorax", "correct")]
        )
    with pytest.raises(InvalidFeedback, match="at least one verdict"):
        record.feedback.save(result_id=result_id, reader="dr-d", verdicts=[])
    with pytest.raises(NotFound):
        record.feedback.save(result_id="missing", reader="dr-d", verdicts=[Verdict("nodule", "agree")])
    assert record.feedback.for_result(result_id=result_id) == []
    assert record.results.get(result_id=result_id).status == "open"  # type: ignore[union-attr]


def test_authorisation_lookups(record: Record) -> None:
    stored = record.results.save_imaging(data=imaging(pat=patient("IPP-F", facility="west")))
    assert record.patients.facility(patient_id=stored.patient_id) == "west"
    assert record.results.patient_of(result_id=stored.result_id) == (stored.patient_id, "west")
    assert record.results.patient_of(result_id="missing") is None
    assert record.patients.facility(patient_id="missing") is None
