"""Review 30 of the access rules, as an attacker holding one facility's token and a security officer
reviewing the trail meet them: reads through break-the-glass are on the trail as such, whatever they read.

Facility F1's identifiers are issued by CHU-NORD (``DXASSIST_FACILITY_ISSUERS``); F2 is another facility.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _security_env import Env, TestClient, make_settings, seeded_env

from inference.api import create_app
from inference.record import PatientIn, Record
from inference.security import Principal
from inference.services import Actor
from inference.services._identity import identify


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-review30")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        yield seeded_env(home, facility_issuers={"F1": "CHU-NORD"})


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _f1_patient(client: TestClient, env: Env) -> str:
    """A patient F1 filed (vital signs), its id."""
    body = {"patient": {"identifier": f"IPP-{uuid.uuid4().hex[:10]}"}, "respiratory_rate": 18, "spo2": 97}
    posted = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    assert posted.status_code == 201, posted.text
    return str(posted.json()["patient"]["id"])


def _events(env: Env, **filters: object) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        return record.audit.search(limit=500, **filters)[1]
    finally:
        record.close()


def test_a_consent_read_through_break_the_glass_is_audited_as_such_and_counted_on_the_grant(
    client: TestClient, env: Env
) -> None:
    patient_id = _f1_patient(client, env)
    subject = f"dr-er-{uuid.uuid4().hex[:6]}"
    er = env.headers("clinician", facility="F2", subject=subject)
    assert client.get(f"/v1/patients/{patient_id}/consent", headers=er).status_code == 404
    opened = client.post(
        "/v1/break-glass",
        json={"patient_id": patient_id, "reason": "Unconscious in ER, checking the patient's choices"},
        headers=er,
    )
    assert opened.status_code == 201, opened.text
    read = client.get(f"/v1/patients/{patient_id}/consent", headers=er)
    assert read.status_code == 200, read.text
    reads = [e["outcome"] for e in _events(env, agent=subject) if e["action"] == "consent:read"]
    # The refusal, then the read the grant alone made possible: on the trail as an emergency access
    # (FHIR purposeOfEvent BTG), where the officer reviewing emergency accesses looks.
    assert reads == ["break_glass", "denied"]
    listed = client.get("/v1/break-glass", headers=env.headers("auditor", facility="F1")).json()
    [grant] = [g for g in listed["items"] if g["grant_id"] == opened.json()["grant_id"]]
    assert grant["accesses"] == 1
    # Its own facility reads it on its own ground: a plain read.
    own = f"own-{uuid.uuid4().hex[:6]}"
    assert (
        client.get(
            f"/v1/patients/{patient_id}/consent", headers=env.headers("clinician", facility="F1", subject=own)
        ).status_code
        == 200
    )
    assert [e["outcome"] for e in _events(env, agent=own) if e["action"] == "consent:read"] == ["success"]


def _vitals(identifier: str, issuer: str | None = None) -> dict:
    patient = {"identifier": identifier} if issuer is None else {"identifier": identifier, "issuer": issuer}
    return {"patient": patient, "respiratory_rate": 18, "spo2": 97, "heart_rate": 70}


def test_another_facility_cannot_file_ahead_a_patient_of_f1_s_issuer_and_hold_its_consent(
    client: TestClient, env: Env
) -> None:
    # F1's identifiers are issued by CHU-NORD, in sequence. A clinician of F2 used to file the next ones
    # first (a consent, or vital signs naming issuer CHU-NORD): F2 became the patients' first facility,
    # recorded "share between facilities" (every facility then read F1's results of them) or an
    # objection to AI (F1's studies refused), and F1 could not undo it.
    squatter = f"squatter-{uuid.uuid4().hex[:6]}"
    f2 = env.headers("clinician", facility="F2", subject=squatter)
    squatted = f"IPP-{uuid.uuid4().hex[:10]}"
    filed_by_f1 = f"IPP-{uuid.uuid4().hex[:10]}"
    assert (
        client.post("/v1/vitals", json=_vitals(filed_by_f1), headers=env.headers("clinician")).status_code
        == 201
    )
    share = {"ai_processing": "deny", "national_sharing": "permit", "facility_sharing": "permit"}
    refused = client.post(
        "/v1/consents", json={"patient": {"identifier": squatted, "issuer": "chu-nord"}, **share}, headers=f2
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    # The answer does not tell whether the record knows the identifier: the same as for one on file.
    on_file = client.post(
        "/v1/consents",
        json={"patient": {"identifier": filed_by_f1, "issuer": "CHU-NORD"}, **share},
        headers=f2,
    )
    assert on_file.status_code == 403 and on_file.json() == refused.json()
    # By filing vital signs first instead: F2 owns its result, not the patient.
    filed = f"IPP-{uuid.uuid4().hex[:10]}"
    early = client.post("/v1/vitals", json=_vitals(filed, issuer="CHU-NORD"), headers=f2)
    assert early.status_code == 201, early.text
    patient_id = early.json()["patient"]["id"]
    assert client.get(f"/v1/results/{early.json()['result_id']}", headers=f2).status_code == 200
    put = client.put(f"/v1/patients/{patient_id}/consent", json=share, headers=f2)
    assert put.status_code == 404, put.text  # F2 may not read the patient (only its result)
    # F1 files its patient (its own issuer, named or not) and keeps it: analysed, read by F1 only, and
    # its consent is F1's to record.
    f1 = env.headers("clinician", facility="F1")
    for identifier in (squatted, filed):
        own = client.post("/v1/vitals", json=_vitals(identifier), headers=f1)
        assert own.status_code == 201, own.text
        result_id = own.json()["result_id"]
        third = env.headers("clinician", facility="F3")
        assert client.get(f"/v1/results/{result_id}", headers=third).status_code == 404
        consent = client.put(
            f"/v1/patients/{own.json()['patient']['id']}/consent",
            json={"ai_processing": "permit", "national_sharing": "permit"},
            headers=f1,
        )
        assert consent.status_code == 200, consent.text
    denied = [e for e in _events(env, agent=squatter) if e["outcome"] == "denied"]
    assert {e["action"] for e in denied} == {"consent:write"} and len(denied) == 3


def test_the_shared_default_issuer_is_no_facility_s_own(tmp_path: Path) -> None:
    # F1 configured with the national issuer every other facility uses by default: a patient F2 files
    # first under it stays F2's (its consent F2's to record), as before; only an issuer of F1's own moves
    # a new patient to F1.
    settings = make_settings(
        tmp_path, facility_issuers={"F1": "national", "F3": "CHU-SUD"}, default_issuer="NATIONAL"
    )
    ctx: Any = SimpleNamespace(settings=settings)
    f2 = Actor(Principal(subject="dr-f2", role="clinician", facility="F2"), client=None)
    assert identify(ctx, f2, PatientIn(identifier="IPP-1")).home_facility is None
    assert identify(ctx, f2, PatientIn(identifier="IPP-1", issuer="chu-sud")).home_facility == "F3"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (" " * 20 + "x", "invalid_value"),
        ("\u00a0" * 12 + "urgent", "invalid_value"),
        ("\u200b" * 12, "invalid_value"),
        # Bidirectional overrides are refused in any text field, before the reason's own check.
        ("\u202e" * 11 + "x", "invalid_characters"),
        ("\u2060 \u200b \u200c\u200d" * 3, "invalid_value"),
    ],
)
def test_a_break_the_glass_reason_that_says_nothing_is_refused_as_the_caller_s_input(
    client: TestClient, env: Env, reason: str, code: str
) -> None:
    # An emergency access needs a reason of at least 10 characters. Spaces around a single word passed the
    # API's length check, then failed the record's: the caller was told 503 "retry later" (and the
    # server logged an error). Zero-width and bidirectional formatting characters passed both: a grant
    # with an invisible reason, for the auditor to review.
    patient_id = _f1_patient(client, env)
    subject = f"dr-er-{uuid.uuid4().hex[:6]}"
    er = env.headers("clinician", facility="F2", subject=subject)
    opened = client.post("/v1/break-glass", json={"patient_id": patient_id, "reason": reason}, headers=er)
    assert opened.status_code == 422, opened.text
    assert opened.json()["error"]["code"] == code
    assert ("visible" if code == "invalid_value" else "'reason'") in opened.json()["error"]["message"]
    assert [e["action"] for e in _events(env, agent=subject)] == []  # no grant, nothing opened
    # A reason a reviewer can read, even with a formatting character in it, opens one.
    readable = client.post(
        "/v1/break-glass",
        json={"patient_id": patient_id, "reason": "\u200bUnconscious in ER, no history"},
        headers=er,
    )
    assert readable.status_code == 201, readable.text


def test_a_grant_opens_the_patient_to_its_holder_at_the_facility_it_was_opened_for(
    client: TestClient, env: Env
) -> None:
    # A locum reads for two facilities with one subject. A grant opened while working for F2 (its reason
    # is F2's, F2's auditor reviews it) used to open the patient to the same subject's F3 token too: F3's
    # auditor then saw its staff's emergency reads but could not list the grant that justified them.
    body = {"patient": {"identifier": f"IPP-{uuid.uuid4().hex[:10]}"}, "respiratory_rate": 18, "spo2": 97}
    posted = client.post("/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"))
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    locum = f"dr-locum-{uuid.uuid4().hex[:6]}"
    at_f2 = env.headers("clinician", facility="F2", subject=locum)
    at_f3 = env.headers("clinician", facility="F3", subject=locum)
    opened = client.post(
        "/v1/break-glass",
        json={"patient_id": patient_id, "reason": "Unconscious in F2's ER, no history"},
        headers=at_f2,
    )
    assert opened.status_code == 201, opened.text
    assert client.get(f"/v1/results/{result_id}", headers=at_f2).status_code == 200
    assert client.get(f"/v1/results/{result_id}", headers=at_f3).status_code == 404
    assert client.get(f"/fhir/RiskAssessment/{result_id}", headers=at_f3).status_code == 404
    assert (
        client.get("/fhir/RiskAssessment", params={"patient": patient_id}, headers=at_f3).json()["total"] == 0
    )
    reads = [
        (e["facility"], e["outcome"]) for e in _events(env, agent=locum) if e["action"] == "results:read"
    ]
    assert sorted(reads) == [("F2", "break_glass"), ("F3", "denied")]
    listed = client.get("/v1/break-glass", headers=env.headers("auditor", facility="F2")).json()
    [grant] = [g for g in listed["items"] if g["grant_id"] == opened.json()["grant_id"]]
    assert grant["accesses"] == 1
