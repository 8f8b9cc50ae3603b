"""A PACS resending a study it sent before: answered from the record, without running the model again."""

from __future__ import annotations

import hashlib
import re
from io import BytesIO
from typing import Any

from _api_dicom import chest_dicom, related_body
from _api_env import Env, TestClient, new_study_uid
from pydicom import dcmread

from inference.record import Record

_INFERENCES = re.compile(
    r'^dxassist_stage_seconds_count\{model="cxr-findings",stage="inference",version="1"\} (\S+)$', re.M
)


def _inferences(client: TestClient, env: Env) -> float:
    """How many times the imaging model has run in this server, as its /metrics counts them."""
    found = _INFERENCES.search(client.get("/metrics", headers=env.headers("admin")).text)
    return float(found.group(1)) if found else 0.0


def _entries(env: Env, patient_id: str) -> list[tuple[str, str, str | None, str]]:
    """``(action, resource_type, resource_id, outcome)`` of the audit entries about the patient, oldest
    first."""
    record = Record(env.settings.record_url)
    try:
        events = record.audit.events(patient_id=patient_id, limit=500)
    finally:
        record.close()
    return [(e["action"], e["resource_type"], e["resource_id"], e["outcome"]) for e in reversed(events)]


def _upload(client: TestClient, env: Env, blob: bytes) -> Any:
    parts = [("files", ("f.dcm", blob, "application/dicom"))]
    return client.post("/v1/studies", files=parts, headers=env.headers("pacs", facility="F1"))


def _stow(client: TestClient, env: Env, blob: bytes) -> Any:
    body, content_type = related_body([("application/dicom", blob)])
    headers = {**env.headers("pacs", facility="F1"), "Content-Type": content_type}
    return client.post("/dicomweb/studies", content=body, headers=headers)


