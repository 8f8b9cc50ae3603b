"""Consent: a patient who objected to AI processing gets no analysis; sharing objections close the outbox."""

from __future__ import annotations

import uuid

from _security_env import Env, TestClient, chest_dicom, new_study_uid, related_body, upload

from inference.record import Record


def _vitals(identifier: str) -> dict[str, object]:
    return {"patient": {"identifier": identifier}, "respiratory_rate": 18, "heart_rate": 80, "spo2": 97}


def _record(env: Env) -> Record:
    return Record(env.settings.record_url)


def test_an_objection_stops_every_analysis_until_it_is_withdrawn(client: TestClient, env: Env) -> None:
    identifier = f"IPP-CONSENT-{uuid.uuid4().hex[:6]}"
    pacs = env.headers("pacs", facility="F1")
    first = upload(client, pacs, patient_id=identifier)
    assert first.status_code == 201
    patient_id = first.json()["patient"]["id"]
    path = f"/v1/patients/{patient_id}/consent"
    assert client.get(path, headers=env.headers("clinician")).json()["ai_processing"] == "permit"

    deny = {"ai_processing": "deny", "national_sharing": "deny"}
    assert client.put(path, json=deny, headers=env.headers("radiologist")).status_code == 403
    assert client.put(path, json=deny, headers=env.headers("clinician", facility="F2")).status_code == 404
    assert client.put(path, json={"ai_processing": "no"}, headers=env.headers("clinician")).status_code == 400
    put = client.put(path, json=deny, headers=env.headers("clinician", facility="F1", subject="dr-consent"))
    assert put.status_code == 200
    assert put.json() | {"updated_at": None} == {
        "patient_id": patient_id,
        "ai_processing": "deny",
        "national_sharing": "deny",
        "facility_sharing": "deny",
        "updated_by": "dr-consent",
        "updated_at": None,
    }

    study = new_study_uid()
    refused = upload(client, pacs, patient_id=identifier, study=study)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "consent_objection"
    assert identifier not in refused.text
    assert client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).status_code == 404

    stow_study = new_study_uid()
    body, content_type = related_body(
        [("application/dicom", chest_dicom(study=stow_study, sop=f"{stow_study}.1", patient_id=identifier))]
    )
    stow = client.post("/dicomweb/studies", content=body, headers={**pacs, "Content-Type": content_type})
    assert stow.status_code == 409
    failed = stow.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"][0] for item in failed] == [0x0124]
    assert failed[0]["00081155"]["Value"] == [f"{stow_study}.1"]

    vitals = client.post(
        "/v1/vitals", json=_vitals(identifier), headers=env.headers("clinician", facility="F1")
    )
    assert vitals.status_code == 409 and vitals.json()["error"]["code"] == "consent_objection"
    # An objection is answered as one whatever the request measured (nothing at all: not a 422 first).
    bare = client.post(
        "/v1/vitals",
        json={"patient": {"identifier": identifier}},
        headers=env.headers("clinician", facility="F1"),
    )
    assert bare.status_code == 409 and bare.json()["error"]["code"] == "consent_objection"

    record = _record(env)
    try:
        assert not record.consent.sharing_allowed(patient_id=patient_id)
        events = record.audit.events(patient_id=patient_id, limit=100)
        refusals = [(e["action"], e["outcome"]) for e in events if e["outcome"] == "consent_objection"]
        assert sorted(refusals) == sorted(
            [("studies:submit", "consent_objection")] * 2 + [("vitals:submit", "consent_objection")] * 2
        )
        assert ("consent:write", "success") in [(e["action"], e["outcome"]) for e in events]
        assert ("consent:write", "denied") in [(e["action"], e["outcome"]) for e in events]
    finally:
        record.close()

    permit = {"ai_processing": "permit", "national_sharing": "permit"}
    assert client.put(path, json=permit, headers=env.headers("admin")).status_code == 200
    assert upload(client, pacs, patient_id=identifier, study=study).status_code == 201
    record = _record(env)
    try:
        assert record.consent.sharing_allowed(patient_id=patient_id)
    finally:
        record.close()


def test_an_objection_recorded_before_the_first_study(client: TestClient, env: Env) -> None:
    identifier = f"IPP-EARLY-{uuid.uuid4().hex[:6]}"
    body = {"patient": {"identifier": identifier}, "ai_processing": "deny", "national_sharing": "permit"}
    assert (
        client.post("/v1/consents", json=body, headers=env.headers("pacs", facility="F1")).status_code == 403
    )
    created = client.post("/v1/consents", json=body, headers=env.headers("clinician", facility="F3"))
    assert created.status_code == 200 and created.json()["ai_processing"] == "deny"
    patient_id = created.json()["patient_id"]
    refused = client.post(
        "/v1/vitals", json=_vitals(identifier), headers=env.headers("clinician", facility="F3")
    )
    assert refused.status_code == 409
    # The patient was filed under the clinician's facility: another facility cannot read or change it.
    other = client.get(f"/v1/patients/{patient_id}/consent", headers=env.headers("clinician", facility="F4"))
    assert other.status_code == 404  # as for an unknown patient
    again = client.post("/v1/consents", json=body, headers=env.headers("clinician", facility="F4"))
    assert again.status_code == 403
    assert client.get(f"/v1/patients/{uuid.uuid4()}/consent", headers=env.headers("admin")).status_code == 404
