"""A header whose birth date makes the patient a child today is refused, whatever else it says.

Patient's Birth Date and Study Date give the age at the study; without a usable Study Date (none, or one
before the birth date), Patient's Age was taken as the age at the study, and without it none was known
when the study date came before the birth. But a film is taken at the latest today: a birth date that makes
the patient under 18 today makes them under 18 at the study too. A film of a patient born six years ago
whose header says Patient's Age ``045Y`` (or a Study Date before the birth) was scored by the adults'
model, and its child's birth date filed with the patient.
"""

from __future__ import annotations

import io
import uuid

import pydicom
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid


def _post(
    client: TestClient, env: Env, *, birth_date: str, study_date: str | None, age: str | None
) -> tuple[int, dict]:
    study = new_study_uid()
    ds = pydicom.dcmread(
        io.BytesIO(
            chest_dicom(
                study=study, sop=f"{study}.1", patient_id=f"IPP-{uuid.uuid4().hex[:8]}", birth_date=birth_date
            )
        )
    )
    if study_date is None:
        del ds.StudyDate
    else:
        ds.StudyDate = study_date
    if age is not None:
        ds.PatientAge = age
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", out.getvalue(), "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    return response.status_code, response.json()


def test_an_adults_patients_age_does_not_outweigh_a_childs_birth_date(client: TestClient, env: Env) -> None:
    status, body = _post(client, env, birth_date="20200101", study_date=None, age="045Y")
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    message = body["error"]["message"]
    assert "2020" not in message and "45" not in message


def test_a_study_date_before_a_childs_birth_date_is_refused(client: TestClient, env: Env) -> None:
    status, body = _post(client, env, birth_date="20200101", study_date="20150101", age=None)
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    # An adult's header with the same inconsistency is analysed (Patient's Age, else the age today).
    status, body = _post(client, env, birth_date="19800101", study_date="19750101", age=None)
    assert status == 201, body
