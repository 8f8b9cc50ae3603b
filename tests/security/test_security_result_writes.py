"""Reading is not writing: another facility that reads a result under sharing consent or break-the-glass
can neither give feedback on it, nor record a verdict, nor mark it read (API and pages); each attempt is
refused (403), audited ``denied``, and leaves the result open. Its own facility still closes it."""

from __future__ import annotations

import re
import uuid
from typing import Any

from _security_env import Env, TestClient, upload

from inference.record import Record
from inference.services import add_user

PASSWORD = "correct horse battery staple 42"


def _shared_result(client: TestClient, env: Env, *, sharing: bool) -> dict[str, Any]:
    """An imaging result filed by F1's PACS; ``sharing``: its patient consented to sharing."""
    posted = upload(client, env.headers("pacs", facility="F1"), patient_id=f"IPP-W-{uuid.uuid4().hex[:8]}")
    assert posted.status_code == 201, posted.text
    result: dict[str, Any] = posted.json()
    if sharing:
        consent = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
        put = client.put(
            f"/v1/patients/{result['patient']['id']}/consent",
            json=consent,
            headers=env.headers("clinician", facility="F1"),
        )
        assert put.status_code == 200, put.text
    return result


def _still_open(client: TestClient, env: Env, result_id: str) -> bool:
    read = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist", facility="F1"))
    assert read.status_code == 200
    return bool(read.json()["status"] == "open")


def _denied_writes(env: Env, subject: str) -> list[str]:
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=subject, limit=50)
    finally:
        record.close()
    return [e["resource_id"] for e in events if (e["action"], e["outcome"]) == ("feedback:write", "denied")]


def test_a_reader_under_sharing_consent_or_break_the_glass_cannot_close_a_result(
    client: TestClient, env: Env
) -> None:
    shared = _shared_result(client, env, sharing=True)
    verdicts = {"verdicts": [{"code": shared["findings"][0]["code"], "verdict": "disagree"}]}
    f2 = f"dr-f2-{uuid.uuid4().hex[:6]}"
    f2_headers = env.headers("radiologist", facility="F2", subject=f2)
    path = f"/v1/results/{shared['result_id']}"
    assert client.get(path, headers=f2_headers).status_code == 200  # sharing opens reading
    refused = client.post(f"{path}/feedback", json=verdicts, headers=f2_headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "reading only" in refused.json()["error"]["message"]
    assert _still_open(client, env, shared["result_id"])

    urgent = _shared_result(client, env, sharing=False)
    er = f"dr-er-{uuid.uuid4().hex[:6]}"
    er_headers = env.headers("radiologist", facility="F3", subject=er)
    grant = {"patient_id": urgent["patient"]["id"], "reason": "Unconscious in ER, no history available"}
    assert client.post("/v1/break-glass", json=grant, headers=er_headers).status_code == 201
    urgent_path = f"/v1/results/{urgent['result_id']}"
    assert client.get(urgent_path, headers=er_headers).status_code == 200  # break-the-glass opens reading
    urgent_verdicts = {"verdicts": [{"code": urgent["findings"][0]["code"], "verdict": "agree"}]}
    assert client.post(f"{urgent_path}/feedback", json=urgent_verdicts, headers=er_headers).status_code == 403
    assert _still_open(client, env, urgent["result_id"])

    assert _denied_writes(env, f2) == [shared["result_id"]]
    assert _denied_writes(env, er) == [urgent["result_id"]]
    record = Record(env.settings.record_url)
    try:
        assert record.feedback.for_result(result_id=shared["result_id"]) == []
        assert record.feedback.for_result(result_id=urgent["result_id"]) == []
    finally:
        record.close()
    # The result's own facility still gives feedback, which closes it.
    own = client.post(f"{path}/feedback", json=verdicts, headers=env.headers("radiologist", facility="F1"))
    assert own.status_code == 201
    assert not _still_open(client, env, shared["result_id"])


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def test_the_pages_refuse_another_facility_s_verdict_and_mark_as_read(client: TestClient, env: Env) -> None:
    shared = _shared_result(client, env, sharing=True)
    result_id, code = shared["result_id"], shared["findings"][0]["code"]
    username = f"dr.f2.{uuid.uuid4().hex[:6]}"
    record = Record(env.settings.record_url)
    try:
        add_user(record, username=username, password=PASSWORD, role="radiologist", facility="F2")
    finally:
        record.close()
    client.cookies.clear()
    form = client.get("/ui/signin")
    signed_in = client.post(
        "/ui/signin",
        data={"username": username, "password": PASSWORD, "csrf_token": _csrf(form.text)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    try:
        viewer = client.get(f"/ui/results/{result_id}")
        assert viewer.status_code == 200  # the patient consented to sharing: F2's reader sees the result
        token = _csrf(viewer.text)
        verdict = client.post(
            f"/ui/results/{result_id}/feedback",
            data={"code": code, "verdict": "disagree", "csrf_token": token},
            follow_redirects=False,
        )
        assert verdict.status_code == 403
        read = client.post(
            f"/ui/results/{result_id}/read", data={"csrf_token": token}, follow_redirects=False
        )
        assert read.status_code == 403
    finally:
        client.cookies.clear()
    assert _still_open(client, env, result_id)
    assert _denied_writes(env, f"web:{username}") == [result_id, result_id]
    record = Record(env.settings.record_url)
    try:
        assert record.feedback.for_result(result_id=result_id) == []
    finally:
        record.close()