def test_a_resent_study_is_answered_from_the_record_without_running_the_model(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    first = _upload(client, env, blob)
    assert first.status_code == 201, first.text
    result = first.json()
    patient_id = result["patient"]["id"]
    ran = _inferences(client, env)
    before = len(_entries(env, patient_id))

    again = _upload(client, env, blob)

    assert again.status_code == 200, again.text
    assert again.json() == result
    # As the filing-time duplicate path audits it: one entry, the result served again.
    assert _entries(env, patient_id)[before:] == [
        ("studies:submit", "ImagingResult", result["result_id"], "duplicate")
    ]
    assert _inferences(client, env) == ran  # the model did not run for the resend


def test_a_study_resent_over_stow_rs_is_answered_from_the_record_without_running_the_model(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    assert _stow(client, env, blob).status_code == 200
    reader = env.headers("radiologist", facility="F1")
    result = client.get(f"/v1/studies/{study}/result", headers=reader).json()
    ran = _inferences(client, env)
    before = len(_entries(env, result["patient"]["id"]))

    again = _stow(client, env, blob)

    assert again.status_code == 200, again.text
    # As today: the study's result read for the late-instance rule (the same view does not supersede
    # it), then the resend served.
    assert _entries(env, result["patient"]["id"])[before:] == [
        ("studies:submit", "Result", result["result_id"], "success"),
        ("studies:submit", "ImagingResult", result["result_id"], "duplicate"),
    ]
    assert _inferences(client, env) == ran
    assert client.get(f"/v1/studies/{study}/result", headers=reader).json() == result


def test_other_pixels_under_the_same_uids_run_the_model_and_are_refused_as_before(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    assert _upload(client, env, chest_dicom(study=study, sop=f"{study}.1")).status_code == 201
    ran = _inferences(client, env)
    other = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", blob=True))
    assert other.status_code == 409, other.text
    assert _inferences(client, env) == ran + 1


def test_the_same_instances_under_another_study_or_patient_are_no_resend(
    client: TestClient, env: Env
) -> None:
    # A PACS that re-identifies a film (another study, another patient) keeps its SOP Instance UIDs and
    # pixels. The server answered 200 with the result already filed: the first study's, of the first
    # patient, while the study and the patient sent were filed nowhere.
    study = new_study_uid()
    first = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1"))
    assert first.status_code == 201, first.text
    moved = chest_dicom(study=new_study_uid(), sop=f"{study}.1")
    renamed = chest_dicom(study=study, sop=f"{study}.1", patient_id=f"IPP-OTHER-{study[-6:]}")
    for blob in (moved, renamed):
        refused = _upload(client, env, blob)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "resend_conflict"
        assert first.json()["result_id"] not in refused.text
        stowed = _stow(client, env, blob)
        assert stowed.status_code == 409, stowed.text
        assert "00081198" in stowed.json()  # FailedSOPSequence


def test_a_new_instance_in_the_study_is_analysed(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    first = _upload(client, env, blob).json()
    ran = _inferences(client, env)
    more = _upload(client, env, chest_dicom(study=study, sop=f"{study}.2", blob=True))
    assert more.status_code == 201, more.text
    assert more.json()["result_id"] != first["result_id"]
    assert _inferences(client, env) == ran + 1


def test_a_resend_from_another_facility_runs_the_model_and_is_refused_as_before(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1")
    assert _upload(client, env, blob).status_code == 201
    ran = _inferences(client, env)
    parts = [("files", ("f.dcm", blob, "application/dicom"))]
    other = client.post("/v1/studies", files=parts, headers=env.headers("pacs", facility="F2"))
    assert other.status_code == 409, other.text
    assert _inferences(client, env) == ran + 1


def test_a_resend_of_a_patient_who_objected_since_is_refused_as_a_new_study_of_theirs(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    patient = f"IPP-RESEND-{study[-8:]}"
    blob = chest_dicom(study=study, sop=f"{study}.1", patient_id=patient)
    result = _upload(client, env, blob).json()
    patient_id = result["patient"]["id"]
    deny = {"ai_processing": "deny", "national_sharing": "permit"}
    clinician = env.headers("clinician", facility="F1")
    assert client.put(f"/v1/patients/{patient_id}/consent", json=deny, headers=clinician).status_code == 200
    ran = _inferences(client, env)
    trail = len(_entries(env, patient_id))

    again = _upload(client, env, blob)
    resent = _entries(env, patient_id)[trail:]
    other = new_study_uid()
    new = _upload(client, env, chest_dicom(study=other, sop=f"{other}.1", patient_id=patient))

    assert again.status_code == new.status_code == 409, again.text
    assert again.json()["error"]["code"] == "consent_objection"
    assert _inferences(client, env) == ran
    assert resent == _entries(env, patient_id)[trail + len(resent) :]  # audited as any study of theirs
    assert [outcome for *_, outcome in resent] == ["consent_objection"]


# 1024 x 1024 x 2 bytes of uncompressed pixels: digested on its own thread, finished while the image is
# prepared (not in the decode).
_LARGE = 1024


def _filed_digests(env: Env, study: str) -> dict[str, str | None]:
    """The pixel digest the record filed for each instance of ``study``."""
    from sqlalchemy import select

    from inference.record._models import Instance, Study

    record = Record(env.settings.record_url)
    try:
        with record.sessions() as session:
            rows = session.execute(
                select(Instance.sop_instance_uid, Instance.pixel_digest)
                .join(Study, Study.id == Instance.study_id)
                .where(Study.study_instance_uid == study)
            ).all()
    finally:
        record.close()
    return {str(sop): digest for sop, digest in rows}


def test_a_large_films_pixel_digest_is_filed_and_its_resend_answered_from_the_record(
    client: TestClient, env: Env
) -> None:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", size=_LARGE)
    first = _upload(client, env, blob)
    assert first.status_code == 201, first.text
    pixels = dcmread(BytesIO(blob)).PixelData
    assert _filed_digests(env, study) == {f"{study}.1": hashlib.sha256(pixels).hexdigest()}
    ran = _inferences(client, env)

    again = _upload(client, env, blob)

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert _inferences(client, env) == ran


def test_other_pixels_of_a_large_film_under_the_same_uids_are_refused(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    assert _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", size=_LARGE)).status_code == 201
    other = _upload(client, env, chest_dicom(study=study, sop=f"{study}.1", size=_LARGE, blob=True))
    assert other.status_code == 409, other.text
