"""Helpers of the API tests (importable by name, unlike conftest): settings, tokens, study UIDs."""

from __future__ import annotations

import logging
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from inference.config import Settings
from inference.observability import RequestIdFilter
from inference.security import issue_token

with warnings.catch_warnings():
    # starlette >= 1.x warns (as a UserWarning) that it prefers httpx2 over httpx; the dev extra pins httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

__all__ = ["Env", "TestClient", "fhir_reads", "make_settings", "new_study_uid"]


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


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a test server: SQLite record and model cache under ``home``, no MLflow, no watcher."""
    values: dict[str, object] = {
        "home": home,
        "database_url": None,
        "mlflow_tracking_uri": None,
        "model_watch_seconds": 0,
        "preprocess_workers": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def new_study_uid() -> str:
    """A fresh, valid study UID (the 2.25 UUID-derived form)."""
    return f"2.25.{uuid.uuid4().int}"


class LogLines(logging.Handler):
    """Keeps the records of the ``inference`` loggers with the request id the JSON handler would write."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def fhir_reads(env: Env, subject: str) -> list[tuple[str, str | None, str | None, str]]:
    """``subject``'s ``fhir:read`` entries on the audit trail, oldest first: (type, id, patient, outcome)."""
    from inference.record import Record

    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=subject, limit=100)
    finally:
        record.close()
    return [
        (e["resource_type"], e["resource_id"], e["patient_id"], e["outcome"])
        for e in events
        if e["action"] == "fhir:read"
    ][::-1]
