"""The access table of docs/security.md, generated into tests: every role x every column, played against
the server (result read, FHIR read and FHIR search total), and the page checked against the code's table.

The table is parsed from the documentation; a cell changed there without the code (or the reverse)
fails ``test_the_documented_table_is_the_code_table``, and every cell is then asserted as a user meets it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from _security_env import Env, TestClient

from inference.record import AuditIn, Record
from inference.security import ACCESS, COLUMN_TITLES, COLUMNS, PERMISSIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
OWNER = "F-OWN"
OTHER = "F-OTHER"


def documented_table() -> dict[str, dict[str, bool]]:
    """The access table as docs/security.md shows it: role -> column -> may read."""
    text = DOCS.read_text(encoding="utf-8")
    header = "| role | " + " | ".join(COLUMN_TITLES[c] for c in COLUMNS) + " |"
    assert header in text, "docs/security.md has no access table with the code's columns"
    start = text.index(header)
    rows: dict[str, dict[str, bool]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert all(cell in ("read", "refused") for cell in cells[1:]), line
        rows[cells[0]] = {column: cell == "read" for column, cell in zip(COLUMNS, cells[1:], strict=True)}
    return rows


TABLE = documented_table()
CASES = [(role, column) for role, row in TABLE.items() for column in row]


def test_the_documented_table_is_the_code_table() -> None:
    assert TABLE == {role.value: dict(row) for role, row in ACCESS.items()}
    assert len(CASES) == 6 * 4


def _situation(client: TestClient, env: Env, column: str, reader: str) -> tuple[str, str, str | None]:
    """File a result owned by OWNER, arrange ``column``: (result id, patient id, reader facility)."""
    identifier = f"IPP-{uuid.uuid4().hex[:10]}"
    owner = env.headers("clinician", facility=OWNER)
    body = {"patient": {"identifier": identifier}, "respiratory_rate": 18, "spo2": 97, "heart_rate": 70}
    posted = client.post("/v1/vitals", json=body, headers=owner)
    assert posted.status_code == 201, posted.text
    result_id, patient_id = posted.json()["result_id"], posted.json()["patient"]["id"]
    if column == "own_facility":
        return result_id, patient_id, OWNER
    if column == "sharing_consent":
        consent = {"ai_processing": "permit", "national_sharing": "permit", "facility_sharing": "permit"}
        put = client.put(f"/v1/patients/{patient_id}/consent", json=consent, headers=owner)
        assert put.status_code == 200 and put.json()["facility_sharing"] == "permit"
    if column == "break_glass":
        # Opened in the record for every role, so the cell tests what a grant gives the role (the API lets
        # only some roles open one: tested in test_security_custody).
        record = Record(env.settings.record_url)
        try:
            record.break_glass.open(
                patient_id=patient_id,
                reason="Emergency, patient unable to consent",
                minutes=30,
                audit=AuditIn(subject=reader, role="clinician", facility=OTHER, action="break-glass:open"),
            )
        finally:
            record.close()
    return result_id, patient_id, OTHER


@pytest.mark.parametrize(("role", "column"), CASES)
def test_each_cell_of_the_table_as_a_user_meets_it(
    client: TestClient, env: Env, role: str, column: str
) -> None:
    reader = f"cell-{role}-{column}-{uuid.uuid4().hex[:6]}"
    result_id, patient_id, facility = _situation(client, env, column, reader)
    headers = env.headers(role, facility=facility, subject=reader)
    may = TABLE[role][column]
    holds = {r.value for r in PERMISSIONS["results:read"]}
    read = client.get(f"/v1/results/{result_id}", headers=headers)
    # A role without the permission is refused (403); one that holds it but has no ground for this row is
    # answered as for a result that does not exist (404), so it does not learn that the result exists.
    assert read.status_code == (200 if may and role in holds else 404 if role in holds else 403), (
        role,
        column,
        read.text,
    )
    if role in {r.value for r in PERMISSIONS["fhir:read"]}:
        fhir = client.get(f"/fhir/RiskAssessment/{result_id}", headers=headers)
        assert fhir.status_code == (200 if may else 404), (role, column)
        found = client.get("/fhir/RiskAssessment", params={"patient": patient_id}, headers=headers).json()
        assert found["total"] == (1 if may else 0), (role, column)
    record = Record(env.settings.record_url)
    try:
        _total, events = record.audit.search(agent=reader, limit=20)
    finally:
        record.close()
    reads = [e["outcome"] for e in events if e["action"] == "results:read"]
    if may and role in holds:
        # An access that rests on break-the-glass alone is audited as such.
        expected = "break_glass" if column == "break_glass" and role != "admin" else "success"
        assert reads == [expected], (role, column, events)
    else:
        assert reads == ["denied"], (role, column, events)
