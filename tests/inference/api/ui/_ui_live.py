"""Helpers of the pages' tests: the API under uvicorn on loopback, accounts, studies, and Debian's Chromium
driven by Playwright (never a browser downloaded by ``playwright install``)."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the API tests' helpers

from _api_dicom import chest_dicom  # noqa: E402
from _api_env import Env, TestClient, new_study_uid  # noqa: E402
from _loopback import live_server  # noqa: E402

from inference.record import Record  # noqa: E402
from inference.services import add_user  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "PASSWORD",
    "Env",
    "TestClient",
    "add_account",
    "browser",
    "csrf_of",
    "live_server",
    "new_study_uid",
    "send_study",
    "send_vitals",
    "sign_in",
]


def add_account(env: Env, *, role: str = "radiologist", facility: str | None = "F1") -> str:
    """A fresh local account; returns its username (the password is :data:`PASSWORD`)."""
    username = f"dr.{uuid.uuid4().hex[:8]}"
    record = Record(env.settings.record_url)
    try:
        add_user(record, username=username, password=PASSWORD, role=role, facility=facility)
    finally:
        record.close()
    return username


def send_study(base: str | TestClient, env: Env, *, critical: bool, facility: str = "F1") -> dict[str, Any]:
    """A study of a new patient sent by the facility's PACS; ``critical``: with a bright blob."""
    study = new_study_uid()
    patient = f"P-{uuid.uuid4().hex[:8]}"
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=critical, patient_id=patient)
    files = [("files", ("a.dcm", blob, "application/dicom"))]
    headers = env.headers("pacs", facility=facility)
    if isinstance(base, str):
        response = httpx.post(f"{base}/v1/studies", files=files, headers=headers, timeout=60)
    else:
        response = base.post("/v1/studies", files=files, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def send_vitals(client: TestClient, env: Env, **values: Any) -> dict[str, Any]:
    """Vital signs of a new patient, sent by a clinician."""
    body = {
        "patient": {"identifier": f"V-{uuid.uuid4().hex[:8]}"},
        "respiratory_rate": 16, "spo2": 98, "on_oxygen": False, "systolic_bp": 120, "diastolic_bp": 80,
        "heart_rate": 70, "temperature": 37.0, "consciousness": "A", **values,
    }  # fmt: skip
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    """Sign in through the form (TestClient keeps the cookies); returns the answer to the post."""
    form = client.get("/ui/signin")
    return client.post(
        "/ui/signin",
        data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )


@contextmanager
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
