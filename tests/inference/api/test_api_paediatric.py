"""A child's chest radiograph is refused, not scored by a model made for adults.

The imaging model card says "paediatric studies are out of scope": a child's heart is normally larger
against the chest (a cardiothoracic ratio up to 0.6 in infants), so adult thresholds call cardiomegaly
in healthy children. The header says the patient's age (birth date and study date, or Patient's Age): a
study of a patient under 18 is refused with 422 ``paediatric_study`` before any pixel is scored, and the
answer names neither the age nor the dates.
"""

from __future__ import annotations

import io

import pydicom
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid

STUDY_DATE = "20260105"  # what chest_dicom writes


def _post(client: TestClient, env: Env, *, birth_date: str, age: str | None = None) -> tuple[int, dict]:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", birth_date=birth_date)
    if age is not None:
        ds = pydicom.dcmread(io.BytesIO(blob))
        ds.PatientAge = age
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        blob = out.getvalue()
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    return response.status_code, response.json()


def test_a_six_year_olds_film_is_refused_without_naming_the_age(client: TestClient, env: Env) -> None:
    status, body = _post(client, env, birth_date="20200101")
    assert status == 422, body
    assert body["error"]["code"] == "paediatric_study"
    message = body["error"]["message"]
    assert "18" in message and "2020" not in message and "6" not in message.replace("18", "")


def test_the_day_before_the_18th_birthday_is_refused_and_the_birthday_is_analysed(
    client: TestClient, env: Env
) -> None:
    status, body = _post(client, env, birth_date="20080106")
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    status, body = _post(client, env, birth_date="20080105")
    assert status == 201, body


def test_patients_age_in_the_header_is_read_when_the_birth_date_is_absent(
    client: TestClient, env: Env
) -> None:
    status, body = _post(client, env, birth_date="", age="018M")
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    status, body = _post(client, env, birth_date="", age="045Y")
    assert status == 201, body


def test_an_age_in_weeks_counts_calendar_years(client: TestClient, env: Env) -> None:
    # 939 weeks are 17.99 years (a 52-week year made it 18 and the child's film was scored).
    status, body = _post(client, env, birth_date="", age="939W")
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    status, body = _post(client, env, birth_date="", age="940W")  # 18.02 years
    assert status == 201, body
