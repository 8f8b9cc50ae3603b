"""The consent write by patient id is checked, made and audited in one transaction, as a security officer
checks it on a real PostgreSQL through the API (``PUT /v1/patients/{id}/consent``).

The patient's existence, the first-facility check, a refusal's entry, whether a refused caller may read
the patient, and the change with its entry were up to four transactions: a grant or a sharing consent
changed between them was seen by one and not the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _pages_audit import Served, serve
from sqlalchemy import create_engine, text
from test_security_result_write_audit import _WITHDRAW, _result, _trail, _watched

from inference.record import Record


@pytest.fixture(scope="module")
def served(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # F-HOME's own assigning authority: a patient of that issuer not on file yet is F-HOME's.
    yield from serve(
        postgres_server, tmp_path_factory, "consent-write-audit", facility_issuers={"F-HOME": _HOME_ISSUER}
    )


_HOME_ISSUER = "URN:OID:1.2.250.99"


_OBJECT = {"ai_processing": "deny", "national_sharing": "deny", "facility_sharing": "deny"}


def _put(s: Served, patient_id: str, body: dict[str, str], *, facility: str, subject: str) -> Any:
    headers = s.env.headers("clinician", facility=facility, subject=subject)
    return s.client.put(f"/v1/patients/{patient_id}/consent", json=body, headers=headers)


def _consent(s: Served, patient_id: str, facility: str) -> dict[str, Any]:
    got = s.client.get(
        f"/v1/patients/{patient_id}/consent", headers=s.env.headers("clinician", facility=facility)
    )
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return {k: body[k] for k in ("ai_processing", "national_sharing", "facility_sharing")}


def test_the_first_facilitys_consent_write_is_checked_made_and_audited_in_one_transaction(
    served: Served,
) -> None:
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    patient_id = _result(s, facility)["patient"]["id"]
    subject = f"nurse-{uuid.uuid4().hex[:8]}"
    before = _consent(s, patient_id, facility)

    # The database refuses this clerk's entries: the choices stay as they were.
    admin = create_engine(s.url)
    trigger = f"refuse_{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(
            text(
                f"CREATE FUNCTION {trigger}() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.subject = '{subject}' THEN RAISE EXCEPTION 'audit refused by the test'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        connection.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON audit_events "
                f"FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
        )
    try:
        assert _put(s, patient_id, _OBJECT, facility=facility, subject=subject).status_code == 503
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {trigger} ON audit_events"))
            connection.execute(text(f"DROP FUNCTION {trigger}()"))
        admin.dispose()
    assert _consent(s, patient_id, facility) == before

    answer, seen = _watched(s, lambda: _put(s, patient_id, _OBJECT, facility=facility, subject=subject))
    assert answer.status_code == 200, answer.text
    checked = seen.of(statement="FROM patients", naming=patient_id)
    audited = seen.of(statement="INSERT INTO audit_events", naming=subject)
    changed = seen.of(statement="INTO consents", naming=patient_id) | seen.of(
        statement="UPDATE consents", naming=patient_id
    )
    assert len(audited) == 1 and changed, seen.statements
    assert checked == audited == changed, (checked, audited, changed)
    assert _consent(s, patient_id, facility) == dict.fromkeys(_OBJECT, "deny")
    entry = [e for e in _trail(s, patient_id) if e["subject"] == subject][-1]
    assert (entry["action"], entry["resource_type"], entry["outcome"]) == (
        "consent:write",
        "Consent",
        "success",
    )


def test_a_refused_consent_write_is_checked_and_audited_in_one_transaction(served: Served) -> None:
    # F2 reads F1's patient under its consent to sharing, which opens it for reading only.
    s = served
    patient_id = _result(s, "F1", shared=True)["patient"]["id"]
    subject = f"nurse-{uuid.uuid4().hex[:8]}"
    answer, seen = _watched(s, lambda: _put(s, patient_id, _WITHDRAW, facility="F2", subject=subject))
    assert answer.status_code == 403, answer.text
    consulted = seen.of(statement="FROM consents")
    audited = seen.of(statement="INSERT INTO audit_events", naming=subject)
    assert len(audited) == 1 and consulted == audited, (consulted, audited)
    assert _consent(s, patient_id, "F1")["facility_sharing"] == "permit"
    entry = [e for e in _trail(s, patient_id) if e["subject"] == subject][-1]
    assert (entry["action"], entry["outcome"]) == ("consent:write", "denied")


@pytest.mark.parametrize("patient", ["on_file", "new", "other_facilitys_own"])
def test_a_consent_write_by_identifier_looks_the_patient_up_in_its_audited_transaction(
    served: Served, patient: str
) -> None:
    # POST /v1/consents looked the patient up (its id and its recorded choices) in a transaction of its
    # own, without an entry, before the audited write: a patient row read outside the audit trail, and
    # a patient filed or changed in between was judged on what the lookup had seen.
    s = served
    facility = f"F-{uuid.uuid4().hex[:6]}"
    identifier = f"IPP-CI-{uuid.uuid4().hex[:8]}"
    key: dict[str, str] = {"identifier": identifier}
    if patient == "on_file":
        identifier = _result(s, facility)["patient"]["identifier"]
        key = {"identifier": identifier}
    elif patient == "other_facilitys_own":
        key = {"identifier": identifier, "issuer": _HOME_ISSUER}
    subject = f"nurse-{uuid.uuid4().hex[:8]}"
    headers = s.env.headers("clinician", facility=facility, subject=subject)
    body = {"patient": key, **_OBJECT}

    answer, seen = _watched(s, lambda: s.client.post("/v1/consents", json=body, headers=headers))

    looked_up = seen.of(statement="FROM patients", naming=identifier)
    audited = seen.of(statement="INSERT INTO audit_events", naming=subject)
    assert len(audited) == 1 and looked_up == audited, (looked_up, audited, seen.statements)
    record = Record(s.url)
    try:
        _total, entries = record.audit.search(agent=subject, limit=10)
    finally:
        record.close()
    assert [(e["action"], e["resource_type"]) for e in entries] == [("consent:write", "Consent")]
    entry = entries[0]
    if patient == "other_facilitys_own":
        assert answer.status_code == 403, answer.text
        assert (entry["outcome"], entry["patient_id"], entry["resource_id"]) == ("denied", None, None)
        return
    assert answer.status_code == 200, answer.text
    patient_id = answer.json()["patient_id"]
    assert (entry["outcome"], entry["patient_id"], entry["resource_id"]) == (
        "success",
        patient_id,
        patient_id,
    )
    assert _consent(s, patient_id, facility) == dict.fromkeys(_OBJECT, "deny")
