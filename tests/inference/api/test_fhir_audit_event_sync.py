"""An auditor's system that syncs the audit trail from a searchset Bundle's ``timestamp``
(``AuditEvent?date=ge<timestamp>``) misses no entry: the timestamp is when the page was read from, taken
before its first query, as the other searches take it. The search is itself audited after its page is
read (an entry naming the patient searched for): the next sync must bring that entry."""

from __future__ import annotations

import uuid

from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle


def _file_study(client: TestClient, env: Env, identifier: str) -> str:
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=identifier)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]["id"])


def test_the_entry_a_search_writes_after_its_page_is_brought_by_the_next_sync(
    client: TestClient, env: Env
) -> None:
    patient_id = _file_study(client, env, f"AS-{uuid.uuid4().hex[:10]}")
    headers = env.headers("auditor", facility="F1")
    url = f"/fhir/AuditEvent?patient={patient_id}&_count=500"
    for _ in range(5):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        page = Bundle.model_validate(response.json())
        listed = {entry.resource.id for entry in page.entry or []}
        timestamp = response.json()["timestamp"]
        synced = client.get(f"{url}&date=ge{timestamp}", headers=headers)
        assert synced.status_code == 200, synced.text
        brought = {entry["resource"]["id"] for entry in synced.json().get("entry", [])}
        # Since the page: the first search's own entry, then the sync's (a page lists what was there before
        # its read is audited). The former must not be dated before the page's timestamp.
        later = client.get(url, headers=headers).json()["entry"]
        new = sorted(int(entry["resource"]["id"]) for entry in later if entry["resource"]["id"] not in listed)
        assert len(new) == 2
        own = str(new[0])
        assert own in brought, f"the search's own entry is dated before its page's timestamp {timestamp}"
