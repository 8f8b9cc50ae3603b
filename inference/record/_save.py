"""Writing one result: the steps that run inside the single transaction ``Record`` opens for it."""

from __future__ import annotations

import hashlib
import math
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from inference.record._errors import Conflict, RecordError
from inference.record._inputs import ImagingResultIn, ModelRef, PatientIn, StoredResult, TriageResultIn
from inference.record._models import (
    Device,
    Finding,
    Heatmap,
    Instance,
    Patient,
    Rendering,
    Result,
    Study,
    VitalsObservation,
)
from inference.record._types import as_utc, fhir_date, new_id, utcnow

PRIORITIES: Final[tuple[str, ...]] = ("critical", "urgent", "routine")
VITAL_COLUMNS: Final[tuple[str, ...]] = (
    "respiratory_rate",
    "spo2",
    "spo2_scale",
    "on_oxygen",
    "systolic_bp",
    "diastolic_bp",
    "heart_rate",
    "temperature",
    "consciousness",
)


def instance_key(model: ModelRef, sop_instance_uids: list[str]) -> str:
    """The idempotency key of an imaging analysis: model name + version + the sorted SOP instance UIDs.

    Hashed so that the UNIQUE index stays small however many instances a study has.
    """
    text = "\n".join([model.name, model.version, *sorted(set(sop_instance_uids))])
    return hashlib.sha256(text.encode()).hexdigest()


