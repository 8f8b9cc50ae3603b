"""The viewer's read of a result with the patient's prior studies (``record.priors``), on each backend: the
patient's earlier studies that the reader may read, newest first and bounded, each by its newest result,
and every prior shown audited as a read in the page's own transaction, on its own ground."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from _record_data import imaging, patient, triage

from inference.record import FeedbackVerdict, Record, Scope, Verdict
from inference.record._inputs import AuditIn, ImagingResultIn, ModelRef, PatientIn
from inference.record._scope import BREAK_GLASS, OWN, SHARED

NORTH = Scope(subject="web:dr-north", facility="north", grounds=frozenset({OWN, SHARED, BREAK_GLASS}))
SOUTH = Scope(subject="web:dr-south", facility="south", grounds=frozenset({OWN, SHARED, BREAK_GLASS}))


def _audit(scope: Scope) -> AuditIn:
    return AuditIn(subject=scope.subject, role="radiologist", facility=scope.facility, action="results:read")


def _file(
    record: Record,
    data: ImagingResultIn,
    *,
    date: str,
    assessable: bool = True,
    model: ModelRef | None = None,
) -> str:
    filed = replace(data, study_date=date, assessable=assessable, model=model or data.model)
    return record.results.save_imaging(data=filed).result_id


def _entries(record: Record, scope: Scope) -> list[tuple[str, str, str]]:
    _total, entries = record.audit.search(agent=scope.subject, limit=50)
    return [
        (e["resource_type"], e["resource_id"], e["outcome"]) for e in sorted(entries, key=lambda e: e["seq"])
    ]


def test_priors_are_the_earlier_studies_newest_first_bounded_and_each_audited(record: Record) -> None:
    north = patient("IPP-PRIOR-1", facility="north")
    first = _file(record, imaging(pat=north), date="20260901")
    refused = _file(record, imaging(pat=north), date="20261001", assessable=False)
    rescored = imaging(pat=north)
    _file(record, rescored, date="20261101")
    newer_model = ModelRef(
        name="cxr-findings", version="4", sha256="b" * 64, provider="CPUExecutionProvider", synthetic=False
    )
    latest_of_study = _file(record, rescored, date="20261101", model=newer_model)
    _file(record, imaging(pat=patient("IPP-PRIOR-1", facility="south")), date="20261110")  # south's
    _file(record, imaging(pat=patient("IPP-OTHER", facility="north")), date="20261105")  # another patient
    current = _file(record, imaging(pat=north), date="20261201")
    _file(record, imaging(pat=north), date="20261215")  # after the study read: not a prior
    record.feedback.save(
        result_id=latest_of_study, reader="dr-other", verdicts=[Verdict("pleural_effusion", "agree")]
    )
    record.feedback.save(
        result_id=latest_of_study,
        reader="dr-third",
        verdicts=[Verdict("pleural_effusion", "disagree", False)],
    )

    read = record.priors.read_with_priors(
        result_id=current, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH), limit=2
    )
    assert read.outcome == "success" and read.value is not None and read.value.priors is not None
    priors = read.value.priors
    assert [p.result_id for p in priors.studies] == [latest_of_study, refused]
    assert priors.older == 1  # the first study, not shown
    shown, not_assessed = priors.studies
    assert (shown.study_date, shown.model.version) == ("2026-11-01", "4")
    assert shown.verdicts == {"pleural_effusion": FeedbackVerdict("pleural_effusion", "disagree", False)}
    assert not not_assessed.assessable
    assert _entries(record, NORTH) == [
        ("Result", current, "success"), ("Result", latest_of_study, "success"), ("Result", refused, "success")
    ]  # fmt: skip

    whole = record.priors.read_with_priors(
        result_id=current, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert whole.value is not None and whole.value.priors is not None
    assert [p.result_id for p in whole.value.priors.studies] == [latest_of_study, refused, first]
    assert whole.value.priors.older == 0
    none_before = record.priors.read_with_priors(
        result_id=first, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert none_before.value is not None and none_before.value.priors is not None
    assert none_before.value.priors.studies == ()


def test_another_facility_reads_priors_on_its_grant_and_a_refused_read_shows_none(record: Record) -> None:
    north = patient("IPP-PRIOR-2", facility="north")
    earlier = _file(record, imaging(pat=north), date="20260901")
    theirs = _file(record, imaging(pat=patient("IPP-PRIOR-2", facility="south")), date="20261001")
    current = _file(record, imaging(pat=north), date="20261101")

    refused = record.priors.read_with_priors(
        result_id=current, reader=SOUTH.subject, scope=SOUTH, audit=_audit(SOUTH)
    )
    assert refused.outcome == "denied" and refused.value is None
    assert _entries(record, SOUTH) == [("Result", current, "denied")]  # nothing of the priors read

    patient_id = refused.patient_id
    assert patient_id is not None
    record.break_glass.open(
        patient_id=patient_id, reason="Emergency: patient transferred unconscious, prior films needed.",
        minutes=30, audit=replace(_audit(SOUTH), action="break_glass:open"),
    )  # fmt: skip
    read = record.priors.read_with_priors(
        result_id=current, reader=SOUTH.subject, scope=SOUTH, audit=_audit(SOUTH)
    )
    assert read.outcome == "break_glass" and read.value is not None and read.value.priors is not None
    assert [p.result_id for p in read.value.priors.studies] == [theirs, earlier]
    assert [e for e in _entries(record, SOUTH) if e[0] == "Result"][-3:] == [
        ("Result", current, "break_glass"), ("Result", theirs, "success"), ("Result", earlier, "break_glass")
    ]  # fmt: skip


def test_the_viewer_gives_the_age_at_the_study_and_the_sex_only_as_the_reader_may_read_them(
    record: Record,
) -> None:
    """The viewer's header shows the patient's age at the study (from the birth date on file and the study's
    date) and sex; a facility that filed a result of another facility's patient, without the patient's
    sharing consent, reads what it sent itself with that result, never the first facility's record."""
    north = patient("IPP-AGE-1", facility="north", birth_date="1950-06-15", sex="female")
    before_birthday = _file(record, imaging(pat=north), date="20260614")
    on_birthday = _file(record, imaging(pat=north), date="20260615")

    read = record.priors.read_with_priors(
        result_id=before_birthday, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert read.value is not None and read.value.patient is not None
    assert (read.value.patient.age, read.value.patient.age_at, read.value.patient.sex) == (
        75,
        "study",
        "female",
    )
    later = record.priors.read_with_priors(
        result_id=on_birthday, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert later.value is not None and later.value.patient is not None
    assert later.value.patient.age == 76

    # South files a study of the same patient, sending no birth date and another sex: it reads its own.
    theirs = _file(
        record,
        imaging(pat=patient("IPP-AGE-1", facility="south", birth_date=None, sex="other")),
        date="20260701",
    )
    south = record.priors.read_with_priors(
        result_id=theirs, reader=SOUTH.subject, scope=SOUTH, audit=_audit(SOUTH)
    )
    assert south.outcome == "success" and south.value is not None and south.value.patient is not None
    assert (south.value.patient.age, south.value.patient.sex) == (None, "other")


def _triage(record: Record, pat: PatientIn, *, at: datetime, priority: str = "urgent") -> str:
    data = replace(triage(pat=pat, priority=priority), observed_at=at)
    return record.results.save_triage(data=data).result_id


def test_the_viewer_lists_the_patients_recent_vital_signs_triage_of_its_scope_each_audited(
    record: Record,
) -> None:
    """Beside the film, the patient's latest triage results that the reader may read (the priors' access
    rules), newest measurement first and bounded, each with its time, triage level and NEWS2; each shown is
    a read of that result, audited in the page's own transaction; another facility's, without the
    patient's sharing consent, is neither shown nor audited."""
    north = patient("IPP-VITALS-1", facility="north")
    oldest = _triage(record, north, at=datetime(2026, 11, 20, 8, tzinfo=UTC), priority="routine")
    middle = _triage(record, north, at=datetime(2026, 11, 21, 8, tzinfo=UTC))
    newest = _triage(record, north, at=datetime(2026, 11, 22, 8, tzinfo=UTC), priority="critical")
    south_pat = patient("IPP-VITALS-1", facility="south")
    theirs = _triage(record, south_pat, at=datetime(2026, 11, 23, 8, tzinfo=UTC))
    _triage(record, patient("IPP-VITALS-OTHER", facility="north"), at=datetime(2026, 11, 24, 8, tzinfo=UTC))
    current = _file(record, imaging(pat=north), date="20261122")

    read = record.priors.read_with_priors(
        result_id=current, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH), triage_limit=2
    )
    assert read.value is not None and read.value.triage is not None
    shown = read.value.triage
    assert [t.result_id for t in shown.results] == [newest, middle]
    assert shown.older == 1
    first = shown.results[0]
    assert (first.observed_at, first.priority, first.news2_total) == (
        datetime(2026, 11, 22, 8, tzinfo=UTC), "critical", 7
    )  # fmt: skip
    assert first.news2_band is not None
    assert _entries(record, NORTH) == [
        ("Result", current, "success"), ("Result", newest, "success"), ("Result", middle, "success")
    ]  # fmt: skip
    assert oldest not in {t.result_id for t in shown.results} and theirs not in {
        e[1] for e in _entries(record, NORTH)
    }

    # South reads its own study of the patient: its own triage, not north's (no consent).
    south_study = _file(record, imaging(pat=south_pat), date="20261123")
    south = record.priors.read_with_priors(
        result_id=south_study, reader=SOUTH.subject, scope=SOUTH, audit=_audit(SOUTH)
    )
    assert south.value is not None and south.value.triage is not None
    assert [t.result_id for t in south.value.triage.results] == [theirs]

    # A vital-signs result's own viewer lists none beside it (it is the vital signs).
    vitals = record.priors.read_with_priors(
        result_id=newest, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert vitals.value is not None and vitals.value.triage is None


def test_the_viewer_lists_only_the_vital_signs_measured_up_to_the_film_and_counts_the_later_ones(
    record: Record,
) -> None:
    """A film from last week is read with the vital signs of its time, not today's: those measured up to
    the film (the end of its study's day, for a film analysed on a later day; its analysis, for one without
    a study date) are shown, newest first, and audited; those measured after it are only counted, neither
    shown nor audited."""
    north = patient("IPP-VITALS-FILM", facility="north")
    before = _triage(record, north, at=datetime(2026, 11, 21, 8, tzinfo=UTC))
    same_day = _triage(record, north, at=datetime(2026, 11, 22, 8, tzinfo=UTC))
    after = _triage(record, north, at=datetime(2026, 11, 23, 8, tzinfo=UTC))
    film = _file(record, imaging(pat=north), date="20261122")  # analysed now, on a later day

    read = record.priors.read_with_priors(
        result_id=film, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH)
    )
    assert read.value is not None and read.value.triage is not None
    shown = read.value.triage
    assert [t.result_id for t in shown.results] == [same_day, before]
    assert (shown.older, shown.later, shown.film_time) == (0, 1, "study_date")
    assert after not in {e[1] for e in _entries(record, NORTH)}

    # A film without a study date is placed at its analysis: what was measured since is after it.
    undated = _file(record, imaging(pat=north), date="")
    since = _triage(record, north, at=datetime.now(UTC))
    read = record.priors.read_with_priors(
        result_id=undated, reader=NORTH.subject, scope=NORTH, audit=_audit(NORTH), triage_limit=2
    )
    assert read.value is not None and read.value.triage is not None
    shown = read.value.triage
    assert [t.result_id for t in shown.results] == [after, same_day]
    assert (shown.older, shown.later, shown.film_time) == (1, 1, "analysis")
    assert since not in {e[1] for e in _entries(record, NORTH)}
