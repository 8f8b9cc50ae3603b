"""Need to know, as two facilities sharing a patient meet it on SQLite and on a real PostgreSQL: a facility
that files one study of another facility's patient reads, as auditor, what its staff did and every access
to its own results (break-the-glass grants, single reads, searches that disclosed them), not what the
patient's first facility did with its own data; and its worklist shows the demographics it sent itself,
not those the first facility recorded unless it may read the patient.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO

import pytest
from _security_env import Env, TestClient, chest_dicom, new_study_uid
from sqlalchemy import update

from inference.api import create_app
from inference.record import AuditIn, Record
from inference.record._models import BreakGlass
from inference.record._types import utcnow
from inference.services import add_user

REASON = "Unconscious in our ER, no history available"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def served(backend_env: Env) -> Iterator[tuple[TestClient, Env]]:
    with TestClient(create_app(backend_env.settings)) as client:
        yield client, backend_env


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _study(identifier: str, issuer: str, *, sex: str = "F", birth_date: str | None = None) -> bytes:
    from pydicom import dcmread

    study = new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id=identifier)))
    ds.IssuerOfPatientID = issuer
    ds.PatientSex = sex
    if birth_date is not None:
        ds.PatientBirthDate = birth_date
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _file(client: TestClient, env: Env, facility: str, identifier: str, issuer: str, **header: str) -> dict:
    """One study of the patient ``(identifier, issuer)`` sent by ``facility``'s PACS (``header``: the
    patient's sex and birth date it sends, see :func:`_study`): its result."""
    posted = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", _study(identifier, issuer, **header), "application/dicom"))],
        headers=env.headers("pacs", facility=facility),
    )
    assert posted.status_code == 201, posted.text
    return posted.json()


def _trail(client: TestClient, env: Env, facility: str, patient_id: str) -> set[tuple[str, str]]:
    """Who did what (subject, action) on the trail of ``patient_id``, as ``facility``'s auditor reads it."""
    page = client.get(
        "/fhir/AuditEvent",
        params={"patient": patient_id, "_count": "500"},
        headers=env.headers("auditor", facility=facility),
    )
    assert page.status_code == 200, page.text
    return {
        (e["resource"]["agent"][0]["who"]["identifier"]["value"], e["resource"]["subtype"][0]["code"])
        for e in page.json().get("entry", [])
    }


def _agents(trail: set[tuple[str, str]]) -> set[str]:
    return {subject for subject, _action in trail}


def _grants(client: TestClient, env: Env, facility: str, patient_id: str) -> set[str]:
    """The grants on ``patient_id`` that ``facility``'s auditor lists."""
    listed = client.get(
        "/v1/break-glass", params={"limit": 200}, headers=env.headers("auditor", facility=facility)
    )
    assert listed.status_code == 200, listed.text
    return {g["grant_id"] for g in listed.json()["items"] if g["patient_id"] == patient_id}


def _open(client: TestClient, headers: dict[str, str], patient_id: str) -> str:
    opened = client.post(
        "/v1/break-glass", json={"patient_id": patient_id, "reason": REASON}, headers=headers
    )
    assert opened.status_code == 201, opened.text
    return str(opened.json()["grant_id"])


