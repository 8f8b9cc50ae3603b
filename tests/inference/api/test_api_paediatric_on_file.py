"""A child is refused on the birth date the record holds, not only on the one the sender sent.

The age checks (``paediatric_study`` for a chest film, ``paediatric_patient`` for vital signs) read the
birth date of the request (the DICOM header, ``patient.birth_date``). A request that sends none, or sends
another one, for a patient whose birth date is on file (filed by an earlier film or vital signs) was
scored by the adults' models although the record says the patient was a child at the study or the
observation: both checks also read the birth date on file, in the read the request makes of the record
before anything is scored (the patient's consent), and refuse when either birth date makes the patient
under 18 then. The answer names neither the age nor a date; the refusal, which rests on the record, is on
the audit trail under the patient.
"""

from __future__ import annotations

import io
import sqlite3
import uuid
from contextlib import closing
from typing import Any

import pydicom
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid

BORN = "2008-11-22"  # 18 on 2026-11-22
BIRTHDAY = "2026-11-22T08:15:00Z"


def _identifier() -> str:
    return f"IPP-{uuid.uuid4().hex[:8]}"


def _vitals(
    client: TestClient, env: Env, identifier: str, *, observed_at: str, birth_date: str | None = None
) -> Any:
    patient: dict[str, Any] = {"identifier": identifier, "sex": "female"}
    if birth_date is not None:
        patient["birth_date"] = birth_date
    body = {
        "patient": patient,
        "observed_at": observed_at,
        "respiratory_rate": 18,
        "heart_rate": 80,
        "spo2": 97,
        "temperature": 37.2,
        "consciousness": "A",
    }
    return client.post("/v1/vitals", json=body, headers=env.headers("clinician"))


def _film(
    client: TestClient, env: Env, identifier: str, *, birth_date: str = "", study_date: str = "20260105"
) -> tuple[str, Any]:
    study = new_study_uid()
    ds = pydicom.dcmread(
        io.BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id=identifier, birth_date=birth_date))
    )
    ds.StudyDate = study_date
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", out.getvalue(), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    return study, response


def _refused(response: Any, code: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    assert "18" in message
    for told in ("2008", "2026", "11-22", "1122", "17"):
        assert told not in message
    return message


def _audited(env: Env, patient_id: str) -> list[tuple[str, str]]:
    database = env.settings.record_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT action, outcome FROM audit_events WHERE patient_id = ? ORDER BY seq", (patient_id,)
        ).fetchall()
    return [(str(action), str(outcome)) for action, outcome in rows]


def test_vital_signs_without_a_birth_date_are_refused_on_the_birth_date_on_file(
    client: TestClient, env: Env
) -> None:
    identifier = _identifier()
    first = _vitals(client, env, identifier, observed_at=BIRTHDAY, birth_date=BORN)
    assert first.status_code == 201, first.text
    patient_id = first.json()["patient"]["id"]
    # Measured the evening before the 18th birthday, sent without the birth date: a child's signs.
    earlier = _vitals(client, env, identifier, observed_at="2026-11-21T23:00:00Z")
    _refused(earlier, "paediatric_patient")
    assert identifier not in earlier.text
    assert ("vitals:submit", "paediatric_patient") in _audited(env, patient_id)
    # An adult's birth date sent now does not outweigh the record's: the record says a child then.
    other = _vitals(client, env, identifier, observed_at="2026-11-21T22:00:00Z", birth_date="1980-01-01")
    _refused(other, "paediatric_patient")
    # The age at the observation decides: measured after the birthday, the signs are scored.
    later = _vitals(client, env, identifier, observed_at="2026-11-23T08:00:00Z")
    assert later.status_code == 201, later.text


def test_a_film_without_a_birth_date_is_refused_on_the_birth_date_on_file(
    client: TestClient, env: Env
) -> None:
    identifier = _identifier()
    filed = _vitals(client, env, identifier, observed_at=BIRTHDAY, birth_date=BORN)
    assert filed.status_code == 201, filed.text
    patient_id = filed.json()["patient"]["id"]
    # Taken on 2026-01-05, under 18 by the birth date on file; the header names no birth date.
    study, response = _film(client, env, identifier)
    _refused(response, "paediatric_study")
    assert client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).status_code == 404
    assert ("studies:submit", "paediatric_study") in _audited(env, patient_id)
    # A header naming an adult's birth date does not outweigh the record's.
    _, response = _film(client, env, identifier, birth_date="19800101")
    _refused(response, "paediatric_study")
    # A film taken after the 18th birthday by the record is analysed.
    _, response = _film(client, env, identifier, study_date="20261201")
    assert response.status_code == 201, response.text


def test_vital_signs_are_refused_on_the_birth_date_a_film_filed(client: TestClient, env: Env) -> None:
    identifier = _identifier()
    # 18 on the study's date: analysed, and its birth date filed with the patient.
    _, film = _film(client, env, identifier, birth_date="20080105", study_date="20260105")
    assert film.status_code == 201, film.text
    refused = _vitals(client, env, identifier, observed_at="2026-01-04T10:00:00Z")
    _refused(refused, "paediatric_patient")
    scored = _vitals(client, env, identifier, observed_at="2026-01-05T10:00:00Z")
    assert scored.status_code == 201, scored.text
