"""The record's tables as SQLAlchemy 2 typed ORM classes.

The schema itself is created by the Alembic migrations in ``migrations/``; these classes mirror it
for queries. Ids are UUID strings so that they double as FHIR resource ids.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from inference.record._types import UTCDateTime


class Base(DeclarativeBase):
    """Declarative base of the record's tables."""


class Patient(Base):
    """A patient, unique per (identifier, issuer); ``issuer`` is ``''`` when the sender named none.

    The empty string rather than NULL keeps the UNIQUE constraint effective: SQL treats NULLs as distinct.
    ``issuer`` is stored normalised (:func:`normalise_issuer`). ``facility`` is the facility that first filed
    the patient; it never changes (results carry their own owning facility).
    """

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(256))
    birth_date: Mapped[str | None] = mapped_column(String(10))
    sex: Mapped[str | None] = mapped_column(String(16))
    facility: Mapped[str | None] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the record last changed what the Patient resource shows (migration 0022): filed, or a
    # demographic filled in since (FHIR meta.lastUpdated, ``_lastUpdated``, ``$everything``'s ``_since``).
    # Indexed (migration 0023, ``ix_patients_updated``).
    updated: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # How many times the record changed what the Patient resource shows, from 1 (migration 0024; FHIR
    # meta.versionId): one more in each transaction that sets ``updated`` on a filed row.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The name's words as FHIR name searches compare them (migration 0020; :func:`name_words`).
    name_words: Mapped[str | None] = mapped_column(String(400))
    family_words: Mapped[str | None] = mapped_column(String(400))
    given_words: Mapped[str | None] = mapped_column(String(400))


_WORDS_MAX = 400


def fold_words(text: str) -> str:
    """``text`` as name searches compare it: accents dropped, case folded, words separated by single
    spaces, with a space before each word (``" benali khadija"``), so that ``LIKE '% ben%'`` is "a word
    starts with ben". Empty when there is no letter or digit."""
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    words = "".join(ch if ch.isalnum() else " " for ch in letters).split()
    return "".join(f" {word}" for word in words)[:_WORDS_MAX]


def pn_groups(name: str) -> list[tuple[str, str, str, str, str]]:
    """The non-empty component groups of a DICOM PN (``alphabetic=ideographic=phonetic``), each as
    ``(family, given, middle, prefix, suffix)``."""
    return [
        (f, g, m, p, s)
        for f, g, m, p, s, *_rest in ([*group.split("^"), "", "", "", ""] for group in name.split("="))
        if f"{f}{g}{m}{p}{s}".strip()
    ]


def name_words(name: str | None) -> tuple[str | None, str | None, str | None]:
    """``(all words, family words, given words)`` of a stored name, folded (:func:`fold_words`).

    A DICOM PN (``family^given^middle^prefix^suffix``) has a family and given names, in each of its ``=``
    groups (alphabetic, ideographic, phonetic: the same person in three scripts, each searched); a name
    sent as free text (JSON) has words only, so it is found by ``name`` but not by ``family`` or ``given``.
    """
    if name is None or not name.strip():
        return None, None, None
    if "^" not in name and "=" not in name:
        return fold_words(name) or None, None, None
    groups = pn_groups(name)
    every = fold_words(" ".join(f"{p} {g} {m} {f} {s}" for f, g, m, p, s in groups))
    family = fold_words(" ".join(f for f, _g, _m, _p, _s in groups))
    given = fold_words(" ".join(f"{g} {m}" for _f, g, m, _p, _s in groups))
    return every or None, family or None, given or None


def normalise_issuer(issuer: str | None) -> str:
    """The issuer as the record keys patients: trimmed and upper case (``''`` when none was named).

    Senders write the same assigning authority as ``CHU-Nord``, ``chu-nord `` or ``CHU-NORD``; one
    patient must not become three (and a consent recorded under one spelling must bind the others).
    """
    return (issuer or "").strip().upper()


class Study(Base):
    """A DICOM study of one patient."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    accession: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(10))
    modality: Mapped[str | None] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    facility: Mapped[str | None] = mapped_column(String(128))
    # When the record last changed what the ImagingStudy shows (migration 0022): filed, or instances,
    # accession or study date added since by a later result of the study. Indexed (migration 0023,
    # ``ix_studies_updated``).
    updated: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The ImagingStudy's meta.versionId, as ``Patient.version`` (migration 0024).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    instances: Mapped[list[Instance]] = relationship(order_by="Instance.sop_instance_uid")


class Instance(Base):
    """One DICOM instance of a study."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16))
    view_position: Mapped[str | None] = mapped_column(String(16))
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id"))
    pixel_digest: Mapped[str | None] = mapped_column(String(64))


