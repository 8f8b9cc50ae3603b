"""What filing an imaging result answers with is what reading it back from the record gives.

The filing transaction types the new result from the rows it has just written instead of selecting them
again; these tests file varied results and compare the answer with a fresh read of the committed record
(``GET /v1/results/{id}`` reads it that way), on both backends. They also check the audit entries of
the filing (the result's and the kept training input's, chained in one transaction).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from _record_data import imaging, patient, png_bytes, uid

from inference.record import (
    AuditIn,
    Conflict,
    FindingIn,
    HeadAnchor,
    ImagingResult,
    ImagingResultIn,
    OutputsIn,
    Record,
    RenderingData,
    StoredResult,
    TrainingInputIn,
    TrainingInputs,
)

AUDIT = AuditIn(subject="dr-view", role="clinician", facility="north", action="studies:submit", client="ws-1")
KEPT = TrainingInputIn(model_name="cxr-findings", model_version="3", input_size=8, pixels=b"npz-bytes")
RENDERING = RenderingData(display=b"jpeg", cams=b"npz", geometry={"original_shape": [8, 8], "input_size": 8})


def _fourteen(positives: int) -> tuple[FindingIn, ...]:
    return tuple(
        FindingIn(
            code=f"finding_{i:02d}",
            display=f"Finding {i}",
            probability=0.1 + i / 20 if i < positives else 1 / 3 / (i + 1),
            positive=i < positives,
            threshold=0.45,
            box=(i, i + 1, i + 20, i + 30) if i < positives else None,
            heatmap=i < positives,
        )
        for i in range(14)
    )


def _kept(record: Record) -> int:
    return TrainingInputs(record.sessions).count()


def _file_and_compare(record: Record, data: ImagingResultIn) -> StoredResult:
    stored = record.results.save_imaging(data=data, audit=AUDIT)
    read = record.results.get(result_id=stored.result_id, deliveries=True)
    assert isinstance(stored.result, ImagingResult)
    assert stored.result == read
    return stored


def test_the_filed_answer_equals_the_result_read_back(record: Record) -> None:
    pat = patient("IPP-VIEW-1")
    # Two findings, one positive with its own heatmap PNG; the warning and rationale as sent.
    first = _file_and_compare(record, imaging(pat=pat))
    assert first.result is not None
    assert first.created and [f.heatmap for f in first.result.findings] == [True, False]
    # Fourteen findings, five positive with heatmaps drawn from the rendering; an OOD score and the
    # training input kept; outputs owed to two destinations (pending build and its deliveries).
    fourteen = replace(
        imaging(pat=pat),
        findings=_fourteen(5),
        rendering=RENDERING,
        ood_score=0.12,
        ood_threshold=0.5,
        outputs=OutputsIn(destinations=("pacs", "vna"), spool=None),
        training_input=KEPT,
    )
    filed = _file_and_compare(record, fourteen)
    assert isinstance(filed.result, ImagingResult)
    assert filed.result.build is not None
    assert [d.destination for d in filed.result.deliveries] == ["pacs", "vna"]
    assert sum(f.heatmap for f in filed.result.findings) == 5
    # No finding at all, not assessable (a non-finite OOD score is kept as null), no rendering.
    _file_and_compare(
        record,
        replace(imaging(pat=pat), findings=(), assessable=False, ood_score=math.inf, ood_threshold=0.5),
    )
    # Heatmap flags without a rendering draw nothing; a destination list cut at 1024 characters.
    many = tuple(f"destination-{i:03d}" for i in range(80))
    cut = _file_and_compare(
        record,
        replace(imaging(pat=pat), findings=_fourteen(3), outputs=OutputsIn(destinations=many, spool=None)),
    )
    assert isinstance(cut.result, ImagingResult) and cut.result.build is not None
    assert 0 < len(cut.result.build.destinations) < len(many)
    assert not any(f.heatmap for f in cut.result.findings)


def test_a_second_result_of_a_study_a_new_patient_and_a_mismatch_answer_as_read(record: Record) -> None:
    study = uid()
    routine = replace(imaging(pat=patient("IPP-VIEW-2"), study_uid=study, priority="critical"))
    _file_and_compare(record, routine)
    # Another analysis of the same study keeps the study's higher priority.
    again = replace(
        imaging(pat=patient("IPP-VIEW-2"), study_uid=study, priority="routine"), keep_study_priority=True
    )
    second = _file_and_compare(record, again)
    assert second.result is not None and second.result.priority == "critical"
    # The same patient sent with another name: filed with the mismatch warning.
    other = _file_and_compare(record, imaging(pat=patient("IPP-VIEW-2", name="Someone Else")))
    assert other.mismatched == ("name",)
    assert other.result is not None and other.result.warnings[-1].startswith("identity_mismatch")
    # A brand-new patient with a new model version (a new device row in the same transaction).
    model = replace(imaging().model, version="4", sha256="c" * 64)
    _file_and_compare(record, imaging(pat=patient("IPP-VIEW-3"), model=model, heatmap=png_bytes(7)))


def test_a_resend_answers_the_result_filed_first(record: Record) -> None:
    data = replace(
        imaging(pat=patient("IPP-VIEW-4")),
        outputs=OutputsIn(destinations=("pacs",), spool=None),
        training_input=KEPT,
    )
    first = record.results.save_imaging(data=data, audit=AUDIT)
    again = _file_and_compare(record, data)
    assert not again.created and again.result == first.result


def test_a_patient_who_objected_to_sharing_gets_no_build(record: Record) -> None:
    # An objection to AI processing files nothing at all (test_record_imaging_consent.py); one to sharing
    # files the result and owes nothing outside the record.
    pat = patient("IPP-VIEW-5")
    record.results.save_imaging(data=imaging(pat=pat))
    patient_id = record.patients.find(identifier=pat.identifier, issuer=pat.issuer)
    assert patient_id is not None
    record.consent.set(
        patient_id=patient_id, ai_processing=True, national_sharing=False, by="dr-c", role="clinician"
    )
    outputs = OutputsIn(destinations=("pacs",), spool=None)
    data = replace(imaging(pat=pat), outputs=outputs)
    stored = _file_and_compare(record, data)
    assert isinstance(stored.result, ImagingResult)
    assert stored.result.build is None and stored.result.deliveries == ()


def test_the_filing_chains_its_audit_entries_in_order(record: Record) -> None:
    data = replace(imaging(pat=patient("IPP-VIEW-6")), training_input=KEPT)
    stored = record.results.save_imaging(data=data, audit=AUDIT)
    record.results.save_imaging(data=data, audit=AUDIT)  # a resend: its own entry, nothing kept again
    _, entries = record.audit.search(patient_id=stored.patient_id, limit=10)
    assert [(e["seq"], e["action"], e["resource_type"], e["outcome"]) for e in reversed(entries)] == [
        (1, "studies:submit", "ImagingResult", "success"),
        (2, "training-input:keep", "TrainingInput", "success"),
        (3, "studies:submit", "ImagingResult", "duplicate"),
    ]
    assert all(e["resource_id"] == stored.result_id for e in entries)
    report = record.audit.verify()
    assert report.ok and (report.entries, report.head_seq) == (3, 3)


def test_the_anchor_follows_the_head_of_each_filing(tmp_path: Path) -> None:
    anchor = HeadAnchor(tmp_path)
    anchor.ensure_key()
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", anchor=anchor)
    record.migrate()
    try:
        for _ in range(3):
            record.results.save_imaging(
                data=replace(imaging(pat=patient("IPP-VIEW-7")), training_input=KEPT), audit=AUDIT
            )
        anchored = anchor.read()
        report = record.audit.verify()
        assert report.ok and report.head_seq == 6
        assert anchored is not None and (anchored.seq, anchored.hash) == (6, report.head_hash)
    finally:
        record.close()


@pytest.mark.parametrize("conflict", ["facility", "study", "patient"])
def test_a_refused_filing_writes_nothing(record: Record, conflict: str) -> None:
    data = replace(imaging(pat=patient("IPP-VIEW-8")), training_input=KEPT)
    record.results.save_imaging(data=data, audit=AUDIT)
    head = record.audit.verify().head_seq
    other_model = replace(data.model, version="9")
    refused = {
        # A resend from another facility.
        "facility": replace(data, patient=replace(data.patient, facility="south")),
        # The same instances under another study.
        "study": replace(data, model=other_model, study_instance_uid=uid()),
        # The same study for another patient.
        "patient": replace(imaging(pat=patient("IPP-VIEW-9")), study_instance_uid=data.study_instance_uid),
    }[conflict]
    with pytest.raises(Conflict):
        record.results.save_imaging(data=refused, audit=AUDIT)
    assert record.audit.verify().head_seq == head
    assert _kept(record) == 1


def test_appends_of_one_transaction_chain_through_a_rolled_back_savepoint(record: Record) -> None:
    from inference.record import _audit
    from inference.record._types import utcnow

    def entry(n: int) -> dict[str, object]:
        return {
            "time": utcnow(),
            "subject": f"dr-{n}",
            "role": "clinician",
            "facility": "north",
            "action": "results:read",
            "resource_type": "ImagingResult",
            "resource_id": f"r-{n}",
            "patient_id": None,
            "outcome": "success",
            "client": None,
        }

    with record.db.transaction() as session:
        _audit.append(session, **entry(1))
        _audit.append_unflushed(session, **entry(2))
        savepoint = session.begin_nested()
        _audit.append(session, **entry(3))  # undone with its savepoint
        savepoint.rollback()
        _audit.append(session, **entry(4))
    _, entries = record.audit.search(limit=10)
    assert [(e["seq"], e["subject"]) for e in reversed(entries)] == [(1, "dr-1"), (2, "dr-2"), (3, "dr-4")]
    report = record.audit.verify()
    assert report.ok and report.head_seq == 3