def find_by_key(session: Session, key: str) -> StoredResult | None:
    """The result already filed under ``key``, if any."""
    row = session.execute(select(Result.id, Result.patient_id).where(Result.instance_key == key)).first()
    return None if row is None else StoredResult(result_id=row[0], patient_id=row[1], created=False)


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
    if not patient.identifier:
        raise RecordError("A patient identifier is required.")
    for what, value, limit in (
        ("patient identifier", patient.identifier, 128),
        ("identifier issuer", patient.issuer, 128),
        ("patient name", patient.name, 256),
        ("patient sex", patient.sex, 16),
        ("facility", patient.facility, 128),
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
    for instance in data.instances:
        for what, value in (
            ("SOPInstanceUID", instance.sop_instance_uid),
            ("SOPClassUID", instance.sop_class_uid),
            ("SeriesInstanceUID", instance.series_instance_uid),
        ):
            _check_length(what, value, 64)
        _check_length("modality", instance.modality, 16)
        _check_length("view position", instance.view_position, 16)
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


def validate_triage(data: TriageResultIn) -> None:
    """Refuse a triage result the record cannot file faithfully, before any row is written."""
    _check_common(data.patient, data.model)
    _check_priority(data.priority)
    _check_probability("deterioration", data.probability)
    unknown = sorted(set(data.vitals) - set(VITAL_COLUMNS))
    if unknown:
        raise RecordError(
            f"Unknown vital-sign fields {', '.join(unknown)}; accepted fields are {', '.join(VITAL_COLUMNS)}."
        )


def upsert_patient(session: Session, patient: PatientIn) -> Patient:
    """The patient with this (identifier, issuer), created or completed with demographics sent now."""
    issuer = patient.issuer or ""
    row = session.scalars(
        select(Patient).where(Patient.identifier == patient.identifier, Patient.issuer == issuer)
    ).first()
    if row is None:
        row = Patient(id=new_id(), identifier=patient.identifier, issuer=issuer, created=utcnow())
        session.add(row)
    # The latest sender's demographics win field by field; a field it left out keeps its known value.
    # A birth date is kept as an ISO date (DICOM YYYYMMDD is converted); an unreadable one is not kept.
    updates = {
        "name": patient.name,
        "birth_date": fhir_date(patient.birth_date),
        "sex": patient.sex,
        "facility": patient.facility,
    }
    for field, value in updates.items():
        if value is not None:
            setattr(row, field, value)
    session.flush()
    return row


def upsert_device(session: Session, model: ModelRef) -> Device:
    """The Device of this exact model version (name, version and ONNX sha256)."""
    row = session.scalars(
        select(Device).where(
            Device.model_name == model.name,
            Device.model_version == model.version,
            Device.model_sha256 == model.sha256,
        )
    ).first()
    if row is None:
        row = Device(
            id=new_id(),
            model_name=model.name,
            model_version=model.version,
            model_sha256=model.sha256,
            created=utcnow(),
        )
        session.add(row)
        session.flush()
    return row


def _upsert_study(session: Session, data: ImagingResultIn, patient: Patient) -> Study:
    study = session.scalars(select(Study).where(Study.study_instance_uid == data.study_instance_uid)).first()
    if study is None:
        study = Study(
            id=new_id(),
            study_instance_uid=data.study_instance_uid,
            patient_id=patient.id,
            accession=data.accession_number,
            study_date=fhir_date(data.study_date),
            modality=data.instances[0].modality,
            created=utcnow(),
        )
        session.add(study)
        session.flush()
        return study
    if study.patient_id != patient.id:
        raise Conflict(
            "This StudyInstanceUID is already filed under another patient; a study belongs to one patient. "
            "Check the patient identifier and issuer the sender used."
        )
    study.accession = study.accession or data.accession_number
    study.study_date = study.study_date or fhir_date(data.study_date)
    return study


def _add_instances(session: Session, data: ImagingResultIn, study: Study) -> None:
    uids = [instance.sop_instance_uid for instance in data.instances]
    rows = session.execute(
        select(Instance.sop_instance_uid, Instance.study_id).where(Instance.sop_instance_uid.in_(uids))
    )
    known: dict[str, str] = {row[0]: row[1] for row in rows}
    seen: set[str] = set()
    for instance in data.instances:
        uid = instance.sop_instance_uid
        if uid in known:
            if known[uid] != study.id:
                raise Conflict("A SOP instance of this upload is already filed under another study.")
            continue
        if uid in seen:
            continue
        seen.add(uid)
        session.add(
            Instance(
                sop_instance_uid=uid,
                series_instance_uid=instance.series_instance_uid,
                sop_class_uid=instance.sop_class_uid,
                modality=instance.modality,
                view_position=instance.view_position,
                study_id=study.id,
            )
        )
    session.flush()


def write_imaging(session: Session, data: ImagingResultIn, key: str) -> StoredResult:
    """Every row of one imaging result; the caller commits or rolls back the whole."""
    existing = find_by_key(session, key)
    if existing is not None:
        return existing
    patient = upsert_patient(session, data.patient)
    study = _upsert_study(session, data, patient)
    _add_instances(session, data, study)
    device = upsert_device(session, data.model)
    result = _new_result("imaging", patient, device, data.model, data.priority, data.warnings)
    result.study_id = study.id
    result.instance_key = key
    result.source = data.source
    result.rationale = dict(data.rationale)
    result.payload = {"primary_sop_instance_uid": data.primary_sop_instance_uid}
    session.add(result)
    session.flush()
    for ordinal, finding in enumerate(data.findings):
        session.add(
            Finding(
                id=new_id(),
                result_id=result.id,
                ordinal=ordinal,
                code=finding.code,
                display=finding.display,
                probability=float(finding.probability),
                positive=bool(finding.positive),
                threshold=float(finding.threshold),
                box=None if finding.box is None else [int(v) for v in finding.box],
                has_heatmap=finding.heatmap_png is not None
                or (finding.heatmap and data.rendering is not None),
            )
        )
        if finding.heatmap_png is not None:
            session.add(Heatmap(result_id=result.id, code=finding.code, png=bytes(finding.heatmap_png)))
    if data.rendering is not None:
        session.add(
            Rendering(
                result_id=result.id,
                display=bytes(data.rendering.display),
                cams=bytes(data.rendering.cams),
                geometry=dict(data.rendering.geometry),
            )
        )
    session.flush()
    return StoredResult(result_id=result.id, patient_id=patient.id, created=True)


def write_triage(session: Session, data: TriageResultIn) -> StoredResult:
    """Every row of one triage result; the caller commits or rolls back the whole."""
    patient = upsert_patient(session, data.patient)
    vitals = VitalsObservation(
        id=new_id(), patient_id=patient.id, observed_at=as_utc(data.observed_at), created=utcnow()
    )
    for column in VITAL_COLUMNS:
        setattr(vitals, column, data.vitals.get(column))
    session.add(vitals)
    session.flush()
    device = upsert_device(session, data.model)
    result = _new_result("triage", patient, device, data.model, data.priority, data.warnings)
    result.vitals_id = vitals.id
    result.rationale = dict(data.rationale)
    result.payload = {
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
    session.flush()
    return StoredResult(result_id=result.id, patient_id=patient.id, created=True)


def _new_result(
    kind: str,
    patient: Patient,
    device: Device,
    model: ModelRef,
    priority: str,
    warnings: tuple[str, ...],
) -> Result:
    return Result(
        id=new_id(),
        kind=kind,
        patient_id=patient.id,
        device_id=device.id,
        model_name=model.name,
        model_version=model.version,
        model_sha256=model.sha256,
        provider=model.provider,
        priority=priority,
        status="open",
        warnings=list(warnings),
        created_at=utcnow(),
    )