class VitalsObservation(Base):
    """One set of vital signs in contract units; every value may be missing."""

    __tablename__ = "vitals_observations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    respiratory_rate: Mapped[float | None] = mapped_column(Float)
    spo2: Mapped[float | None] = mapped_column(Float)
    spo2_scale: Mapped[int | None] = mapped_column(Integer)
    on_oxygen: Mapped[bool | None] = mapped_column(Boolean)
    systolic_bp: Mapped[float | None] = mapped_column(Float)
    diastolic_bp: Mapped[float | None] = mapped_column(Float)
    heart_rate: Mapped[float | None] = mapped_column(Float)
    temperature: Mapped[float | None] = mapped_column(Float)
    consciousness: Mapped[str | None] = mapped_column(String(1))
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class Device(Base):
    """One model version as a FHIR Device: a retrained model is a new device.

    What the model was trained on is kept with it (migration 0022), as its model file said when the
    device was filed, so that the Device of a model no longer served still says it: ``training`` is the
    sentence every result of the model carries, ``training_data`` the data-set line of its metadata
    (None when the file names none; both None for a device filed before 0022 whose results did not say,
    until its version is put into service: ``_devices``).

    ``version`` and ``updated`` (migration 0025) are the Device's ``meta.versionId`` and
    ``meta.lastUpdated``: 1 and its filing, one more and then each time the record changes what it says.
    ``updated`` is NULL only where an older server version filed the row into a migrated SQLite record.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    training: Mapped[str | None] = mapped_column(Text)
    training_data: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Result(Base):
    """One analysis: an imaging result (study + findings) or a triage result (vitals + risk).

    ``instance_key`` is the sha256 of the model name and version and the sorted SOP instance UIDs; its
    UNIQUE constraint makes a re-sent study return the result already filed. Triage results have none.
    ``payload`` holds the kind-specific values (triage: risk, logit, intercept, contributions, news2).
    """

    __tablename__ = "results"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    study_id: Mapped[str | None] = mapped_column(ForeignKey("studies.id"))
    vitals_id: Mapped[str | None] = mapped_column(ForeignKey("vitals_observations.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    warnings: Mapped[list[str]] = mapped_column(JSON)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    rationale: Mapped[dict[str, str]] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(32))
    instance_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Triage only (migration 0008): the sender's Idempotency-Key (hashed with the sender), the digest of
    # the request it answered, and the key of the exact observation (sender, patient, time, values).
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str | None] = mapped_column(String(64))
    observation_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    facility: Mapped[str | None] = mapped_column(String(128))
    # Migration 0014: the patient's age (whole years when filed) and sex as this result's facility sent
    # them. The patient row keeps the first facility's; a facility reading its own result of another
    # facility's patient sees what it sent, not what the other facility recorded.
    patient_age: Mapped[int | None] = mapped_column(Integer)
    patient_sex: Mapped[str | None] = mapped_column(String(16))

    patient: Mapped[Patient] = relationship()
    study: Mapped[Study | None] = relationship()
    vitals: Mapped[VitalsObservation | None] = relationship()
    device: Mapped[Device] = relationship()
    findings: Mapped[list[Finding]] = relationship(order_by="Finding.ordinal")

    @property
    def assessable(self) -> bool:
        """False for an imaging result whose image the model refused as out of distribution.

        Results filed before the OOD guard existed have no such entry and count as assessable.
        """
        return bool((self.payload or {}).get("assessable", True))

    @property
    def ood(self) -> dict[str, Any] | None:
        """``{"score", "threshold"}`` of an imaging result (score null when it was not finite)."""
        value = (self.payload or {}).get("ood")
        return dict(value) if isinstance(value, dict) else None


class Finding(Base):
    """One finding of an imaging result; its id is the id of the FHIR Observation that carries it."""

    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    ordinal: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(64))
    display: Mapped[str] = mapped_column(String(128))
    probability: Mapped[float] = mapped_column(Float)
    positive: Mapped[bool] = mapped_column(Boolean)
    threshold: Mapped[float] = mapped_column(Float)
    box: Mapped[list[int] | None] = mapped_column(JSON)
    has_heatmap: Mapped[bool] = mapped_column(Boolean)


class Heatmap(Base):
    """The PNG overlay of one finding (kept apart so listing findings never loads image bytes)."""

    __tablename__ = "heatmaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    code: Mapped[str] = mapped_column(String(64))
    png: Mapped[bytes] = mapped_column(LargeBinary)


class Rendering(Base):
    """What drawing an imaging result's heatmaps needs: the display rendering and the CAMs (a few KB).

    Overlays are drawn from it when first asked for; the DICOM Secondary Captures are built from it.
    """

    __tablename__ = "renderings"

    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), primary_key=True)
    display: Mapped[bytes] = mapped_column(LargeBinary)
    cams: Mapped[bytes] = mapped_column(LargeBinary)
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON)


class Feedback(Base):
    """A reader's verdicts on one result, with the exact model that produced it."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    reader: Mapped[str] = mapped_column(String(128))
    verdicts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """One access to the record; the table is append-only (triggers refuse UPDATE and DELETE).

    Entries are hash-chained (migration 0003): ``seq`` numbers them without gaps, ``prev_hash`` is the
    ``hash`` of entry ``seq - 1`` and ``hash`` the sha256 of the entry's canonical content, ``prev_hash``
    included (see :mod:`inference.record._audit`). Editing or deleting an entry breaks the chain.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    subject: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    facility: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    patient_id: Mapped[str | None] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(32))
    client: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))  # migration 0010; None outside a request
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The one row (``id`` 1) holding the newest entry of the audit chain.

    Appends lock it (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) so that two
    writers never chain onto the same entry, and ``audit verify`` compares the last entry with it, so a
    deleted tail is noticed too.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Consent(Base):
    """A patient's choices: objection to AI processing and to sharing with the national record.

    No row means no objection was recorded (both allowed), as the national record's default is opt-out.
    """

    __tablename__ = "consents"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    ai_processing: Mapped[bool] = mapped_column(Boolean)
    national_sharing: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_role: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    facility_sharing: Mapped[bool] = mapped_column(Boolean, default=False)


class BreakGlass(Base):
    """A break-the-glass grant: one person's reasoned, time-limited access to one patient's results."""

    __tablename__ = "break_glass"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    facility: Mapped[str | None] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    reason: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityMismatch(Base):
    """A sender's demographics that differ from the patient on file: who sent them and which fields.

    Values are never stored here (the record keeps its own; the sender's are in the sender's system).
    """

    __tablename__ = "identity_mismatches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    result_id: Mapped[str | None] = mapped_column(String(36))
    facility: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32))
    fields: Mapped[str] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
