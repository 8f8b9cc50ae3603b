"""A lateral view without a View Position is recognised by its geometry and never analysed as a frontal.

Many CR films carry no View Position. Their Patient Orientation still says which way the image runs: a
frontal film lies in the coronal plane (rows to the patient's left or right, columns to the feet,
``L\\F``), a lateral one has an anterior-posterior axis (``P\\F``, ``A\\F``). The imaging model was
trained on frontal views only and its OOD guard lets most lateral phantoms through (the quick-trained
champion called a pneumothorax on a normal one), so a lateral analysed as a frontal is a false alarm.
"""

from __future__ import annotations

import io

import pydicom
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid


def _film(study: str, n: int, orientation: list[str]) -> bytes:
    ds = pydicom.dcmread(
        io.BytesIO(chest_dicom(study=study, sop=f"{study}.{n}", view=None, blob=True, seed=n))
    )
    ds.PatientOrientation = orientation
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _post(client: TestClient, env: Env, blobs: list[bytes]) -> tuple[int, dict]:
    response = client.post(
        "/v1/studies",
        files=[("files", (f"{i}.dcm", blob, "application/dicom")) for i, blob in enumerate(blobs)],
        headers=env.headers("pacs", facility="F1"),
    )
    return response.status_code, response.json()


def test_a_study_of_one_unlabelled_lateral_is_refused_as_having_no_frontal_view(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    status, body = _post(client, env, [_film(study, 1, ["P", "F"])])
    assert status == 422, body
    assert body["error"]["code"] == "no_frontal_view"


def test_an_unlabelled_lateral_sent_first_is_set_aside_for_the_frontal(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    status, body = _post(client, env, [_film(study, 1, ["A", "FL"]), _film(study, 2, ["L", "F"])])
    assert status == 201, body
    assert any("1 lateral view was set aside" in w for w in body["warnings"]), body["warnings"]
    assert not any("other frontal" in w for w in body["warnings"]), body["warnings"]
