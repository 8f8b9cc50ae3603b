"""Builders of record inputs for the record tests (synthetic patients and UIDs only)."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from PIL import Image

from inference.record import (
    FindingIn,
    ImagingResultIn,
    InstanceIn,
    ModelRef,
    PatientIn,
    Record,
    TriageResultIn,
)

CXR_MODEL = ModelRef(
    name="cxr-findings", version="3", sha256="a" * 64, provider="CPUExecutionProvider", synthetic=False
)
TRIAGE_MODEL = ModelRef(
    name="vitals-triage", version="2", sha256="b" * 64, provider="CPUExecutionProvider", synthetic=False
)
SECRET_NAME = "Zelda Quixote-Synthetic"
SECRET_BIRTH = "1950-02-01"


def png_bytes(shade: int = 128) -> bytes:
    """A real 8x8 grey PNG."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), shade).save(buffer, format="PNG")
    return buffer.getvalue()


def uid() -> str:
    """A fresh DICOM UID under the UUID-derived root 2.25."""
    return f"2.25.{uuid.uuid4().int}"


def patient(identifier: str = "IPP-000123", **kw: str | None) -> PatientIn:
    defaults: dict[str, str | None] = {
        "issuer": "CHU-NORD",
        "name": SECRET_NAME,
        "birth_date": SECRET_BIRTH,
        "sex": "female",
        "facility": "north",
    }
    defaults.update(kw)
    return PatientIn(identifier=identifier, **defaults)  # type: ignore[arg-type]


def imaging(
    *,
    pat: PatientIn | None = None,
    study_uid: str | None = None,
    sop_uids: tuple[str, ...] | None = None,
    model: ModelRef = CXR_MODEL,
    priority: str = "urgent",
    heatmap: bytes | None = None,
) -> ImagingResultIn:
    """An imaging result of two instances with two findings (one positive, with a heatmap)."""
    sops = sop_uids or (uid(), uid())
    series = uid()
    instances = tuple(
        InstanceIn(
            sop_instance_uid=s,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
            series_instance_uid=series,
            modality="DX",
            view_position="PA" if i == 0 else "LL",
        )
        for i, s in enumerate(sops)
    )
    return ImagingResultIn(
        patient=pat or patient(),
        study_instance_uid=study_uid or uid(),
        accession_number="ACC-42",
        study_date="20261122",
        instances=instances,
        primary_sop_instance_uid=sops[0],
        model=model,
        findings=(
            FindingIn(
                code="pleural_effusion",
                display="Pleural effusion",
                probability=0.91,
                positive=True,
                threshold=0.5,
                box=(10, 20, 40, 60),
                heatmap_png=png_bytes() if heatmap is None else heatmap,
            ),
            FindingIn(
                code="pneumothorax", display="Pneumothorax", probability=0.03, positive=False, threshold=0.4
            ),
        ),
        priority=priority,
        warnings=("Model trained on synthetic data; not for clinical use.",),
        rationale={"en": "Pleural effusion likely (91%).", "fr": "Épanchement pleural probable (91 %)."},
        source="upload",
    )


def triage(*, pat: PatientIn | None = None, priority: str = "critical", news2: bool = True) -> TriageResultIn:
    """A triage result with every vital sign measured."""
    return TriageResultIn(
        patient=pat or patient(),
        observed_at=datetime(2026, 11, 22, 8, 15, tzinfo=UTC),
        vitals={
            "respiratory_rate": 22.0,
            "spo2": 93.0,
            "spo2_scale": 1,
            "on_oxygen": False,
            "systolic_bp": 105.0,
            "diastolic_bp": 70.0,
            "heart_rate": 112.0,
            "temperature": 38.4,
            "consciousness": "A",
        },
        model=TRIAGE_MODEL,
        probability=0.73,
        positive=True,
        threshold=0.3,
        logit=0.99,
        intercept=-2.0,
        contributions={"respiratory_rate": 0.8, "spo2": 0.5, "heart_rate": 1.69},
        news2={
            "total": 7,
            "subscores": {
                "respiratory_rate": 2,
                "spo2": 2,
                "on_oxygen": 0,
                "systolic_bp": 1,
                "heart_rate": 2,
                "consciousness": 0,
                "temperature": 0,
            },
            "band": "high",
        }
        if news2
        else None,
        priority=priority,
        warnings=(),
        rationale={"en": "High risk of deterioration (73%)."},
    )


__all__ = ["CXR_MODEL", "TRIAGE_MODEL", "imaging", "patient", "png_bytes", "replace", "triage", "uid"]


def migrate(record: Record, to: str) -> None:
    """Bring ``record``'s schema to revision ``to`` (``head``: upgrade; any other: downgrade to it)."""
    from alembic import command
    from alembic.config import Config

    from inference.record._engine import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    with record.engine.connect() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if to != "head" else command.upgrade)(config, to)
        connection.commit()
