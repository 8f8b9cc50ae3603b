"""After a full end-to-end run, no patient name, identifier or birth date in anything the server wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from _security_env import TestClient, chest_dicom, new_study_uid, related_body, seeded_env, upload

from inference.api import create_app

NAME = "Vandermolen^Ottoline"
IDENTIFIER = "IPP-SEC-55821"
BIRTH = "19370923"
NEEDLES = [
    "Vandermolen",
    "Ottoline",
    IDENTIFIER,
    "SEC-55821",
    BIRTH,
    "1937-09-23",
    "23/09/1937",
    "09/23/1937",
    "23.09.1937",
    "1937/09/23",
]


def _run_flow(client: TestClient, headers: dict[str, dict[str, str]]) -> None:
    pacs, clinician, radiologist = headers["pacs"], headers["clinician"], headers["radiologist"]
    dicom = {"patient_id": IDENTIFIER, "patient_name": NAME, "birth_date": BIRTH}
    posted = upload(client, pacs, blob=True, **dicom)
    assert posted.status_code == 201
    result = posted.json()
    result_id, patient_id = result["result_id"], result["patient"]["id"]
    positive = [f["code"] for f in result["findings"] if f["positive"]]
    study = new_study_uid()
    body, content_type = related_body(
        [("application/dicom", chest_dicom(study=study, sop=f"{study}.1", **dicom))]
    )
    assert (
        client.post(
            "/dicomweb/studies", content=body, headers={**pacs, "Content-Type": content_type}
        ).status_code
        == 200
    )
    # Errors: a CT, a broken file, a duplicate study under another patient, bad vitals, bad ids.
    assert upload(client, pacs, modality="CT", **dicom).status_code == 422
    junk = b"\x00" * 128 + b"DICM" + IDENTIFIER.encode() * 20
    assert client.post(
        "/v1/studies", files=[("files", ("x.dcm", junk, "application/dicom"))], headers=pacs
    ).status_code in (400, 415)
    other = chest_dicom(
        study=study, sop=f"{study}.2", patient_id="IPP-OTHER-1", patient_name=NAME, birth_date=BIRTH
    )
    conflict = client.post(
        "/v1/studies", files=[("files", ("o.dcm", other, "application/dicom"))], headers=pacs
    )
    assert conflict.status_code == 409
    vitals = {
        "patient": {"identifier": IDENTIFIER, "name": NAME, "birth_date": "1937-09-23", "sex": "female"},
        "respiratory_rate": 24,
        "spo2": 91,
        "on_oxygen": False,
        "systolic_bp": 100,
        "heart_rate": 120,
        "temperature": 38.9,
        "consciousness": "A",
    }
    assert client.post("/v1/vitals", json=vitals, headers=clinician).status_code == 201
    assert client.post("/v1/vitals", json={**vitals, "heart_rate": 900}, headers=clinician).status_code == 422
    assert (
        client.post(
            "/v1/vitals",
            json={**vitals, "patient": {"identifier": IDENTIFIER, "nom": NAME}},
            headers=clinician,
        ).status_code
        == 400
    )
    assert client.get(f"/v1/results/{IDENTIFIER}", headers=radiologist).status_code == 400
    assert client.get(f"/fhir/Patient/{IDENTIFIER}", headers=radiologist).status_code == 404
    # Reads: results, heatmaps, worklist, FHIR (the identifier in a query string), feedback.
    assert client.get(f"/v1/results/{result_id}", headers=radiologist).status_code == 200
    for code in positive:
        assert (
            client.get(f"/v1/results/{result_id}/heatmaps/{code}.png", headers=radiologist).status_code == 200
        )
    assert client.get("/v1/worklist", headers=radiologist).status_code == 200
    assert (
        client.get("/fhir/Patient", params={"identifier": IDENTIFIER}, headers=radiologist).json()["total"]
        == 1
    )
    assert client.get(f"/fhir/Patient/{patient_id}", headers=radiologist).status_code == 200
    assert (
        client.get("/fhir/Observation", params={"patient": patient_id}, headers=radiologist).status_code
        == 200
    )
    verdicts = {"verdicts": [{"code": "nodule", "verdict": "agree"}]}
    assert (
        client.post(f"/v1/results/{result_id}/feedback", json=verdicts, headers=radiologist).status_code
        == 201
    )
    # Denials and consent.
    assert client.get(f"/v1/results/{result_id}", headers=headers["pacs_f2"]).status_code == 404
    assert client.get("/v1/worklist", headers=headers["auditor"]).status_code == 403
    consent = {"patient": {"identifier": IDENTIFIER}, "ai_processing": "deny", "national_sharing": "deny"}
    assert client.post("/v1/consents", json=consent, headers=clinician).status_code == 200
    assert upload(client, pacs, **dicom).status_code == 409
    assert client.post("/v1/vitals", json=vitals, headers=clinician).status_code == 409
    assert (
        client.get("/fhir/AuditEvent", params={"patient": patient_id}, headers=headers["auditor"]).status_code
        == 200
    )
    metrics = client.get("/metrics").text
    assert not [n for n in NEEDLES if n in metrics]


def test_no_patient_data_in_logs_or_output(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    env = seeded_env(tmp_path / "home")
    roles = {
        "pacs": env.headers("pacs", facility="F1"),
        "pacs_f2": env.headers("pacs", facility="F2"),
        "clinician": env.headers("clinician", facility="F1"),
        "radiologist": env.headers("radiologist"),
        "auditor": env.headers("auditor"),
    }
    with TestClient(create_app(env.settings)) as client:
        _run_flow(client, roles)
    captured = capfd.readouterr()
    log_files = [p for p in (env.home / "logs").rglob("*") if p.is_file()]
    assert log_files, "the server wrote no log file"
    texts = {str(p): p.read_text(encoding="utf-8", errors="replace") for p in log_files}
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    assert sum(len(t) for t in texts.values()) > 2000, "suspiciously little output: is logging on?"
    assert '"route": "/fhir/{resource_type}"' in texts[str(env.home / "logs" / "server.jsonl")]
    leaks = {(where, needle) for where, text in texts.items() for needle in NEEDLES if needle in text}
    assert not leaks
