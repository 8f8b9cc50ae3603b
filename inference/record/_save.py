"""Writing one result: the steps that run inside the single transaction ``Record`` opens for it."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Row, Table, bindparam, insert, select
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value

from inference import vocabulary
from inference.record import _audit, _builds, _consent, _scope, _training_inputs
from inference.record._errors import Conflict, RecordError, ResendConflict
from inference.record._idempotency import find_filed
from inference.record._inputs import (
    AuditIn,
    ImagingResultIn,
    InstanceIn,
    ModelRef,
    PatientIn,
    StoredResult,
    TriageResultIn,
)
from inference.record._models import (
    Device,
    Finding,
    Heatmap,
    IdentityMismatch,
    Instance,
    Patient,
    Rendering,
    Result,
    Study,
    VitalsObservation,
    name_words,
    normalise_issuer,
)
from inference.record._result_types import FindingResult, ImagingResult, PendingBuild
from inference.record._types import age_at, as_utc, fhir_date, new_id, utcnow
from inference.record._views import VITAL_FIELDS, finding_result, typed_result, with_deliveries

_STUDIES: Final = cast(Table, Study.__table__)
_INSTANCES: Final = cast(Table, Instance.__table__)
_DEVICES: Final = cast(Table, Device.__table__)
_RESULTS: Final = cast(Table, Result.__table__)
# The statements of filing an imaging result, built once: building a statement and its cache key costs
# about as much as SQLite running it.
_INSERT_STUDY: Final = insert(_STUDIES)
_INSERT_INSTANCES: Final = insert(_INSTANCES)
_INSERT_DEVICE: Final = insert(_DEVICES)
_INSERT_RESULT: Final = insert(_RESULTS)
_INSERT_FINDINGS: Final = insert(cast(Table, Finding.__table__))
_INSERT_HEATMAPS: Final = insert(cast(Table, Heatmap.__table__))
_INSERT_RENDERING: Final = insert(cast(Table, Rendering.__table__))
_FILED_BY_KEY: Final = select(
    _RESULTS.c.id, _RESULTS.c.patient_id, _RESULTS.c.facility, _RESULTS.c.study_id
).where(_RESULTS.c.instance_key == bindparam("key"))
_PATIENT_BY_KEY: Final = select(Patient).where(
    Patient.identifier == bindparam("identifier"), Patient.issuer == bindparam("issuer")
)
_STUDY_BY_UID: Final = select(Study).where(Study.study_instance_uid == bindparam("uid"))
_KNOWN_INSTANCES: Final = select(
    _INSTANCES.c.sop_instance_uid, _INSTANCES.c.study_id, _INSTANCES.c.pixel_digest
).where(_INSTANCES.c.sop_instance_uid.in_(bindparam("uids", expanding=True)))
_NEWEST_OF_STUDY: Final = (
    select(_RESULTS.c.id, _RESULTS.c.patient_id, _RESULTS.c.facility, _RESULTS.c.study_id)
    .where(
        _RESULTS.c.study_id == bindparam("study_id"),
        _RESULTS.c.kind == "imaging",
        _RESULTS.c.model_name == bindparam("name"),
        _RESULTS.c.model_version == bindparam("version"),
    )
    .order_by(_RESULTS.c.created_at.desc(), _RESULTS.c.id.desc())
    .limit(1)
)
_DEVICE_ID: Final = select(_DEVICES.c.id).where(
    _DEVICES.c.model_name == bindparam("name"),
    _DEVICES.c.model_version == bindparam("version"),
    _DEVICES.c.model_sha256 == bindparam("sha256"),
)
PRIORITIES: Final[tuple[str, ...]] = ("critical", "urgent", "routine")
MISMATCH_CODE: Final = "identity_mismatch"
"""The code opening the warning of a result whose sender's demographics differ from the record."""


def instance_key(model: ModelRef, sop_instance_uids: list[str]) -> str:
    """The idempotency key of an imaging analysis: model name + version + the sorted SOP instance UIDs.

    Hashed so that the UNIQUE index stays small however many instances a study has.
    """
    text = "\n".join([model.name, model.version, *sorted(set(sop_instance_uids))])
    return hashlib.sha256(text.encode()).hexdigest()


def find_by_key(session: Session, key: str) -> Row[str, str, str | None, str | None] | None:
    """``(id, patient_id, facility, study_id)`` of the result already filed under ``key``, if any."""
    return session.execute(_FILED_BY_KEY, {"key": key}).first()