def test_a_second_facility_reviews_the_grants_that_opened_its_results_not_the_first_one_s_past(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    identifier, issuer = _name("IPP"), "CIN-MA"
    first = _file(client, env, "F1", identifier, issuer)
    patient_id = first["patient"]["id"]
    # An F1 doctor opened an emergency access on F1's patient; it ran out before F2 filed anything.
    past = _name("f1-past")
    past_grant = _open(client, env.headers("clinician", facility="F1", subject=past), patient_id)
    record = Record(env.settings.record_url)
    try:
        with record.sessions() as session, session.begin():
            session.execute(
                update(BreakGlass)
                .where(BreakGlass.id == past_grant)
                .values(opened_at=utcnow() - timedelta(hours=3), expires_at=utcnow() - timedelta(hours=2))
            )
    finally:
        record.close()
    # F2 files one study of the patient (the decoy a facility could send to read the trail).
    second = _file(client, env, "F2", identifier, issuer)
    assert second["patient"]["id"] == patient_id
    f1_reader = _name("f1-reader")
    own = env.headers("radiologist", facility="F1", subject=f1_reader)
    assert client.get(f"/v1/results/{first['result_id']}", headers=own).status_code == 200
    # Another F1 doctor opens one now, while F2's result is on file, and reads F2's result through it.
    er = _name("f1-er")
    er_headers = env.headers("clinician", facility="F1", subject=er)
    open_grant = _open(client, er_headers, patient_id)
    assert client.get(f"/v1/results/{second['result_id']}", headers=er_headers).status_code == 200

    # F2 reviews the grant that opened its result and the read made through it; nothing of F1's past.
    assert _grants(client, env, "F2", patient_id) == {open_grant}
    f2_sees = _trail(client, env, "F2", patient_id)
    assert {(er, "break-glass:open"), (er, "results:read")} <= f2_sees
    assert past not in _agents(f2_sees) and f1_reader not in _agents(f2_sees)
    # F1, whose patient it is, still reviews every grant on it and its staff's reads.
    assert _grants(client, env, "F1", patient_id) == {past_grant, open_grant}
    assert {(past, "break-glass:open"), (f1_reader, "results:read"), (er, "results:read")} <= _trail(
        client, env, "F1", patient_id
    )
    # A facility with nothing of the patient reviews neither.
    assert _grants(client, env, "F3", patient_id) == set()


def test_searches_and_picture_reads_that_disclosed_a_result_are_on_its_facility_s_trail(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    identifier, issuer = _name("IPP"), "CIN-MA"
    first = _file(client, env, "F1", identifier, issuer)
    second = _file(client, env, "F2", identifier, issuer)
    patient_id = first["patient"]["id"]
    # F1's staff search the patient's reports: no sharing consent, so only F1's own were disclosed.
    f1_search = _name("f1-search")
    f1_headers = env.headers("radiologist", facility="F1", subject=f1_search)
    found = client.get("/fhir/DiagnosticReport", params={"patient": patient_id}, headers=f1_headers).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {first["result_id"]}
    # An emergency doctor of a third facility searches through a grant: both facilities' reports.
    er = _name("f3-er")
    er_headers = env.headers("clinician", facility="F3", subject=er)
    _open(client, er_headers, patient_id)
    both = client.get("/fhir/DiagnosticReport", params={"patient": patient_id}, headers=er_headers).json()
    assert {e["resource"]["id"] for e in both["entry"]} == {first["result_id"], second["result_id"]}
    # Another reads F2's image through its own grant (a picture, not the result's JSON).
    viewer = _name("f3-viewer")
    viewer_headers = env.headers("radiologist", facility="F3", subject=viewer)
    _open(client, viewer_headers, patient_id)
    assert (
        client.get(f"/v1/results/{second['result_id']}/image.png", headers=viewer_headers).status_code == 200
    )

    f2_sees = _trail(client, env, "F2", patient_id)
    # Its report disclosed by the search, its image read.
    assert {(er, "fhir:read"), (viewer, "results:read")} <= f2_sees
    assert f1_search not in _agents(f2_sees)  # F1's staff searching what only F1 may read: not F2's
    f1_sees = _trail(client, env, "F1", patient_id)
    assert {(er, "fhir:read"), (f1_search, "fhir:read")} <= f1_sees  # its reports, searched

    # Once the patient consents to sharing, F1's searches may disclose F2's reports: F2 reviews them.
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    consent = env.headers("clinician", facility="F1")
    assert client.put(f"/v1/patients/{patient_id}/consent", json=share, headers=consent).status_code == 200
    shared = client.get("/fhir/DiagnosticReport", params={"patient": patient_id}, headers=f1_headers).json()
    assert {e["resource"]["id"] for e in shared["entry"]} == {first["result_id"], second["result_id"]}
    assert (f1_search, "fhir:read") in _trail(client, env, "F2", patient_id)


def _account(env: Env, facility: str) -> str:
    """A fresh radiologist's account of ``facility`` for the pages; on the trail it is ``web:<username>``."""
    username = _name("dr")
    record = Record(env.settings.record_url)
    try:
        add_user(record, username=username, password=PASSWORD, role="radiologist", facility=facility)
    finally:
        record.close()
    return username


def _shown(client: TestClient, username: str, result_id: str) -> str:
    """What the worklist page's line of ``result_id`` says of the patient under its identifier (age and
    sex, a dash for each the reader is not shown), as ``username`` sees it once signed in."""
    client.cookies.clear()
    try:
        form = client.get("/ui/signin")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        data = {"username": username, "password": PASSWORD, "csrf_token": csrf.group(1)}
        assert client.post("/ui/signin", data=data, follow_redirects=False).status_code == 303
        page = client.get("/ui/")
        assert page.status_code == 200
    finally:
        client.cookies.clear()
    line = re.search(
        rf'href="/ui/results/{result_id}">[^<]*</a><br><span class="muted small">([^<]*)</span>', page.text
    )
    assert line is not None, "the result is not on the reader's worklist"
    return html.unescape(line.group(1))


def test_a_worklist_shows_another_facility_s_demographics_only_to_who_may_read_the_patient(
    served: tuple[TestClient, Env],
) -> None:
    client, env = served
    identifier, issuer = _name("IPP"), "CIN-MA"
    first = _file(client, env, "F1", identifier, issuer)
    # F2 knows the same person under other demographics (a data-entry difference between facilities).
    second = _file(client, env, "F2", identifier, issuer, sex="M", birth_date="20000101")
    patient_id = first["patient"]["id"]
    mine = _shown(client, _account(env, "F1"), first["result_id"])
    assert re.fullmatch(r"\d+ y · female", mine), mine  # F1's own patient: the age and sex it recorded
    # F2 lists its own result of the patient with what F2 sent, not what F1 recorded.
    f2_reader = _account(env, "F2")
    sent = _shown(client, f2_reader, second["result_id"])
    assert re.fullmatch(r"\d+ y · male", sent) and sent != mine, sent
    # A break-the-glass grant opens the patient to its holder alone (the web user ``web:<name>``; the pages
    # open none, so it is opened in the record, as the access table's tests do).
    f2_er = _account(env, "F2")
    record = Record(env.settings.record_url)
    try:
        record.break_glass.open(
            patient_id=patient_id,
            reason=REASON,
            minutes=30,
            audit=AuditIn(
                subject=f"web:{f2_er}", role="radiologist", facility="F2", action="break-glass:open"
            ),
        )
    finally:
        record.close()
    assert _shown(client, f2_er, second["result_id"]) == mine
    record = Record(env.settings.record_url)
    try:
        listed = [e for e in record.audit.search(agent=f"web:{f2_er}")[1] if e["action"] == "worklist:read"]
    finally:
        record.close()
    # Its own result, but the patient through the grant: audited as an emergency access.
    assert [e["outcome"] for e in listed if e["patient_id"] == patient_id] == ["break_glass"]
    assert _shown(client, f2_reader, second["result_id"]) == sent
    # The patient's consent to sharing between facilities opens it to every facility's readers.
    share = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
    consent = env.headers("clinician", facility="F1")
    assert client.put(f"/v1/patients/{patient_id}/consent", json=share, headers=consent).status_code == 200
    assert _shown(client, f2_reader, second["result_id"]) == mine
