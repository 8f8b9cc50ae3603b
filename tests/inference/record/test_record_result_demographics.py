"""A result keeps the patient's age and sex as its own facility sent them (migration 0014): the patient row
keeps the first facility's demographics, and a second facility that reads its own result but not the
patient sees on its worklist what it sent, not what the first facility recorded, nor nothing."""

from __future__ import annotations

from _record_data import imaging, migrate, patient, triage

from inference.record import Record, Scope
from inference.record._scope import OWN, SHARED


def _line(record: Record, facility: str, result_id: str, *grounds: str) -> tuple[int | None, str | None]:
    """(age, sex) on the worklist line of ``result_id`` as a reader of ``facility`` sees it."""
    scope = Scope(subject=f"reader-{facility}", facility=facility, grounds=frozenset(grounds or (OWN,)))
    (item,) = [i for i in record.results.worklist(limit=500, scope=scope) if i.result_id == result_id]
    return item.patient.age, item.patient.sex


def test_a_second_facility_sees_the_age_and_sex_it_sent_the_first_facility_what_it_recorded(
    record: Record,
) -> None:
    first = record.results.save_imaging(data=imaging(pat=patient("IPP-DEMO-1", facility="north")))
    # The south facility knows the same person under other demographics (a data-entry difference).
    south = patient("IPP-DEMO-1", facility="south", sex="male", birth_date="20000101")
    second = record.results.save_imaging(data=imaging(pat=south))
    assert first.patient_id == second.patient_id

    north_age, north_sex = _line(record, "north", first.result_id)
    assert north_sex == "female" and north_age is not None and north_age >= 76
    south_age, south_sex = _line(record, "south", second.result_id)
    assert south_sex == "male" and south_age is not None and 24 <= south_age < north_age
    # Under the patient's consent to sharing, the south reader reads the patient itself: the record's.
    record.consent.set(
        patient_id=first.patient_id,
        by="dr-who",
        role="clinician",
        ai_processing=True,
        national_sharing=True,
        facility_sharing=True,
    )
    assert _line(record, "south", second.result_id, OWN, SHARED) == (north_age, north_sex)


def test_a_triage_result_keeps_what_its_sender_sent_and_nothing_when_it_sent_nothing(record: Record) -> None:
    record.results.save_imaging(data=imaging(pat=patient("IPP-DEMO-2", facility="north")))
    sent = record.results.save_triage(data=triage(pat=patient("IPP-DEMO-2", facility="south", sex="other")))
    assert _line(record, "south", sent.result_id)[1] == "other"
    bare = patient("IPP-DEMO-2", facility="east", sex=None, birth_date=None)
    silent = record.results.save_triage(data=triage(pat=bare))
    assert _line(record, "east", silent.result_id) == (None, None)


def test_migration_0014_adds_the_columns_and_downgrades_cleanly(record: Record) -> None:
    from sqlalchemy import inspect

    filed = record.results.save_imaging(data=imaging(pat=patient("IPP-DEMO-3")))

    def columns(to: str) -> set[str]:
        migrate(record, to)
        return {c["name"] for c in inspect(record.engine).get_columns("results")}

    assert not {"patient_age", "patient_sex"} & columns("0013")
    assert {"patient_age", "patient_sex"} <= columns("head")
    # A result filed before the upgrade is still listed with the patient's demographics on file; one
    # filed after it keeps its sender's.
    assert _line(record, "north", filed.result_id)[1] == "female"
    again = record.results.save_imaging(data=imaging(pat=patient("IPP-DEMO-3", facility="south", sex="male")))
    assert _line(record, "south", again.result_id)[1] == "male"