_NOT_A_RESEND = (
    "These SOP instance UIDs are already filed {why}; a resend must come from the same facility with the "
    "same pixels. Nothing was filed: give new images new UIDs, or check what the sender sent."
)


@dataclass(frozen=True, slots=True)
class Sent:
    """What a resend is recognised by: the study, its instances (with their pixel digests), the patient as
    :func:`inference.services.identify` keys it with the sender's facility, and the model version."""

    study_instance_uid: str
    patient: PatientIn
    instances: tuple[InstanceIn, ...]
    model: ModelRef


def _check_resend(
    session: Session, data: ImagingResultIn | Sent, existing: Row[str, str, str | None, str | None]
) -> StoredResult:
    """The result already filed, when ``data`` is a true resend of it; refuse anything else.

    A resend is of the same study and the same patient too: the same instances sent under another study
    or patient (a film re-identified by the PACS) would otherwise be answered with another study's
    result, of another patient, and the study sent filed nowhere.
    """
    if existing.facility != data.patient.facility:
        raise ResendConflict(_NOT_A_RESEND.format(why="by another facility"), study_id=existing.study_id)
    _check_known_instances(session, data.instances, study_id=existing.study_id)
    study = session.get(Study, existing.study_id) if existing.study_id is not None else None
    if study is None or study.study_instance_uid != data.study_instance_uid:
        raise ResendConflict(_NOT_A_RESEND.format(why="under another study"), study_id=existing.study_id)
    patient = session.scalars(
        _PATIENT_BY_KEY,
        {"identifier": data.patient.identifier, "issuer": normalise_issuer(data.patient.issuer)},
    ).first()
    if patient is None or patient.id != existing.patient_id:
        raise ResendConflict(_NOT_A_RESEND.format(why="for another patient"), study_id=existing.study_id)
    return StoredResult(result_id=existing.id, patient_id=existing.patient_id, created=False)


def _held_by_study(
    session: Session, data: ImagingResultIn | Sent
) -> Row[str, str, str | None, str | None] | None:
    """The study's newest result of this model version, when every instance of ``data`` is filed in its
    study already with the same pixels, for the same facility and patient; else None.

    A resend of a study that grew after its analysis (a late instance joined it with no result of its own,
    :meth:`inference.record.Results.join_analysed`) is no result's set of instances, so its instance key
    finds nothing; it is still instances the record holds, and answered as a resend of that result.
    """
    study = session.scalars(_STUDY_BY_UID, {"uid": data.study_instance_uid}).first()
    if study is None or study.facility != data.patient.facility:
        return None
    issuer = normalise_issuer(data.patient.issuer)
    patient = session.scalars(
        _PATIENT_BY_KEY, {"identifier": data.patient.identifier, "issuer": issuer}
    ).first()
    if patient is None or patient.id != study.patient_id:
        return None
    known = filed_in_study(session, data.instances, study_id=study.id)
    if known is None or any(instance.sop_instance_uid not in known for instance in data.instances):
        return None
    params = {"study_id": study.id, "name": data.model.name, "version": data.model.version}
    return session.execute(_NEWEST_OF_STUDY, params).first()


def _check_known_instances(
    session: Session, instances: Sequence[InstanceIn], *, study_id: str | None
) -> set[str]:
    """SOP instance UIDs of ``instances`` already filed (under ``study_id`` with the same pixels), or
    refuse."""
    uids = [instance.sop_instance_uid for instance in instances]
    rows = session.execute(_KNOWN_INSTANCES, {"uids": uids})
    known = {row[0]: (row[1], row[2]) for row in rows}
    for instance in instances:
        if instance.sop_instance_uid not in known:
            continue
        filed_study, digest = known[instance.sop_instance_uid]
        if study_id is not None and filed_study != study_id:
            raise ResendConflict(_NOT_A_RESEND.format(why="under another study"), study_id=filed_study)
        if digest is not None and instance.pixel_digest is not None and digest != instance.pixel_digest:
            raise ResendConflict(_NOT_A_RESEND.format(why="with other pixel data"), study_id=filed_study)
    return set(known)


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise RecordError(f"Priority {priority!r} is not accepted; use one of {', '.join(PRIORITIES)}.")


