"""Issue 8, as a new user with tokens of two facilities meets it: every bullet of "Why" that concerns
identity, custody, resends, FHIR scope, consent issuers, break-the-glass and multi-patient reads.

Facility F1's identifiers are issued by CHU-NORD (``DXASSIST_FACILITY_ISSUERS``); F2 is another facility.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from io import BytesIO

import pytest
from _security_env import Env, TestClient, chest_dicom, new_study_uid, related_body, seeded_env

from inference.api import create_app
from inference.record import Record


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-custody")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        yield seeded_env(home, facility_issuers={"F1": "CHU-NORD"})


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _ident() -> str:
    return f"IPP-{uuid.uuid4().hex[:10]}"


def _dicom(
    study: str, *, sop: str | None = None, issuer: str | None = None, seed: int = 0, **kw: str
) -> bytes:
    from pydicom import dcmread

    blob = chest_dicom(study=study, sop=sop or f"{study}.1", seed=seed, **kw)
    if issuer is None:
        return blob
    ds = dcmread(BytesIO(blob))
    ds.IssuerOfPatientID = issuer
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _upload(client: TestClient, headers: dict[str, str], blob: bytes) -> object:
    return client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
    )


_HEART_RATES = itertools.count()  # each call another reading (the same one again would be answered)


def _vitals(identifier: str, **patient: str) -> dict:
    return {
        "patient": {"identifier": identifier, **patient},
        "respiratory_rate": 18,
        "spo2": 97,
        "on_oxygen": False,
        "systolic_bp": 125,
        "heart_rate": 51 + next(_HEART_RATES) % 40,  # NEWS2 0 points, as 72 was
        "temperature": 37.0,
        "consciousness": "A",
    }


def _events(env: Env, **filters: object) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        return record.audit.search(limit=500, **filters)[1]
    finally:
        record.close()


def test_takeover_by_another_facility_is_refused(client: TestClient, env: Env) -> None:
    identifier = _ident()
    study = new_study_uid()
    posted = _upload(client, env.headers("pacs", facility="F1"), _dicom(study, patient_id=identifier))
    assert posted.status_code == 201
    a_result, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    # Facility B posts vital signs with A's identifier and another name and birth date.
    body = _vitals(identifier, issuer="CHU-NORD", name="Mallory Impostor", birth_date="1999-09-09")
    b_post = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F2"))
    assert b_post.status_code == 201
    assert b_post.json()["patient"]["id"] == patient_id  # one patient, not a second record
    # B may not read the patient: its warnings say nothing of how its demographics compare (else it
    # learns A's by trial); the difference is filed for A.
    assert not any(w.startswith("identity_mismatch:") for w in b_post.json()["warnings"])
    assert "Mallory" not in b_post.text
    # A keeps reading its own result; B does not read A's (no sharing consent); B reads its own.
    assert (
        client.get(f"/v1/results/{a_result}", headers=env.headers("radiologist", facility="F1")).status_code
        == 200
    )
    denied = client.get(f"/v1/results/{a_result}", headers=env.headers("radiologist", facility="F2"))
    assert denied.status_code == 404 and denied.json()["error"]["code"] == "not_found"
    b_result = b_post.json()["result_id"]
    assert (
        client.get(f"/v1/results/{b_result}", headers=env.headers("clinician", facility="F2")).status_code
        == 200
    )
    # The record still holds A's demographics.
    fhir = client.get(f"/fhir/Patient/{patient_id}", headers=env.headers("clinician", facility="F1")).json()
    assert "Mallory" not in str(fhir) and fhir["birthDate"] != "1999-09-09"
    # A PACS upload of B with that PatientID cannot take the patient over either.
    b_study = _upload(
        client,
        env.headers("pacs", facility="F2"),
        _dicom(new_study_uid(), patient_id=identifier, issuer="CHU-NORD", patient_name="Impostor^Mallory"),
    )
    assert b_study.status_code == 201 and b_study.json()["patient"]["id"] == patient_id
    assert not any(w.startswith("identity_mismatch:") for w in b_study.json()["warnings"])
    assert (
        client.get(f"/v1/results/{a_result}", headers=env.headers("radiologist", facility="F1")).status_code
        == 200
    )
    # A request may not name another facility than its token's.
    spoof = client.post(
        "/v1/vitals",
        json={**_vitals(identifier), "patient": {"identifier": identifier, "facility": "F1"}},
        headers=env.headers("clinician", facility="F2"),
    )
    assert spoof.status_code == 403 and spoof.json()["error"]["code"] == "facility_mismatch"
    nobody = client.post(
        "/v1/vitals", json=_vitals(identifier), headers=env.headers("clinician", facility=None)
    )
    assert nobody.status_code == 403 and nobody.json()["error"]["code"] == "facility_required"


def test_filing_a_result_of_another_facility_s_patient_gives_no_hold_on_the_patient(
    client: TestClient, env: Env
) -> None:
    identifier = _ident()
    f1 = env.headers("clinician", facility="F1")
    f2 = env.headers("clinician", facility="F2")
    # F1 files the patient first (a consent before any result: no demographics), then a result.
    keys = {"identifier": identifier, "issuer": "CHU-NORD"}
    created = client.post(
        "/v1/consents",
        json={"patient": keys, "ai_processing": "permit", "national_sharing": "permit"},
        headers=f1,
    )
    assert created.status_code == 200, created.text
    patient_id = created.json()["patient_id"]
    a_result = client.post("/v1/vitals", json=_vitals(identifier), headers=f1).json()["result_id"]
    # F2 files vital signs under F1's identifier and issuer, with demographics of its own.
    body = _vitals(
        identifier, issuer="CHU-NORD", name="Mallory Impostor", birth_date="1999-09-09", sex="female"
    )
    b_post = client.post("/v1/vitals", json=body, headers=f2)
    assert b_post.status_code == 201 and b_post.json()["patient"]["id"] == patient_id
    assert client.get(f"/v1/results/{b_post.json()['result_id']}", headers=f2).status_code == 200  # its own
    # F2 reads nothing of the patient itself, and learns nothing by searching its identifier.
    assert client.get(f"/fhir/Patient/{patient_id}", headers=f2).status_code == 404
    assert client.get("/fhir/Patient", params={"identifier": identifier}, headers=f2).json()["total"] == 0
    path = f"/v1/patients/{patient_id}/consent"
    assert client.get(path, headers=f2).status_code == 404
    # F2 can neither open the patient's results to itself nor block F1 by an objection.
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    assert client.put(path, json=share, headers=f2).status_code == 404
    objection = {"patient": keys, "ai_processing": "deny", "national_sharing": "deny"}
    refused = client.post("/v1/consents", json=objection, headers=f2)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert identifier not in refused.text
    assert client.get(f"/v1/results/{a_result}", headers=f2).status_code == 404
    consent = client.get(path, headers=f1).json()
    assert (consent["ai_processing"], consent["facility_sharing"]) == ("permit", "deny")
    assert client.post("/v1/vitals", json=_vitals(identifier), headers=f1).status_code == 201
    # F2's demographics were not filed into F1's patient, not even where F1 had sent none.
    fhir = client.get(f"/fhir/Patient/{patient_id}", headers=f1).json()
    assert "Mallory" not in str(fhir) and "birthDate" not in fhir and "gender" not in fhir
    refusals = sorted(e["action"] for e in _events(env, patient_id=patient_id) if e["outcome"] == "denied")
    assert refusals == ["consent:read", "consent:write", "consent:write", "fhir:read", "results:read"]
    # An admin still records the patient's choices.
    no_national = {"ai_processing": "permit", "national_sharing": "deny"}
    assert client.put(path, json=no_national, headers=env.headers("admin")).status_code == 200


def test_a_forged_resend_is_refused_and_audited(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    original = _dicom(study, patient_id=_ident())
    a_pacs = env.headers("pacs", facility="F1")
    first = _upload(client, a_pacs, original)
    assert first.status_code == 201
    # A true resend: same facility, same pixels.
    again = _upload(client, a_pacs, original)
    assert again.status_code == 200 and again.json()["result_id"] == first.json()["result_id"]
    # B's PACS sends a file with A's SOP instance UID, other pixels and another patient.
    forged = _dicom(study, patient_id=_ident(), seed=7, patient_name="Forger^Eve")
    b_pacs = env.headers("pacs", facility="F2", subject="pacs-b-forger")
    refused = _upload(client, b_pacs, forged)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "resend_conflict"
    assert first.json()["result_id"] not in refused.text and "findings" not in refused.text
    # Even the identical file from another facility is no resend of B's.
    assert _upload(client, b_pacs, original).status_code == 409
    # Same facility, same UIDs, other pixels: refused too.
    assert _upload(client, a_pacs, _dicom(study, patient_id=_ident(), seed=9)).status_code == 409
    # STOW-RS reports it per instance.
    body, content_type = related_body([("application/dicom", forged)])
    stow = client.post("/dicomweb/studies", content=body, headers={**b_pacs, "Content-Type": content_type})
    assert stow.status_code == 409
    conflicts = [e for e in _events(env, agent="pacs-b-forger") if e["outcome"] == "conflict"]
    assert len(conflicts) == 3 and {e["action"] for e in conflicts} == {"studies:submit"}

    # Each attempt on A's study is on A's auditor's trail (the entry names A's study), not on a third's.
    def attempts(facility: str) -> int:
        page = client.get(
            "/fhir/AuditEvent",
            params={"agent": "pacs-b-forger", "_count": "100"},
            headers=env.headers("auditor", facility=facility),
        )
        assert page.status_code == 200, page.text
        return sum(e["resource"]["outcomeDesc"] == "conflict" for e in page.json().get("entry", []))

    assert attempts("F1") == 3
    assert attempts("F3") == 0
    assert attempts("F2") == 3  # its own PACS's refusals


def test_fhir_is_scoped_in_the_query_for_every_type(client: TestClient, env: Env) -> None:
    identifier = _ident()
    posted = _upload(
        client, env.headers("pacs", facility="F1"), _dicom(new_study_uid(), patient_id=identifier)
    )
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    b = env.headers("clinician", facility="F2")
    a = env.headers("clinician", facility="F1")
    for path in (
        f"/fhir/Provenance/{result_id}",
        f"/fhir/DiagnosticReport/{result_id}",
        f"/fhir/Patient/{patient_id}",
    ):
        assert client.get(path, headers=b).status_code == 404, path
        assert client.get(path, headers=a).status_code == 200, path
    for resource_type in ("Provenance", "DiagnosticReport", "Observation", "ImagingStudy"):
        found = client.get(f"/fhir/{resource_type}", params={"patient": patient_id}, headers=b).json()
        assert found["total"] == 0 and not found.get("entry"), resource_type
        mine = client.get(f"/fhir/{resource_type}", params={"patient": patient_id}, headers=a).json()
        assert mine["total"] >= 1, resource_type
    hidden = client.get("/fhir/Patient", params={"identifier": identifier}, headers=b).json()
    assert hidden["total"] == 0  # F2 does not learn that the identifier exists elsewhere
    # Totals and pages count only what may be read; _count=0 gives a total and no next link.
    for _ in range(2):
        _upload(client, env.headers("pacs", facility="F1"), _dicom(new_study_uid(), patient_id=identifier))
    counted = client.get(
        "/fhir/DiagnosticReport", params={"patient": patient_id, "_count": "0"}, headers=a
    ).json()
    assert counted["total"] == 3 and not counted.get("entry")
    assert [link["relation"] for link in counted["link"]] == ["self"]
    page = client.get(
        "/fhir/DiagnosticReport", params={"patient": patient_id, "_count": "2"}, headers=a
    ).json()
    assert len(page["entry"]) == 2 and "next" in [link["relation"] for link in page["link"]]
    auditors = client.get(
        "/fhir/AuditEvent", params={"_count": "0"}, headers=env.headers("auditor", facility="F2")
    )
    assert auditors.status_code == 200 and [link["relation"] for link in auditors.json()["link"]] == ["self"]


def test_a_consent_objection_holds_whatever_the_issuer_spelling(client: TestClient, env: Env) -> None:
    identifier = _ident()
    clinician = env.headers("clinician", facility="F1")
    objection = {
        "patient": {"identifier": identifier, "issuer": "CHU-NORD"},
        "ai_processing": "deny",
        "national_sharing": "permit",
    }
    assert client.post("/v1/consents", json=objection, headers=clinician).status_code == 200
    pacs = env.headers("pacs", facility="F1")
    for issuer in ("chu-nord", " Chu-Nord ", None):  # lower case, padded, and missing (F1's default)
        refused = _upload(client, pacs, _dicom(new_study_uid(), patient_id=identifier, issuer=issuer))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "consent_objection", issuer
    for issuer in ("chu-nord", None):
        vitals = client.post(
            "/v1/vitals",
            json=_vitals(identifier, **({"issuer": issuer} if issuer else {})),
            headers=clinician,
        )
        assert vitals.status_code == 409, issuer


def test_break_the_glass_opens_a_reasoned_audited_time_limited_access(client: TestClient, env: Env) -> None:
    identifier = _ident()
    posted = client.post(
        "/v1/vitals",
        json=_vitals(identifier, issuer="CHU-NORD"),
        headers=env.headers("clinician", facility="F1"),
    )
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    er = env.headers("clinician", facility="F2", subject="dr-er-f2")
    assert client.get(f"/v1/results/{result_id}", headers=er).status_code == 404
    too_short = client.post("/v1/break-glass", json={"patient_id": patient_id, "reason": "why"}, headers=er)
    assert too_short.status_code == 400
    opened = client.post(
        "/v1/break-glass",
        json={
            "patient": {"identifier": identifier, "issuer": "chu-nord"},
            "reason": "Unconscious in ER, no history available",
            "minutes": 30,
        },
        headers=er,
    )
    assert opened.status_code == 201, opened.text
    grant = opened.json()
    assert grant["patient_id"] == patient_id and grant["active"] and grant["subject"] == "dr-er-f2"
    assert client.get(f"/v1/results/{result_id}", headers=er).status_code == 200
    assert client.get(f"/fhir/RiskAssessment/{result_id}", headers=er).status_code == 200
    # Personal: a colleague of the same facility still needs their own.
    assert (
        client.get(f"/v1/results/{result_id}", headers=env.headers("clinician", facility="F2")).status_code
        == 404
    )
    # A pacs cannot open one.
    pacs = client.post(
        "/v1/break-glass",
        json={"patient_id": patient_id, "reason": "Routing the study"},
        headers=env.headers("pacs", facility="F2"),
    )
    assert pacs.status_code == 403
    outcomes = [(e["action"], e["outcome"]) for e in _events(env, agent="dr-er-f2")]
    assert ("break-glass:open", "break_glass") in outcomes
    assert outcomes.count(("results:read", "break_glass")) == 1
    assert ("fhir:read", "break_glass") in outcomes and ("results:read", "denied") in outcomes
    # Listed for auditors (F1's auditor: the grant is on its patient), with the reads it made.
    listed = client.get("/v1/break-glass", headers=env.headers("auditor", facility="F1")).json()
    [mine] = [g for g in listed["items"] if g["grant_id"] == grant["grant_id"]]
    assert mine["accesses"] == 2 and mine["reason"].startswith("Unconscious")
    assert client.get("/v1/break-glass", headers=env.headers("clinician", facility="F1")).status_code == 403
    audit_events = client.get(
        "/fhir/AuditEvent", params={"agent": "dr-er-f2"}, headers=env.headers("auditor", facility=None)
    ).json()
    purposes = [e["resource"].get("purposeOfEvent") for e in audit_events["entry"]]
    assert any(p and p[0]["coding"][0]["code"] == "BTG" for p in purposes)


def test_reads_through_break_the_glass_are_audited_as_such_in_searches_and_worklists_too(
    client: TestClient, env: Env
) -> None:
    identifier = _ident()
    f1 = client.post(
        "/v1/vitals",
        json=_vitals(identifier, issuer="CHU-NORD"),
        headers=env.headers("clinician", facility="F1"),
    ).json()
    patient_id = f1["patient"]["id"]
    er = f"dr-er-{uuid.uuid4().hex[:6]}"
    headers = env.headers("clinician", facility="F2", subject=er)
    # The ER's own facility files a result of the patient too: that one is its own, no emergency access.
    own = client.post("/v1/vitals", json=_vitals(identifier, issuer="CHU-NORD"), headers=headers).json()
    grant = {"patient_id": patient_id, "reason": "Unconscious in ER, no history available"}
    assert client.post("/v1/break-glass", json=grant, headers=headers).status_code == 201

    def outcomes() -> list[str]:
        events = _events(env, agent=er)
        return [e["outcome"] for e in events if e["action"] in ("fhir:read", "worklist:read")]

    mixed = client.get("/fhir/RiskAssessment", params={"patient": patient_id}, headers=headers).json()
    assert mixed["total"] == 2  # F1's result through the grant, and F2's own
    assert outcomes() == ["break_glass"]
    mine = client.get("/fhir/RiskAssessment", params={"_id": own["result_id"]}, headers=headers).json()
    assert mine["total"] == 1
    assert outcomes() == ["success", "break_glass"]  # newest first
    patient = client.get("/fhir/Patient", params={"identifier": identifier}, headers=headers).json()
    assert patient["total"] == 1  # F1's patient: readable only through the grant
    assert outcomes() == ["break_glass", "success", "break_glass"]
    # A reader bound to no facility owns nothing: its worklist lists the result through its grant.
    roaming = f"dr-roaming-{uuid.uuid4().hex[:6]}"
    roaming_headers = env.headers("radiologist", facility=None, subject=roaming)
    assert client.post("/v1/break-glass", json=grant, headers=roaming_headers).status_code == 201
    worklist = client.get("/v1/worklist", params={"limit": 200}, headers=roaming_headers).json()
    assert f1["result_id"] in {item["result_id"] for item in worklist["items"]}
    listed = [e for e in _events(env, agent=roaming) if e["action"] == "worklist:read"]
    assert [e["outcome"] for e in listed if e["patient_id"] == patient_id] == ["break_glass"]
    # The grant's reads, counted for auditors, are these break-the-glass entries.
    grants = client.get("/v1/break-glass", headers=env.headers("auditor", facility=None)).json()["items"]
    [opened] = [g for g in grants if g["subject"] == er]
    assert opened["accesses"] == 2


def test_multi_patient_reads_audit_every_patient_disclosed(client: TestClient, env: Env) -> None:
    facility = f"F-{uuid.uuid4().hex[:6]}"
    patients = set()
    for _ in range(3):
        posted = _upload(
            client, env.headers("pacs", facility=facility), _dicom(new_study_uid(), patient_id=_ident())
        )
        patients.add(posted.json()["patient"]["id"])
    reader = f"reader-{uuid.uuid4().hex[:6]}"
    headers = env.headers("radiologist", facility=facility, subject=reader)
    worklist = client.get("/v1/worklist", headers=headers).json()
    assert {item["patient"]["id"] for item in worklist["items"]} == patients
    search = client.get("/fhir/Patient", params={"_count": "500"}, headers=headers).json()
    assert search["total"] == 3
    events = _events(env, agent=reader)
    assert {e["patient_id"] for e in events if e["action"] == "worklist:read"} == patients
    assert {e["patient_id"] for e in events if e["action"] == "fhir:read"} == patients
    assert all(e["patient_id"] for e in events)


def test_every_result_has_exactly_one_filing_audit_entry(client: TestClient, env: Env) -> None:
    assert _upload(client, env.headers("pacs", facility="F1"), _dicom(new_study_uid())).status_code == 201
    record = Record(env.settings.record_url)
    try:
        from sqlalchemy import text

        with record.engine.connect() as connection:
            results = set(connection.execute(text("SELECT id FROM results")).scalars())
            audited = connection.execute(
                text(
                    "SELECT resource_id, count(*) FROM audit_events WHERE outcome = 'success' "
                    "AND action IN ('studies:submit', 'vitals:submit') GROUP BY resource_id"
                )
            ).all()
        assert results and {rid for rid, _n in audited} == results
        assert all(n == 1 for _rid, n in audited)
        assert record.audit.verify().ok
    finally:
        record.close()


def test_another_facility_s_vital_signs_do_not_leak_into_a_trend(client: TestClient, env: Env) -> None:
    from datetime import UTC, datetime, timedelta

    identifier = _ident()
    start = datetime.now(UTC) - timedelta(hours=2)
    a = env.headers("clinician", facility="F1")
    for minutes in (0, 30):
        body = {**_vitals(identifier), "observed_at": (start + timedelta(minutes=minutes)).isoformat()}
        assert client.post("/v1/vitals", json=body, headers=a).status_code == 201
    later = {**_vitals(identifier), "observed_at": (start + timedelta(minutes=60)).isoformat()}
    own = client.post("/v1/vitals", json=later, headers=a).json()
    assert own["trend"] is not None and own["trend"]["observations"] >= 2
    # F2 (no sharing consent) sees no earlier observation: its result is the first of its series.
    other = client.post("/v1/vitals", json=later, headers=env.headers("clinician", facility="F2")).json()
    assert other["trend"] is None


def test_another_facility_s_vital_signs_read_into_a_trend_under_a_grant_are_audited_as_such(
    client: TestClient, env: Env
) -> None:
    # F2's clinician opens break-the-glass on F1's patient and sends vital signs: F1's earlier
    # observations make F2's trend (a disclosure of F1's data), so the read is on the trail as one
    # through the grant, where F1's auditor finds it.
    from datetime import UTC, datetime, timedelta

    identifier = _ident()
    start = datetime.now(UTC) - timedelta(hours=2)
    a = env.headers("clinician", facility="F1")
    for minutes in (0, 30):
        body = {
            **_vitals(identifier, issuer="REGION"),
            "observed_at": (start + timedelta(minutes=minutes)).isoformat(),
        }
        posted = client.post("/v1/vitals", json=body, headers=a)
        assert posted.status_code == 201, posted.text
    patient_id = posted.json()["patient"]["id"]
    reader = f"er-{uuid.uuid4().hex[:6]}"
    b = env.headers("clinician", facility="F2", subject=reader)
    reason = "Unconscious patient arriving by ambulance, history needed now."
    opened = client.post("/v1/break-glass", json={"patient_id": patient_id, "reason": reason}, headers=b)
    assert opened.status_code == 201, opened.text
    later = {
        **_vitals(identifier, issuer="REGION"),
        "observed_at": (start + timedelta(minutes=60)).isoformat(),
    }
    other = client.post("/v1/vitals", json=later, headers=b)
    assert other.status_code == 201, other.text
    assert other.json()["patient"]["id"] == patient_id
    assert other.json()["trend"]["observations"] == 3  # F1's two and F2's own
    f1 = env.headers("auditor", facility="F1")
    seen = client.get("/fhir/AuditEvent", params={"patient": patient_id, "_count": "100"}, headers=f1).json()
    by_reader = [
        e["resource"]
        for e in seen["entry"]
        if e["resource"]["agent"][0]["who"]["identifier"]["value"] == reader
    ]
    record = Record(env.settings.record_url)
    try:
        entries = record.audit.search(agent=reader, limit=50)[1]
    finally:
        record.close()
    read = [e for e in entries if e["resource_type"] == "Observation" and e["patient_id"] == patient_id]
    assert [(e["action"], e["outcome"]) for e in read] == [("results:read", "break_glass")], entries
    assert str(read[0]["seq"]) in {r["id"] for r in by_reader}  # in F1's part of the trail


def test_auditors_of_a_facility_read_their_staff_and_their_patients_entries(
    client: TestClient, env: Env
) -> None:
    posted = _upload(client, env.headers("pacs", facility="F1"), _dicom(new_study_uid(), patient_id=_ident()))
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    nosy = f"nosy-{uuid.uuid4().hex[:6]}"
    assert (
        client.get(
            f"/v1/results/{result_id}", headers=env.headers("clinician", facility="F3", subject=nosy)
        ).status_code
        == 404
    )
    f1 = env.headers("auditor", facility="F1")
    seen = client.get("/fhir/AuditEvent", params={"patient": patient_id, "_count": "50"}, headers=f1).json()
    # F1's auditor sees who touched its patient, F3's refused attempt included.
    agents = {e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in seen["entry"]}
    assert nosy in agents and seen["total"] >= 2
    f2 = env.headers("auditor", facility="F2")
    hidden = client.get("/fhir/AuditEvent", params={"patient": patient_id}, headers=f2).json()
    assert hidden["total"] == 0
    seq = seen["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/AuditEvent/{seq}", headers=f1).status_code == 200
    assert client.get(f"/fhir/AuditEvent/{seq}", headers=f2).status_code == 404  # as if none existed
    everything = client.get(
        "/fhir/AuditEvent", params={"patient": patient_id}, headers=env.headers("admin", facility=None)
    )
    assert everything.json()["total"] >= seen["total"]


def test_filing_one_result_of_a_patient_does_not_open_the_rest_of_its_trail(
    client: TestClient, env: Env
) -> None:
    """A second facility that files a study of a patient sees the entries about its own result, not who at
    the first facility read the first facility's results (which a decoy upload used to open)."""
    identifier, issuer = _ident(), "CIN-MA"
    first = _upload(
        client,
        env.headers("pacs", facility="F1"),
        _dicom(new_study_uid(), patient_id=identifier, issuer=issuer),
    ).json()
    second = _upload(
        client,
        env.headers("pacs", facility="F2"),
        _dicom(new_study_uid(), patient_id=identifier, issuer=issuer),
    ).json()
    patient_id = first["patient"]["id"]
    assert second["patient"]["id"] == patient_id  # one patient in the shared record, two facilities' results
    f1_reader = f"f1-reader-{uuid.uuid4().hex[:6]}"
    f2_reader = f"f2-reader-{uuid.uuid4().hex[:6]}"
    nosy = f"nosy-{uuid.uuid4().hex[:6]}"
    f1_headers = env.headers("radiologist", facility="F1", subject=f1_reader)
    assert client.get(f"/v1/results/{first['result_id']}", headers=f1_headers).status_code == 200
    f2_headers = env.headers("radiologist", facility="F2", subject=f2_reader)
    assert client.get(f"/v1/results/{second['result_id']}", headers=f2_headers).status_code == 200
    # Someone at a third facility tries F2's result: F2's business.
    f3_headers = env.headers("clinician", facility="F3", subject=nosy)
    assert client.get(f"/v1/results/{second['result_id']}", headers=f3_headers).status_code == 404

    def agents(facility: str) -> set[str]:
        page = client.get(
            "/fhir/AuditEvent",
            params={"patient": patient_id, "_count": "200"},
            headers=env.headers("auditor", facility=facility),
        ).json()
        return {e["resource"]["agent"][0]["who"]["identifier"]["value"] for e in page.get("entry", [])}

    f2_sees = agents("F2")
    assert f2_reader in f2_sees and nosy in f2_sees  # its staff, and who tried its result
    assert f1_reader not in f2_sees  # F1's staff reading F1's result is not F2's to see
    f1_sees = agents("F1")
    assert f1_reader in f1_sees
    assert f2_reader not in f1_sees and nosy not in f1_sees  # F2's result, F2's staff: not F1's either
