"""Shared helpers of the security tests: a seeded DXASSIST_HOME, tokens, DICOM builders, audit access."""

from __future__ import annotations

import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiny_models

from inference.config import Settings
from inference.security import issue_token

TESTS = Path(__file__).resolve().parents[1]
for _folder in (TESTS / "inference" / "api", TESTS / "inference" / "dicom"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from _api_dicom import (  # noqa: E402
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    chest_dicom,
    related_body,
)

with warnings.catch_warnings():
    # starlette warns (as a UserWarning) that it prefers httpx2 over httpx; the dev extra pins httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = [
    "BIRTH_DATE",
    "PATIENT_ID",
    "PATIENT_NAME",
    "Env",
    "TestClient",
    "chest_dicom",
    "make_settings",
    "new_study_uid",
    "related_body",
    "seeded_env",
    "upload",
]


@dataclass(frozen=True)
class Env:
    """One server home: its settings and a way to make bearer headers."""

    home: Path
    settings: Settings

    def headers(
        self, role: str, *, facility: str | None = "F1", subject: str | None = None
    ) -> dict[str, str]:
        """``Authorization`` header for a fresh token of ``role``, bound to ``facility`` (F1 by default:
        results belong to the facility that sent them; ``facility=None`` makes a token bound to none)."""
        token = issue_token(self.settings, subject=subject or f"test-{role}", role=role, facility=facility)
        return {"Authorization": f"Bearer {token}"}


def make_settings(home: Path, **overrides: Any) -> Settings:
    """Settings for a test server: SQLite record and model cache under ``home``, no MLflow, no watcher."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": None,
        "mlflow_tracking_uri": None,
        "model_watch_seconds": 0,
        "preprocess_workers": 1,
        "jwks_url": None,
    }
    values.update(overrides)
    return Settings(**values)


def seeded_env(home: Path, **overrides: Any) -> Env:
    """A home with the tiny models seeded in its cache."""
    settings = make_settings(home, **overrides)
    tiny_models.seed_both(settings.model_cache, home / "build")
    return Env(home=home, settings=settings)


def new_study_uid() -> str:
    """A fresh, valid study UID (the 2.25 UUID-derived form)."""
    return f"2.25.{uuid.uuid4().int}"


def upload(client: TestClient, headers: dict[str, str], **dicom: Any) -> Any:
    """POST one chest image of a new study (``dicom`` overrides :func:`chest_dicom` arguments)."""
    study = dicom.pop("study", None) or new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", **dicom)
    return client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
    )