def _check_probability(what: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise RecordError(f"The probability of {what} must be a finite number between 0 and 1.")


def _check_length(what: str, value: str | None, limit: int) -> None:
    # The message names the field, never the value: it may be a patient's name or identifier.
    if value is not None and len(value) > limit:
        raise RecordError(f"The {what} is longer than the {limit} characters the record accepts.")


def _check_common(patient: PatientIn, model: ModelRef) -> None:
    validate_patient(patient)
    for what, value, limit in (
        ("model name", model.name, 128),
        ("model version", model.version, 64),
        ("model sha256", model.sha256, 64),
        ("execution provider", model.provider, 64),
    ):
        _check_length(what, value, limit)


def validate_patient(patient: PatientIn) -> None:
    """Refuse a patient the record cannot file (no identifier, fields over their column sizes)."""
    if not patient.identifier:
        raise RecordError("A patient identifier is required.")
    for what, value, limit in (
        ("patient identifier", patient.identifier, 128),
        ("identifier issuer", patient.issuer, 128),
        ("patient name", patient.name, 256),
        ("patient sex", patient.sex, 16),
        ("facility", patient.facility, 128),
    ):
        _check_length(what, value, limit)


def validate_imaging(data: ImagingResultIn) -> None:
    """Refuse an imaging result the record cannot file faithfully, before any row is written."""
    _check_common(data.patient, data.model)
    _check_priority(data.priority)
    _check_length("StudyInstanceUID", data.study_instance_uid, 64)
    _check_length("accession number", data.accession_number, 64)
    _check_length("source", data.source, 32)
    validate_instances(data.instances)
    if not data.instances:
        raise RecordError("An imaging result needs at least one analysed instance.")
    uids = {instance.sop_instance_uid for instance in data.instances}
    if data.primary_sop_instance_uid not in uids:
        raise RecordError("The primary SOP instance UID must be one of the analysed instances.")
    codes = [finding.code for finding in data.findings]
    if len(set(codes)) != len(codes):
        raise RecordError("Each finding code may appear once per result.")
    for finding in data.findings:
        _check_probability(f"finding '{finding.code}'", finding.probability)
        _check_probability(f"the threshold of finding '{finding.code}'", finding.threshold)
        if finding.box is not None and len(finding.box) != 4:
            raise RecordError(f"The box of finding '{finding.code}' must be (x0, y0, x1, y1).")


def validate_instances(instances: Sequence[InstanceIn]) -> None:
    """Refuse instances the record cannot file faithfully (values over their column sizes)."""
    for instance in instances:
        for what, value in (
            ("SOPInstanceUID", instance.sop_instance_uid),
            ("SOPClassUID", instance.sop_class_uid),
            ("SeriesInstanceUID", instance.series_instance_uid),
        ):
            _check_length(what, value, 64)
        _check_length("modality", instance.modality, 16)
        _check_length("view position", instance.view_position, 16)


def validate_triage(data: TriageResultIn) -> None:
    """Refuse a triage result the record cannot file faithfully, before any row is written."""
    _check_common(data.patient, data.model)
    _check_priority(data.priority)
    _check_probability("deterioration", data.probability)
    unknown = sorted(set(data.vitals) - set(VITAL_FIELDS))
    if unknown:
        raise RecordError(
            f"Unknown vital-sign fields {', '.join(unknown)}; accepted fields are {', '.join(VITAL_FIELDS)}."
        )


def _name_key(name: str) -> tuple[str, ...]:
    # "DOE^JANE" (DICOM PN) and "Jane Doe" (free text) name the same person: compare the word sets.
    return tuple(sorted(word for word in re.split(r"[\W_]+", name.casefold()) if word))


def _differs(field: str, on_file: str, sent: str) -> bool:
    if field == "name":
        return _name_key(on_file) != _name_key(sent)
    return on_file.strip().casefold() != sent.strip().casefold()


_COUNTED: Final = "dxassist_versions_counted"
"""``session.info`` key: per transaction, the rows whose version it has counted already."""


def changed(session: Session, row: Patient | Study, now: datetime | None = None) -> None:
    """``row`` (filed before this transaction) changes what its FHIR resource shows: ``updated`` (its
    meta.lastUpdated) is now, and its ``version`` (meta.versionId, migration 0024) one more, once per
    transaction however many of its fields change. Counted in SQL (``SET version = version + 1``), so two
    writers completing the same row count two versions (PostgreSQL runs the second on the first's row)."""
    row.updated = utcnow() if now is None else now
    transactions: WeakKeyDictionary[SessionTransaction, set[tuple[str, str]]] = session.info.setdefault(
        _COUNTED, WeakKeyDictionary()
    )
    transaction = session.get_transaction()
    counted = set() if transaction is None else transactions.setdefault(transaction, set())
    key = (row.__tablename__, row.id)
    if key not in counted:
        counted.add(key)
        row.version = cast(int, type(row).version + 1)


def upsert_patient(session: Session, patient: PatientIn) -> tuple[Patient, tuple[str, ...]]:
    """The patient with this (identifier, issuer), created now or completed with demographics sent now.

    A master patient index never lets a sender silently rewrite who a patient is: a field on file keeps
    its value, a field not on file yet is filled in (only by the facility that filed the patient first:
    another facility filing a result of the patient never changes who the patient is), and a field sent
    with another value is returned as a mismatch (the caller records it and warns the reader). The
    facility that first filed the patient stays; every result carries its own owning facility.

    Returns:
        The patient and the names of the fields whose sent value differs from the one on file.
    """
    issuer = normalise_issuer(patient.issuer)
    row = session.scalars(_PATIENT_BY_KEY, {"identifier": patient.identifier, "issuer": issuer}).first()
    now = utcnow()
    filed = row is not None
    if row is None:
        row = Patient(
            id=new_id(),
            identifier=patient.identifier,
            issuer=issuer,
            # An identifier of another facility's own authority is that facility's patient, whoever files
            # it first: a sender could otherwise file it ahead of its facility and hold its consent.
            facility=patient.home_facility or patient.facility,
            created=now,
            updated=now,
            version=1,
        )
        session.add(row)
    # A birth date is kept as an ISO date (DICOM YYYYMMDD is converted); an unreadable one is not kept.
    sent = {"name": patient.name, "birth_date": fhir_date(patient.birth_date), "sex": patient.sex}
    mismatched = []
    for field, value in sent.items():
        if value is None or not str(value).strip():
            continue
        on_file = getattr(row, field)
        if on_file is not None:
            if _differs(field, str(on_file), str(value)):
                mismatched.append(field)
        elif row.facility == patient.facility:
            setattr(row, field, value)
            # The Patient resource shows it from now on (meta.lastUpdated; a new row is version 1).
            if filed:
                changed(session, row, now)
            if field == "name":
                row.name_words, row.family_words, row.given_words = name_words(str(value))
    session.flush()
    return row, tuple(mismatched)


def told_mismatches(
    session: Session, patient: Patient, mismatched: tuple[str, ...], sender: _scope.Scope | None
) -> tuple[str, ...]:
    """The mismatched fields the sender's result may name: all of them to a sender who may read the patient
    itself (``sender`` None: not judged), none to another (which field differs, trial by trial, would tell
    it the record's demographics of a patient it may not read; the mismatch is still filed and logged)."""
    if not mismatched or sender is None:
        return mismatched
    ground = _scope.basis(session, sender, patient_id=patient.id, owner=None, patient_level=True)
    return mismatched if ground is not None else ()


def mismatch_warning(fields: tuple[str, ...]) -> str:
    """The warning a result carries when its sender's demographics differ from the patient on file."""
    named = ", ".join(vocabulary.IDENTITY_FIELDS.get(field, field.replace("_", " ")) for field in fields)
    return vocabulary.IDENTITY_MISMATCH(fields=named)


def record_mismatch(
    session: Session,
    *,
    patient: Patient,
    fields: tuple[str, ...],
    result_id: str | None,
    facility: str | None,
    source: str,
) -> None:
    """File which sender gave which fields differently (names of fields only, never values)."""
    session.add(
        IdentityMismatch(
            id=new_id(),
            patient_id=patient.id,
            result_id=result_id,
            facility=facility,
            source=source[:32],
            fields=",".join(fields),
            created=utcnow(),
        )
    )


def _filed_device(session: Session, model: ModelRef) -> Device | None:
    return session.scalars(
        select(Device).where(
            Device.model_name == model.name,
            Device.model_version == model.version,
            Device.model_sha256 == model.sha256,
        )
    ).first()


def _filed_device_id(session: Session, model: ModelRef) -> str | None:
    params = {"name": model.name, "version": model.version, "sha256": model.sha256}
    return session.execute(_DEVICE_ID, params).scalar()


def _new_device_row(model: ModelRef) -> dict[str, Any]:
    """The ``devices`` row of a model version not filed yet (version 1, as of now)."""
    now = utcnow()
    return {
        "id": new_id(),
        "model_name": model.name,
        "model_version": model.version,
        "model_sha256": model.sha256,
        "created": now,
        "updated": now,
        "version": 1,
        # What the model was trained on, as its file says now: the Device keeps saying it once the
        # version is no longer served.
        "training": model.training,
        "training_data": model.training_data,
    }


def _new_device(model: ModelRef) -> Device:
    return Device(**_new_device_row(model))


def upsert_device(session: Session, model: ModelRef) -> Device:
    """The Device of this exact model version (name, version and ONNX sha256)."""
    row = _filed_device(session, model)
    if row is None:
        row = _new_device(model)
        session.add(row)
        session.flush()
    return row


def _filed_study(session: Session, data: ImagingResultIn, patient: Patient) -> Study | None:
    """The study of ``data`` if it is filed already (accession and date completed), else None.

    Raises:
        ResendConflict: It is filed by another facility.
        Conflict: It is filed under another patient.
    """
    study = session.scalars(_STUDY_BY_UID, {"uid": data.study_instance_uid}).first()
    if study is None:
        return None
    if study.facility != data.patient.facility:
        raise ResendConflict(
            "This StudyInstanceUID is already filed by another facility; a study belongs to the facility "
            "that sent it first. Nothing was filed.",
            study_id=study.id,
        )
    if study.patient_id != patient.id:
        raise Conflict(
            "This StudyInstanceUID is already filed under another patient; a study belongs to one patient. "
            "Check the patient identifier and issuer the sender used.",
            study_id=study.id,
        )
    accession = study.accession or data.accession_number
    study_date = study.study_date or fhir_date(data.study_date)
    if (accession, study_date) != (study.accession, study.study_date):
        study.accession, study.study_date = accession, study_date
        changed(session, study)  # the ImagingStudy shows them from now on (meta.lastUpdated)
    return study


def _new_study(data: ImagingResultIn, patient: Patient) -> dict[str, Any]:
    """The ``studies`` row of a study not filed yet."""
    now = utcnow()
    return {
        "id": new_id(),
        "study_instance_uid": data.study_instance_uid,
        "patient_id": patient.id,
        "accession": data.accession_number,
        "study_date": fhir_date(data.study_date),
        "modality": data.instances[0].modality,
        "facility": data.patient.facility,
        "created": now,
        "updated": now,
        "version": 1,
    }


def _new_instances(instances: Sequence[InstanceIn], study_id: str, known: set[str]) -> list[dict[str, Any]]:
    """The ``instances`` rows of ``instances`` not filed yet (``known``: those filed), each once."""
    rows: dict[str, dict[str, Any]] = {}
    for instance in instances:
        uid = instance.sop_instance_uid
        if uid in known or uid in rows:
            continue
        rows[uid] = {
            "sop_instance_uid": uid,
            "series_instance_uid": instance.series_instance_uid,
            "sop_class_uid": instance.sop_class_uid,
            "modality": instance.modality,
            "view_position": instance.view_position,
            "study_id": study_id,
            "pixel_digest": instance.pixel_digest,
        }
    return list(rows.values())


def filed_in_study(session: Session, instances: Sequence[InstanceIn], *, study_id: str) -> set[str] | None:
    """The SOP instance UIDs of ``instances`` filed already in the study ``study_id`` with the same pixels;
    None when one is filed under another study or with other pixels (a conflict, not a resend)."""
    try:
        return _check_known_instances(session, instances, study_id=study_id)
    except ResendConflict:
        return None


def add_instances(
    session: Session, study: Study, instances: Sequence[InstanceIn], known: set[str]
) -> tuple[str, ...]:
    """File ``instances`` not filed yet (``known``: those filed, :func:`filed_in_study`) in ``study``,
    with no result of their own; the caller audits the write in the same transaction.

    Returns:
        The SOP instance UIDs filed now.
    """
    rows = _new_instances(instances, study.id, known)
    if rows:
        changed(session, study)  # its ImagingStudy lists them from now on (meta.lastUpdated)
        session.execute(_INSERT_INSTANCES, rows)
    return tuple(row["sop_instance_uid"] for row in rows)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a non-finite OOD score is stored as null (and was not assessable)."""
    return float(value) if math.isfinite(value) else None


def _audit_result(
    session: Session,
    audit: AuditIn | None,
    *,
    resource_type: str,
    stored: StoredResult,
    outcome: str,
    flush: bool = True,
) -> None:
    # In the result's own transaction: nothing is filed without its audit entry, nothing audited unfiled.
    if audit is None:
        return
    chain = _audit.append if flush else _audit.append_unflushed
    chain(
        session,
        **_audit.columns_of(
            audit,
            resource_type=resource_type,
            resource_id=stored.result_id,
            patient_id=stored.patient_id,
            outcome=outcome,
        ),
    )


def study_priority(session: Session, study_instance_uid: str) -> str | None:
    """The priority of the newest result of a study, or None."""
    return session.scalars(
        select(Result.priority)
        .join(Study, Result.study_id == Study.id)
        .where(Study.study_instance_uid == study_instance_uid)
        .order_by(Result.created_at.desc(), Result.id.desc())
        .limit(1)
    ).first()


def _higher_priority(new: str, existing: str | None) -> str:
    """The more urgent of two priorities (:data:`PRIORITIES` lists them most urgent first)."""
    if existing is None or existing not in PRIORITIES:
        return new
    return min(new, existing, key=PRIORITIES.index)


def _filed_build(destinations: Sequence[str]) -> PendingBuild:
    """The pending build of a result just filed, as :func:`_builds.pending_in` reads back the row that
    :func:`_builds.add_filed` wrote (its destinations column joined and cut to 1024 characters)."""
    stored = ",".join(destinations)[:1024]
    return PendingBuild(
        destinations=tuple(name for name in stored.split(",") if name),
        state="pending",
        attempts=0,
        error_code=None,
        last_error=None,
    )


def _filed_view(
    result: Result,
    *,
    patient: Patient,
    study: Study,
    findings: tuple[FindingResult, ...],
    build: PendingBuild | None,
) -> ImagingResult:
    """The typed result of an imaging result written in this transaction, from its rows in the session:
    what reading it back would return (those rows are the session's identity map), without the SELECTs.

    A new result has nothing in the outbox yet: its deliveries are its pending build's destinations.
    """
    set_committed_value(result, "patient", patient)
    set_committed_value(result, "study", study)
    typed = typed_result(result, findings=findings)
    assert isinstance(typed, ImagingResult)
    return with_deliveries(typed, (), build)


def filed_resend(session: Session, data: ImagingResultIn | Sent, key: str) -> StoredResult | None:
    """The result already filed that ``data`` is a true resend of (``created`` False), else None: the
    result filed under its instance key, or the newest of its study when every instance is filed there
    already (:func:`_held_by_study`).

    Raises:
        ResendConflict: The UIDs are filed already by another facility or with other pixels.
    """
    existing = find_by_key(session, key)
    if existing is None:
        existing = _held_by_study(session, data)
    return None if existing is None else _check_resend(session, data, existing)


def write_resend(
    session: Session, data: ImagingResultIn | Sent, key: str, audit: AuditIn | None = None
) -> StoredResult | None:
    """:func:`filed_resend`, audited ``duplicate`` in the caller's transaction when it finds the result.

    Raises:
        ResendConflict: The UIDs are filed already by another facility or with other pixels.
    """
    stored = filed_resend(session, data, key)
    if stored is not None:
        _audit_result(session, audit, resource_type="ImagingResult", stored=stored, outcome="duplicate")
    return stored


def write_imaging(
    session: Session,
    data: ImagingResultIn,
    key: str,
    audit: AuditIn | None = None,
    sender: _scope.Scope | None = None,
) -> StoredResult:
    """Every row of one imaging result and its audit entry; the caller commits or rolls back the whole.

    Raises:
        ResendConflict: The UIDs are filed already by another facility or with other pixels.
        Conflict: The study is filed under another patient.
        ConsentObjection: The patient objected to AI processing (read once the audit head is locked).
    """
    resent = write_resend(session, data, key, audit)
    if resent is not None:
        return resent
    patient, mismatched = upsert_patient(session, data.patient)
    # Every row is read (and every conflict refused) before the first new row is written. The new rows
    # are then inserted in the order their foreign keys need, each table in one statement, without an
    # ORM object per row: nothing in this transaction reads them back, the answer is typed from these
    # values.
    filed_study = _filed_study(session, data, patient)
    priority = data.priority
    if data.keep_study_priority and filed_study is not None:  # a new study has no result yet
        priority = _higher_priority(priority, study_priority(session, data.study_instance_uid))
    new_study = _new_study(data, patient) if filed_study is None else None
    # A new study is never added to the session (its row is inserted below): this object types the answer.
    study = filed_study if filed_study is not None else Study(**(new_study or {}))
    known = _check_known_instances(session, data.instances, study_id=study.id)
    device_id = _filed_device_id(session, data.model)
    new_device = _new_device_row(data.model) if device_id is None else None
    if new_device is not None:
        device_id = new_device["id"]
    assert device_id is not None
    owed = data.outputs is not None and bool(data.outputs.destinations)
    # Read once for both: the outputs owed outside the record and the training input kept.
    consent = _consent.filed_state(session, patient.id) if owed or data.training_input is not None else None
    told = told_mismatches(session, patient, mismatched, sender)
    warnings = (*data.warnings, mismatch_warning(told)) if told else data.warnings
    values = _result_row("imaging", patient, data.patient, device_id, data.model, priority, warnings)
    values.update(
        facility=data.patient.facility,
        study_id=study.id,
        instance_key=key,
        source=data.source,
        rationale=dict(data.rationale),
        payload={
            "synthetic": bool(data.model.synthetic),
            "primary_sop_instance_uid": data.primary_sop_instance_uid,
            "assessable": bool(data.assessable),
            "ood": (
                None
                if data.ood_score is None or data.ood_threshold is None
                else {"score": _finite_or_none(data.ood_score), "threshold": float(data.ood_threshold)}
            ),
        },
    )
    if new_study is not None:
        session.execute(_INSERT_STUDY, new_study)
    instances = _new_instances(data.instances, study.id, known)
    if instances:
        if filed_study is not None:  # its ImagingStudy lists them from now on (meta.lastUpdated)
            changed(session, filed_study)
        session.execute(_INSERT_INSTANCES, instances)
    if new_device is not None:
        session.execute(_INSERT_DEVICE, new_device)
    session.execute(_INSERT_RESULT, values)
    result_id: str = values["id"]
    findings: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "result_id": result_id,
            "ordinal": ordinal,
            "code": finding.code,
            "display": finding.display,
            "probability": float(finding.probability),
            "positive": bool(finding.positive),
            "threshold": float(finding.threshold),
            "box": None if finding.box is None else [int(v) for v in finding.box],
            "has_heatmap": finding.heatmap_png is not None
            or (finding.heatmap and data.rendering is not None),
        }
        for ordinal, finding in enumerate(data.findings)
    ]
    if findings:
        session.execute(_INSERT_FINDINGS, findings)
    heatmaps = [
        {"result_id": result_id, "code": finding.code, "png": bytes(finding.heatmap_png)}
        for finding in data.findings
        if finding.heatmap_png is not None
    ]
    if heatmaps:
        session.execute(_INSERT_HEATMAPS, heatmaps)
    if data.rendering is not None:
        session.execute(
            _INSERT_RENDERING,
            {
                "result_id": result_id,
                "display": bytes(data.rendering.display),
                "cams": bytes(data.rendering.cams),
                "geometry": dict(data.rendering.geometry),
            },
        )
    if mismatched:
        record_mismatch(
            session,
            patient=patient,
            fields=mismatched,
            result_id=result_id,
            facility=data.patient.facility,
            source=data.source,
        )
    build = None
    # Nothing is owed outside the record for a patient who objected to sharing (checked again at build).
    if owed and data.outputs is not None and consent is not None and consent.national_sharing:
        # In the result's transaction: the outbox worker of any process builds the outputs from it, so no
        # result is filed without its outputs, whatever crashes after the commit.
        _builds.add_filed(
            session,
            result_id=result_id,
            destinations=data.outputs.destinations,
            spool=data.outputs.spool,
            source=data.outputs.source,
        )
        build = _filed_build(data.outputs.destinations)
    # The result as the session would hold it, never added to it (its row is written above).
    result = Result(**values)
    stored = StoredResult(
        result_id=result_id,
        patient_id=patient.id,
        created=True,
        mismatched=mismatched,
        result=_filed_view(
            result,
            patient=patient,
            study=study,
            findings=tuple(finding_result(**row) for row in findings),
            build=build,
        ),
    )
    # The rows still pending are flushed with the audit entries, at the latest when the caller commits.
    _audit_result(
        session, audit, resource_type="ImagingResult", stored=stored, outcome="success", flush=False
    )
    # The consent the intake read before the model ran was another transaction's: read again here, once
    # the entry above holds the audit chain's head (as write_triage does), so an objection committed
    # meanwhile is seen (nothing is filed) and one committed later waits for this filing and follows it.
    if not _consent.filed_state(session, patient.id).ai_processing:
        raise _consent.ConsentObjection(_OBJECTED)
    if data.training_input is not None and consent is not None:
        kept = data.training_input
        _training_inputs.keep_new(
            session,
            result=result,
            consent=consent,
            model_name=kept.model_name,
            model_version=kept.model_version,
            input_size=kept.input_size,
            pixels=kept.pixels,
        )
    return stored


_OBJECTED: Final = "The patient has objected to AI processing of their data; nothing was filed."


def write_triage(
    session: Session, data: TriageResultIn, audit: AuditIn | None = None, sender: _scope.Scope | None = None
) -> StoredResult:
    """Every row of one triage result and its audit entry; the caller commits or rolls back the whole.

    A request already answered (same ``Idempotency-Key``, or the exact same observation from the same
    sender) files nothing: the result filed first is returned with ``created=False`` and the audit
    entry says ``duplicate``.

    Raises:
        IdempotencyKeyReused: The sender's key was used before for other content.
    """
    if data.request is not None:
        filed = find_filed(session, data.request)
        if filed is not None:
            stored = StoredResult(result_id=filed.id, patient_id=filed.patient_id, created=False)
            _audit_result(session, audit, resource_type="TriageResult", stored=stored, outcome="duplicate")
            return stored
    patient, mismatched = upsert_patient(session, data.patient)
    vitals = VitalsObservation(
        id=new_id(), patient_id=patient.id, observed_at=as_utc(data.observed_at), created=utcnow()
    )
    for column in VITAL_FIELDS:
        setattr(vitals, column, data.vitals.get(column))
    session.add(vitals)
    session.flush()
    device = upsert_device(session, data.model)
    told = told_mismatches(session, patient, mismatched, sender)
    warnings = (*data.warnings, mismatch_warning(told)) if told else data.warnings
    result = _new_result("triage", patient, data.patient, device, data.model, data.priority, warnings)
    result.facility = data.patient.facility
    result.vitals_id = vitals.id
    if data.request is not None:
        result.idempotency_key = data.request.idempotency_key
        result.request_digest = data.request.request_digest
        result.observation_key = data.request.observation_key
    result.rationale = dict(data.rationale)
    result.payload = {
        "synthetic": bool(data.model.synthetic),
        "risk": {
            "probability": float(data.probability),
            "positive": bool(data.positive),
            "threshold": float(data.threshold),
        },
        "logit": float(data.logit),
        "intercept": float(data.intercept),
        "contributions": {name: float(value) for name, value in data.contributions.items()},
        "news2": None if data.news2 is None else dict(data.news2),
        "missing": list(data.missing),
        "trend": None if data.trend is None else dict(data.trend),
    }
    session.add(result)
    if mismatched:
        record_mismatch(
            session,
            patient=patient,
            fields=mismatched,
            result_id=result.id,
            facility=data.patient.facility,
            source="vitals",
        )
    session.flush()
    stored = StoredResult(result_id=result.id, patient_id=patient.id, created=True, mismatched=mismatched)
    _audit_result(session, audit, resource_type="TriageResult", stored=stored, outcome="success")
    # The consent the request read before scoring was another transaction's: read again here, once the
    # entry above holds the audit chain's head, an objection committed meanwhile is seen (nothing is
    # filed), and one committed later waits for this filing and follows it on the trail.
    if not _consent.filed_state(session, patient.id).ai_processing:
        raise _consent.ConsentObjection(_OBJECTED)
    return stored


def _result_row(
    kind: str,
    patient: Patient,
    sent: PatientIn,
    device_id: str,
    model: ModelRef,
    priority: str,
    warnings: tuple[str, ...],
) -> dict[str, Any]:
    """The columns every new result has, as a ``results`` row.

    ``sent`` is the patient as this result's sender described it: its age when filed and its sex are kept
    with the result (the patient row keeps the first facility's demographics and never another's).
    """
    now = utcnow()
    return {
        "id": new_id(),
        "kind": kind,
        "patient_id": patient.id,
        "patient_age": age_at(fhir_date(sent.birth_date), now),
        "patient_sex": (sent.sex or "").strip() or None,
        "device_id": device_id,
        "model_name": model.name,
        "model_version": model.version,
        "model_sha256": model.sha256,
        "provider": model.provider,
        "priority": priority,
        "status": "open",
        "warnings": list(warnings),
        "created_at": now,
    }


def _new_result(
    kind: str,
    patient: Patient,
    sent: PatientIn,
    device: Device,
    model: ModelRef,
    priority: str,
    warnings: tuple[str, ...],
) -> Result:
    return Result(**_result_row(kind, patient, sent, device.id, model, priority, warnings))
