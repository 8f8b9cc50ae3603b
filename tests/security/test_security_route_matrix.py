"""Every route × every role, generated from the app's routes and the permission table.

A route added without a permission rule (and not listed as open) fails here, and so does a route whose
answers disagree with the table or with docs/security.md.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from _security_env import Env, TestClient, new_study_uid

from inference.api import create_app
from inference.api.deps import route_table
from inference.record import Record
from inference.security import OPEN_ROUTES, PATIENT_DATA, PERMISSIONS, ROLES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_PATH_VALUES = {
    "result_id": lambda: str(uuid.uuid4()),
    "patient_id": lambda: str(uuid.uuid4()),
    "study_instance_uid": new_study_uid,
    "finding": lambda: "nodule",
    "resource_type": lambda: "Patient",
    "resource_id": lambda: "no-such-id",
    "event_id": lambda: "999999999",
    "version_id": lambda: "1",
}


ROUTES = route_table(create_app())


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _PATH_VALUES[m.group(1)](), path)


def test_every_route_is_open_or_names_a_permission_of_the_table() -> None:
    assert ROUTES, "the app has no routes"
    for method, path, permission in ROUTES:
        if path in OPEN_ROUTES:
            assert permission is None, f"{method} {path} is listed as open but requires {permission}"
            continue
        assert permission is not None, f"{method} {path} has no permission rule (use deps.require)"
        assert permission in PERMISSIONS, f"{method} {path} requires {permission}, which is not in the table"


def test_docs_security_table_is_the_permission_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z-]+:[a-z-]+)` \| ([^|]+) \|", text, re.MULTILINE)
    documented = {perm: {r.strip().strip("`") for r in roles.split(",")} for perm, roles in rows}
    table = {perm: {r.value for r in roles} for perm, roles in PERMISSIONS.items()}
    assert documented == table


@pytest.mark.parametrize(("method", "path", "permission"), [r for r in ROUTES if r[1] not in OPEN_ROUTES])
def test_route_without_token_is_401(client: TestClient, method: str, path: str, permission: str) -> None:
    response = client.request(method, _concrete(path))
    assert response.status_code == 401, (method, path, response.text)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "permission"), [r for r in ROUTES if r[1] not in OPEN_ROUTES])
def test_route_answers_each_role_as_the_table_says(
    client: TestClient, env: Env, method: str, path: str, permission: str
) -> None:
    holders = {r.value for r in PERMISSIONS[permission]}
    subjects = {}
    for role in sorted(ROLES):
        subject = f"matrix-{role}-{uuid.uuid4().hex[:8]}"
        subjects[role] = subject
        facility = "F1" if role == "pacs" else None
        response = client.request(
            method, _concrete(path), headers=env.headers(role, facility=facility, subject=subject)
        )
        if role in holders:
            assert response.status_code not in (401, 403, 500), (method, path, role, response.text)
        else:
            assert response.status_code == 403, (method, path, role, response.text)
            body = response.json()
            code = (
                body["error"]["code"] if "error" in body else body["issue"][0]["details"]["coding"][0]["code"]
            )
            assert code == "forbidden"
    record = Record(env.settings.record_url)
    try:
        for role, subject in subjects.items():
            _total, events = record.audit.search(agent=subject)
            denied = [e for e in events if e["outcome"] == "denied" and e["action"] == permission]
            expected = 1 if role not in holders and permission in PATIENT_DATA else 0
            assert len(denied) == expected, (method, path, role, events)
    finally:
        record.close()
