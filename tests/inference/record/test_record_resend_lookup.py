"""The resend lookup a study is answered by before it is analysed: the filing rule, read without filing."""

from __future__ import annotations

from dataclasses import replace

from _record_data import imaging, uid

from inference.record import AuditIn, Conflict, ImagingResultIn, Record, StoredResult

AUDIT = AuditIn(subject="pacs-1", role="pacs", facility="north", action="studies:submit", client="pacs")


def _with_digests(data: ImagingResultIn, *digests: str) -> ImagingResultIn:
    instances = tuple(replace(i, pixel_digest=d) for i, d in zip(data.instances, digests, strict=True))
    return replace(data, instances=instances)


def _is_resend(record: Record, data: ImagingResultIn) -> bool:
    return record.results.intake(
        study_instance_uid=data.study_instance_uid,
        patient=data.patient,
        instances=data.instances,
        model=data.model,
    )[1]


def _filed_as(record: Record, data: ImagingResultIn) -> str:
    """What filing ``data`` answers: ``duplicate``, ``created`` or ``conflict``."""
    try:
        stored = record.results.save_imaging(data=data, audit=AUDIT)
    except Conflict:
        return "conflict"
    return "created" if stored.created else "duplicate"


def test_the_lookup_says_resend_exactly_when_filing_answers_with_the_filed_result(record: Record) -> None:
    first = _with_digests(imaging(), "d1", "d2")
    filed = record.results.save_imaging(data=first, audit=AUDIT)
    pa_only = replace(first, instances=first.instances[:1])
    variants = [
        first,  # the same instances and pixels
        pa_only,  # part of the study (no result of its own: the study's newest result answers it)
        _with_digests(first, "d1", "other"),  # other pixels
        replace(first, patient=replace(first.patient, facility="south")),  # another facility
        replace(pa_only, patient=replace(first.patient, identifier="IPP-999")),  # another patient
        replace(first, model=replace(first.model, version="4")),  # another model version
    ]
    answers = [(_is_resend(record, data), _filed_as(record, data)) for data in variants]
    assert answers == [
        (True, "duplicate"),
        (True, "duplicate"),
        (False, "conflict"),
        (False, "conflict"),
        (False, "conflict"),
        (False, "created"),
    ]
    assert filed.created


def _answer(record: Record, data: ImagingResultIn) -> StoredResult | None:
    return record.results.answer_resend(
        study_instance_uid=data.study_instance_uid,
        patient=data.patient,
        instances=data.instances,
        model=data.model,
        audit=AUDIT,
    )


def test_the_answer_is_the_filed_result_audited_duplicate_in_its_transaction(record: Record) -> None:
    data = _with_digests(imaging(), "d1", "d2")
    filed = record.results.save_imaging(data=data, audit=AUDIT)
    before = record.audit.count()
    answer = _answer(record, data)
    assert answer is not None and not answer.created
    assert answer.result_id == filed.result_id
    assert answer.result == record.results.get(result_id=filed.result_id, deliveries=True)
    assert record.audit.count() == before + 1
    event = record.audit.events(patient_id=filed.patient_id, limit=1)[0]
    assert (event["resource_type"], event["resource_id"], event["outcome"]) == (
        "ImagingResult",
        filed.result_id,
        "duplicate",
    )
    other = replace(
        data, study_instance_uid=uid(), instances=(replace(data.instances[0], sop_instance_uid=uid()),)
    )
    assert _answer(record, other) is None
    assert record.audit.count() == before + 1  # nothing written for what is not a resend
