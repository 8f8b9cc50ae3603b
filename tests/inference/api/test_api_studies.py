"""POST /v1/studies and GET /v1/studies/{uid}/result: the imaging journey through HTTP."""

from __future__ import annotations

import io

from _api_dicom import PATIENT_ID, chest_dicom
from _api_env import Env, TestClient, new_study_uid
from PIL import Image

from inference.services import SYNTHETIC_WARNING

FINDINGS = {"nodule", "consolidation", "pleural_effusion", "pneumothorax", "cardiomegaly"}


def _upload(client: TestClient, env: Env, *files: bytes, role: str = "pacs", **headers: str):
    parts = [("files", (f"f{i}.dcm", blob, "application/dicom")) for i, blob in enumerate(files)]
    return client.post("/v1/studies", files=parts, headers={**env.headers(role, facility="F1"), **headers})


def test_upload_returns_the_contract_imaging_result(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    response = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert response.status_code == 201, response.text
    result = response.json()
    assert response.headers["location"] == f"/v1/results/{result['result_id']}"
    assert result["kind"] == "imaging"
    assert result["study_instance_uid"] == study
    assert result["patient"]["identifier"] == PATIENT_ID and result["patient"]["id"]
    assert result["model"]["name"] == "cxr-findings" and result["model"]["version"] == "1"
    assert result["priority"] in {"critical", "urgent", "routine"}
    assert SYNTHETIC_WARNING in result["warnings"]
    assert {f["code"] for f in result["findings"]} == FINDINGS
    for finding in result["findings"]:
        assert set(finding) >= {"code", "display", "probability", "positive", "heatmap"}
        assert 0.0 <= finding["probability"] <= 1.0
        # Heatmaps are made for positive findings only.
        assert (finding["heatmap"] is not None) == finding["positive"]
    # The bright square makes the tiny model call pneumothorax, which the default policy ranks critical.
    positives = {f["code"] for f in result["findings"] if f["positive"]}
    assert "pneumothorax" in positives
    assert result["priority"] == "critical"
    # The public result never carries the patient's name or birth date (searched as dates: the year alone
    # turns up among the random digits of the study's UID about once in 250 runs).
    assert "Quixley" not in response.text
    assert "19410317" not in response.text and "1941-03-17" not in response.text
    assert isinstance(result["rationale"], str) and result["rationale_language"] == "en"


def test_heatmap_is_a_png_of_the_image_geometry(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    result = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True)).json()
    finding = next(f for f in result["findings"] if f["positive"])
    response = client.get(finding["heatmap"], headers=env.headers("radiologist"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (128, 128)
    box = finding["box"]
    # The box surrounds the bright square (rows/columns 32..80 of the 128x128 image).
    assert box[0] <= 40 and box[1] <= 40 and box[2] >= 72 and box[3] >= 72
    missing = client.get(
        f"/v1/results/{result['result_id']}/heatmaps/nodule.png", headers=env.headers("radiologist")
    )
    negative = next(f for f in result["findings"] if f["code"] == "nodule")
    if not negative["positive"]:
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_same_study_twice_returns_the_same_result(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    first = _upload(client, env, blob)
    second = _upload(client, env, blob)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["result_id"] == second.json()["result_id"]


def test_study_result_is_404_until_analysed_then_the_latest(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    headers = env.headers("radiologist")
    before = client.get(f"/v1/studies/{study}/result", headers=headers)
    assert before.status_code == 404 and before.json()["error"]["code"] == "not_found"
    posted = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1")).json()
    after = client.get(
        f"/v1/studies/{study}/result", headers={**headers, "Accept-Language": "fr-CA, en;q=0.5"}
    )
    assert after.status_code == 200
    assert after.json()["result_id"] == posted["result_id"]
    assert after.json()["rationale_language"] == "fr"


def test_study_uid_syntax_is_checked(client: TestClient, env: Env) -> None:
    headers = env.headers("radiologist")
    for bad in ("1.2.abc", "1..2", "9" * 65):
        response = client.get(f"/v1/studies/{bad}/result", headers=headers)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_field"


def test_mixed_studies_are_refused(client: TestClient, env: Env) -> None:
    a, b = new_study_uid(), new_study_uid()
    response = _upload(client, env, chest_dicom(study=a, sop=f"{a}.1"), chest_dicom(study=b, sop=f"{b}.1"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "mixed_studies"


def test_ct_is_valid_but_unsupported(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    response = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", modality="CT"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"unsupported_modality", "unsupported_sop_class"}


def test_not_dicom_and_truncated_dicom_are_refused(client: TestClient, env: Env) -> None:
    garbage = _upload(client, env, b"this is a text file, not an image" * 10)
    # inference.dicom classes a file without the DICM preamble as the wrong media type.
    assert garbage.status_code == 415
    assert garbage.json()["error"]["code"] == "not_dicom"
    study = new_study_uid()
    truncated = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1")[:-5000])
    assert truncated.status_code == 400
    assert set(truncated.json()) == {"error"} and truncated.json()["error"]["message"]


def test_lateral_view_is_set_aside_with_a_warning(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    lateral = chest_dicom(study=study, sop=f"{study}.1", view="LL")
    frontal = chest_dicom(study=study, sop=f"{study}.2", view="PA")
    result = _upload(client, env, lateral, frontal).json()
    assert any("lateral" in w for w in result["warnings"])
    only_lateral = new_study_uid()
    refused = _upload(client, env, chest_dicom(study=only_lateral, sop=f"{only_lateral}.1", view="LL"))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_frontal_view"


def test_wrong_media_types_are_415(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    headers = env.headers("pacs", facility="F1")
    as_text = client.post("/v1/studies", files=[("files", ("a.txt", blob, "text/plain"))], headers=headers)
    assert as_text.status_code == 415 and as_text.json()["error"]["code"] == "unsupported_media_type"
    as_json = client.post("/v1/studies", json={"files": []}, headers=headers)
    assert as_json.status_code == 415
    octet = client.post(
        "/v1/studies", files=[("files", ("a", blob, "application/octet-stream"))], headers=headers
    )
    assert octet.status_code in (200, 201)


def test_form_without_files_is_400(client: TestClient, env: Env) -> None:
    response = client.post(
        "/v1/studies",
        data={"other": "x"},
        files=[("nope", ("a", b"x", "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "missing_files"
