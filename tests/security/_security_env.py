"""Shared helpers of the security tests: a seeded DXASSIST_HOME, tokens, DICOM builders, audit access."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import tiny_models

from inference.config import Settings

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
from _api_env import Env, TestClient, new_study_uid  # noqa: E402
from _api_env import make_settings as api_settings  # noqa: E402

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


def make_settings(home: Path, **overrides: Any) -> Settings:
    """The API tests' settings (SQLite record and model cache under ``home``, no MLflow, no watcher), and
    no JWKS: the tokens are the embedded issuer's, whatever the environment says."""
    return api_settings(home, **{"jwks_url": None, **overrides})


def seeded_env(home: Path, **overrides: Any) -> Env:
    """A home with the tiny models seeded in its cache."""
    settings = make_settings(home, **overrides)
    tiny_models.seed_both(settings.model_cache, home / "build")
    return Env(home=home, settings=settings)


def upload(client: TestClient, headers: dict[str, str], **dicom: Any) -> Any:
    """POST one chest image of a new study (``dicom`` overrides :func:`chest_dicom` arguments)."""
    study = dicom.pop("study", None) or new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", **dicom)
    return client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
    )
