"""Without a Study Date, the age a header gives for the study (Patient's Age) decides, not today's age.

A film without Study Date (a digitised prior, a secondary capture) of a patient born in 1980 whose header
says Patient's Age ``008Y`` was taken at eight. Its age "today" (over 40) only bounds the age at the study
from above; taken as the age at the study, the child's film was scored with the adults' model.
"""

from __future__ import annotations

import io

import pydicom
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid


def _post(client: TestClient, env: Env, *, age: str | None) -> tuple[int, dict]:
    study = new_study_uid()
    ds = pydicom.dcmread(io.BytesIO(chest_dicom(study=study, sop=f"{study}.1", birth_date="19800101")))
    del ds.StudyDate
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


def test_a_film_without_study_date_is_refused_by_patients_age(client: TestClient, env: Env) -> None:
    status, body = _post(client, env, age="008Y")
    assert (status, body.get("error", {}).get("code")) == (422, "paediatric_study"), body
    # Without Patient's Age, the age today is all the header says: an adult now, analysed.
    status, body = _post(client, env, age=None)
    assert status == 201, body
