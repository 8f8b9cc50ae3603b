"""Patient ``$everything`` ``start``/``end``/``_since`` as FHIR R4 defines them: ``start`` and ``end`` are
care dates (type date: whole days, both included), ``_since`` an instant (to the second, with a zone)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from _record_data import imaging, patient, replace, triage

from inference.record import InvalidSearch, Record

BASE = "http://127.0.0.1:8000/fhir"


@pytest.fixture
def patient_id(record: Record) -> str:
    """A study of 2026-11-22 (its report and findings), vital signs that morning and the next night."""
    pat = patient("IPP-DATES")
    stored = record.results.save_imaging(data=imaging(pat=pat))  # study date 20261122
    record.results.save_triage(data=triage(pat=pat))  # observed 2026-11-22T08:15Z
    night = datetime(2026, 11, 23, 23, 59, 30, tzinfo=UTC)
    record.results.save_triage(data=replace(triage(pat=pat), observed_at=night))
    return stored.patient_id


def _kinds(record: Record, patient_id: str, **params: str) -> list[str]:
    """What the operation returns with a care date, sorted: the study, each finding, each set of vital
    signs (by its respiratory rate)."""
    bundle = record.fhir.everything(patient_id=patient_id, params=params, base_url=BASE)
    assert bundle is not None
    out = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "ImagingStudy":
            out.append("study")
        elif resource["resourceType"] == "Observation":
            category = resource["category"][0]["coding"][0]["code"]
            if category == "imaging":
                out.append("finding")
            elif resource["id"].endswith("-rr"):
                out.append("vitals")
    return sorted(out)


def test_start_and_end_are_whole_days_both_included(record: Record, patient_id: str) -> None:
    day = _kinds(record, patient_id, start="2026-11-22", end="2026-11-22")
    assert day == ["finding", "finding", "study", "vitals"]
    assert _kinds(record, patient_id, start="2026-11-23") == ["vitals"]
    assert _kinds(record, patient_id, end="2026-11-23") == ["finding", "finding", "study", "vitals", "vitals"]
    assert _kinds(record, patient_id, start="2026-11", end="2026-11") == _kinds(record, patient_id)
    assert _kinds(record, patient_id, start="2026-12") == []
    assert _kinds(record, patient_id, end="2026-11-21") == []


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-11-22T12:00:00Z"},  # a time: start and end are dates
        {"end": "2026-11-22T00:00:00+01:00"},
        {"start": "ge2026-11-22"},
        {"_since": "2026-11-20T07:00Z"},  # an instant has seconds
        {"_since": "2026-11-20"},
    ],
)
def test_a_time_where_a_date_is_defined_is_refused(
    record: Record, patient_id: str, params: dict[str, str]
) -> None:
    with pytest.raises(InvalidSearch) as refused:
        record.fhir.everything(patient_id=patient_id, params=params, base_url=BASE)
    [name] = params
    assert name in str(refused.value)


def test_an_impossible_day_is_refused_as_a_date(record: Record, patient_id: str) -> None:
    with pytest.raises(InvalidSearch) as refused:
        record.fhir.everything(patient_id=patient_id, params={"end": "2026-02-30"}, base_url=BASE)
    # Not "or dateTime": a time is no way to give end.
    assert (
        str(refused.value)
        == "Parameter end must be a valid date (YYYY, YYYY-MM or YYYY-MM-DD), years 1 to 9999 in UTC."
    )
