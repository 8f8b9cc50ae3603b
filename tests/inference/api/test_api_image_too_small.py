"""A thumbnail is refused, not scored: the imaging model never saw an image enlarged to its input.

Every training film is larger than the model's input, so preprocessing always shrinks it. A 48-pixel
thumbnail (a PACS preview, a screenshot) would be blown up to the 64-pixel input of the tiny model here,
and the model would answer about interpolation blur: with the quick-trained model most normal 64-80 px
phantoms come back with a "nodule". The sender gets a 422 that names the size the model needs.
"""

from __future__ import annotations

from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid

INPUT_SIZE = 64  # the tiny imaging model's input (tests/tiny_models.py)


def _post(client: TestClient, env: Env, size: int) -> tuple[int, dict]:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, size=size)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    return response.status_code, response.json()


def test_an_image_smaller_than_the_model_input_is_refused_with_the_size_it_needs(
    client: TestClient, env: Env
) -> None:
    status, body = _post(client, env, size=48)
    assert status == 422, body
    assert body["error"]["code"] == "image_too_small"
    message = body["error"]["message"]
    assert "48 x 48" in message and f"{INPUT_SIZE}" in message


def test_an_image_as_large_as_the_model_input_is_still_analysed(client: TestClient, env: Env) -> None:
    status, body = _post(client, env, size=INPUT_SIZE)
    assert status == 201, body
    assert body["kind"] == "imaging"
