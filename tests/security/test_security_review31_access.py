"""Review 31 of the HTTP API, as a hospital's security officer attacking it with one facility's token:
what the answers and the audit trail tell about other facilities' patients, and who the trail names.

Facility F1's identifiers are issued by CHU-NORD (``DXASSIST_FACILITY_ISSUERS``); F2 is another facility.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import pytest
from _security_env import Env, TestClient, new_study_uid, seeded_env, upload

from inference.api import create_app
from inference.record import Record
from inference.security import issue_token
from inference.services import add_user


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dxassist-review31")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        yield seeded_env(home, facility_issuers={"F1": "CHU-NORD"})


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _events(env: Env, **filters: object) -> list[dict]:
    record = Record(env.settings.record_url)
    try:
        return record.audit.search(limit=500, **filters)[1]
    finally:
        record.close()


_READINGS = itertools.count()  # each call another reading (the same one again would be answered)


def _vitals(identifier: str, **patient: str) -> dict:
    n = next(_READINGS)  # respiratory rate 12-20 and SpO2 96-100: NEWS2 0 points, as 18 and 97 were
    return {
        "patient": {"identifier": identifier, **patient},
        "respiratory_rate": 12 + n % 9,
        "spo2": 96 + n // 9 % 5,
    }


def test_a_caller_cannot_give_its_audit_entries_the_id_of_another_request(
    client: TestClient, env: Env
) -> None:
    # A clinician's request: its entries carry its id, which the server returned to it.
    nurse = f"nurse-{uuid.uuid4().hex[:6]}"
    filed = client.post(
        "/v1/vitals",
        json=_vitals(f"IPP-{uuid.uuid4().hex[:10]}"),
        headers=env.headers("clinician", facility="F1", subject=nurse),
    )
    assert filed.status_code == 201, filed.text
    theirs = filed.headers["x-request-id"]
    # Another caller names that id (or the id of the server's own retry work) as its X-Request-ID: its
    # entries used to carry it, so the trail showed one request doing both users' accesses.
    mallory = f"mallory-{uuid.uuid4().hex[:6]}"
    for chosen in (theirs, f"retry-{uuid.uuid4().hex}"):
        read = client.get(
            f"/v1/results/{filed.json()['result_id']}",
            headers={**env.headers("radiologist", facility="F1", subject=mallory), "X-Request-ID": chosen},
        )
        assert read.status_code == 200, read.text
        assert read.headers["x-request-id"] != chosen
    [own] = [e for e in _events(env, agent=nurse) if e["action"] == "vitals:submit"]
    assert own["request_id"] == theirs
    forged = [e["request_id"] for e in _events(env, agent=mallory)]
    assert len(forged) == 2 and theirs not in forged
    assert not any(str(r).startswith("retry-") for r in forged)


@pytest.mark.parametrize(
    ("field", "body", "path"),
    [
        # NEL (U+0085): a line break to log readers and terminals; DICOM PN accepts no control character.
        ("patient.name", _vitals("IPP-C1-NAME", name="DUPONT^JEAN\u0085ADMIN^ROOT"), "/v1/vitals"),
        # CSI (U+009B) starts a terminal escape sequence in a log viewer.
        ("patient.identifier", _vitals("IPP-C1\u009b31m"), "/v1/vitals"),
        ("patient.issuer", _vitals("IPP-C1-ISSUER", issuer="CHU\u0090NORD"), "/v1/vitals"),
        # A right-to-left override makes a reason read, to the auditor reviewing it, other than it is.
        (
            "reason",
            {"patient": {"identifier": "IPP-C1-GLASS"}, "reason": "Unconscious in ER \u202edetaluger\u202c"},
            "/v1/break-glass",
        ),
        (
            "patient.identifier",
            {"patient": {"identifier": "IPP\u2028C1"}, "ai_processing": "deny", "national_sharing": "deny"},
            "/v1/consents",
        ),
    ],
)
def test_control_and_invisible_formatting_characters_are_refused_naming_the_field(
    client: TestClient, env: Env, field: str, body: dict, path: str
) -> None:
    refused = client.post(path, json=body, headers=env.headers("clinician", facility="F1"))
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_characters"
    assert f"'{field}'" in error["message"]
    # The value is not echoed.
    assert "DUPONT" not in error["message"] and "IPP" not in error["message"]


def test_another_facility_s_rows_are_answered_as_rows_that_do_not_exist_and_the_attempt_is_audited(
    client: TestClient, env: Env
) -> None:
    # F1 files a study; a clinician of F2 (no sharing consent, no break-the-glass) probes its ids. A 403
    # where an unknown id got 404 told it that the study, the result and the patient exist elsewhere.
    study = new_study_uid()
    posted = upload(
        client, env.headers("pacs", facility="F1"), study=study, patient_id=f"IPP-{uuid.uuid4().hex[:8]}"
    )
    assert posted.status_code == 201, posted.text
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    code = next(f["code"] for f in posted.json()["findings"])
    prober = f"prober-{uuid.uuid4().hex[:6]}"
    f2 = env.headers("clinician", facility="F2", subject=prober)
    radiologist_f2 = env.headers("radiologist", facility="F2", subject=prober)
    unknown_result, unknown_patient, unknown_study = uuid.uuid4(), uuid.uuid4(), new_study_uid()
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    probes = [
        ("GET", "/v1/results/{}", result_id, unknown_result, f2, None),
        ("GET", "/v1/results/{}/image.png", result_id, unknown_result, f2, None),
        ("GET", "/v1/results/{}/heatmaps/" + code + ".png", result_id, unknown_result, f2, None),
        ("GET", "/v1/studies/{}/result", study, unknown_study, f2, None),
        ("GET", "/fhir/RiskAssessment/{}", result_id, unknown_result, f2, None),
        ("GET", "/fhir/Patient/{}", patient_id, unknown_patient, f2, None),
        ("GET", "/fhir/Patient/{}/$everything", patient_id, unknown_patient, f2, None),
        ("GET", "/v1/patients/{}/consent", patient_id, unknown_patient, f2, None),
        ("PUT", "/v1/patients/{}/consent", patient_id, unknown_patient, f2, share),
        (
            "POST",
            "/v1/results/{}/feedback",
            result_id,
            unknown_result,
            radiologist_f2,
            {"verdicts": [{"code": code, "verdict": "agree"}]},
        ),
    ]
    for method, path, existing, unknown, headers, body in probes:
        theirs = client.request(method, path.format(existing), headers=headers, json=body)
        nothing = client.request(method, path.format(unknown), headers=headers, json=body)
        assert theirs.status_code == nothing.status_code == 404, (path, theirs.text)
        assert theirs.json() == nothing.json(), path
        assert theirs.headers["content-type"] == nothing.headers["content-type"]
    # The trail still tells the officer which probe hit another facility's row.
    outcomes = [(e["resource_id"], e["outcome"]) for e in _events(env, agent=prober)]
    assert (result_id, "denied") in outcomes and (str(unknown_result), "not_found") in outcomes
    assert (patient_id, "denied") in outcomes and (str(unknown_patient), "not_found") in outcomes
    # A caller who may read the result (sharing consent) is still told why it may not change it.
    client.put(
        f"/v1/patients/{patient_id}/consent", json=share, headers=env.headers("clinician", facility="F1")
    )
    assert client.get(f"/v1/results/{result_id}", headers=radiologist_f2).status_code == 200
    verdict = client.post(
        f"/v1/results/{result_id}/feedback",
        json={"verdicts": [{"code": code, "verdict": "agree"}]},
        headers=radiologist_f2,
    )
    assert verdict.status_code == 403 and verdict.json()["error"]["code"] == "forbidden"


def test_a_sender_who_may_not_read_the_patient_cannot_guess_its_demographics_from_warnings(
    client: TestClient, env: Env
) -> None:
    # F1 files its patient (F1's issuer CHU-NORD) with a birth date and sex.
    identifier = f"IPP-{uuid.uuid4().hex[:10]}"
    f1 = env.headers("clinician", facility="F1")
    filed = client.post(
        "/v1/vitals", json=_vitals(identifier, birth_date="1961-04-12", sex="female"), headers=f1
    )
    assert filed.status_code == 201, filed.text
    patient_id = filed.json()["patient"]["id"]
    # F2 files vital signs under that identifier, trying birth dates and sexes: a warning naming the
    # fields that differ told it, one trial at a time, what F1 recorded (right when the warning went).
    f2 = env.headers("clinician", facility="F2")

    def warned(**guess: str) -> list[str]:
        body = _vitals(identifier, issuer="CHU-NORD", **guess)
        answer = client.post("/v1/vitals", json=body, headers=f2)
        assert answer.status_code == 201, answer.text
        assert answer.json()["patient"]["id"] == patient_id
        return [w for w in answer.json()["warnings"] if w.startswith("identity_mismatch")]

    assert warned(birth_date="1970-01-01", sex="male") == warned(birth_date="1961-04-12", sex="female") == []
    # The mismatch is still filed for the patient's facility (fields, no values).
    record = Record(env.settings.record_url)
    try:
        assert {"birth_date", "sex"} <= set(
            record.patients.identity_mismatches(patient_id=patient_id)[0]["fields"]
        )
    finally:
        record.close()
    # F1 itself, which reads its patient, is told which fields differ (never the values).
    own = client.post("/v1/vitals", json=_vitals(identifier, birth_date="1970-01-01"), headers=f1)
    [warning] = [w for w in own.json()["warnings"] if w.startswith("identity_mismatch")]
    assert "birth date" in warning and "1961" not in warning
    # Once the patient consents to sharing between facilities, F2 reads it, and is told too.
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    assert client.put(f"/v1/patients/{patient_id}/consent", json=share, headers=f1).status_code == 200
    assert warned(birth_date="1970-01-01") != []


def _sign_in(client: TestClient, username: str, password: str) -> None:
    form = client.get("/ui/signin").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    data = {"username": username, "password": password, "csrf_token": csrf.group(1)}
    assert client.post("/ui/signin", data=data, follow_redirects=False).status_code == 303


def test_a_web_user_is_not_the_same_actor_as_a_token_of_the_same_name(client: TestClient, env: Env) -> None:
    # F2's PACS token is named "pacs-f2-<n>"; an administrator creates a web account of that name (or a
    # reader picks it). Its accesses were written under the same subject as the PACS's: the trail showed
    # one actor, and a break-the-glass grant of one was the other's.
    name = f"pacs-f2-{uuid.uuid4().hex[:6]}"
    record = Record(env.settings.record_url)
    try:
        add_user(
            record, username=name, password="correct horse battery staple", role="clinician", facility="F2"
        )
    finally:
        record.close()
    filed = client.post(
        "/v1/vitals",
        json=_vitals(f"IPP-{uuid.uuid4().hex[:10]}"),
        headers=env.headers("clinician", facility="F1"),
    )
    patient_id, result_id = filed.json()["patient"]["id"], filed.json()["result_id"]
    # The token of that name breaks the glass on F1's patient.
    token = env.headers("clinician", facility="F2", subject=name)
    opened = client.post(
        "/v1/break-glass",
        json={"patient_id": patient_id, "reason": "Unconscious in F2's ER, no history"},
        headers=token,
    )
    assert opened.status_code == 201, opened.text
    assert client.get(f"/v1/results/{result_id}", headers=token).status_code == 200
    # The web user of that name is another actor: the grant is not its, and the trail tells them apart.
    browser = TestClient(client.app)
    _sign_in(browser, name, "correct horse battery staple")
    assert browser.get(f"/ui/results/{result_id}").status_code == 404
    on_trail = {(e["subject"], e["action"]) for e in _events(env, patient_id=patient_id)}
    assert (name, "break-glass:open") in on_trail and (name, "results:read") in on_trail
    assert (f"web:{name}", "results:read") in on_trail
    assert {e["subject"] for e in _events(env, agent=f"web:{name}")} == {f"web:{name}"}
    # No token may speak for a web user (or the server's own actors) either.
    for subject in (f"web:{name}", "cli:root", "dimse:ORTHANC", "dxassist-outbox"):
        with pytest.raises(ValueError, match="own kinds of actor"):
            issue_token(env.settings, subject=subject, role="clinician", facility="F2")
