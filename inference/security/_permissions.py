"""Which role may do what: the one table route dependencies consult.

A route names one permission (``require("results:read")`` in ``inference/api/deps.py``); the table says
which roles hold it. Facility scoping is a second, data-dependent check made once the patient is known
(:func:`facility_allows`): a token bound to a facility sees only that facility's patients.
"""

from __future__ import annotations

from typing import Final

from inference.security._roles import Role

R = Role

PERMISSIONS: Final[dict[str, frozenset[Role]]] = {
    # Sending images: the PACS that routes studies to us, a radiologist uploading by hand, an admin.
    "studies:submit": frozenset({R.PACS, R.RADIOLOGIST, R.ADMIN}),
    # Reading a result; a PACS only for its own facility (see facility_allows).
    "results:read": frozenset({R.RADIOLOGIST, R.CLINICIAN, R.PACS, R.ADMIN}),
    "vitals:submit": frozenset({R.CLINICIAN, R.ADMIN}),
    "worklist:read": frozenset({R.RADIOLOGIST, R.ADMIN}),
    "feedback:write": frozenset({R.RADIOLOGIST}),
    "fhir:read": frozenset({R.RADIOLOGIST, R.CLINICIAN, R.ADMIN}),
    "models:read": frozenset(Role),
    "audit:read": frozenset({R.AUDITOR, R.ADMIN}),
    # A patient's objection to AI processing / national sharing: recorded by the clinician or an admin,
    # read by those who act on it.
    "consent:write": frozenset({R.CLINICIAN, R.ADMIN}),
    "consent:read": frozenset({R.CLINICIAN, R.RADIOLOGIST, R.ADMIN}),
    # Break the glass: opened by those who treat (see ACCESS in _access.py), reviewed by auditors.
    "break-glass:open": frozenset({R.RADIOLOGIST, R.CLINICIAN}),
    "break-glass:read": frozenset({R.AUDITOR, R.ADMIN}),
}
"""Permission → roles that hold it. Unknown permissions are held by nobody."""

# Roles that may only ever touch patients of the facility named in their token.
FACILITY_BOUND: Final[frozenset[Role]] = frozenset({R.PACS})

PATIENT_DATA: Final[frozenset[str]] = frozenset(
    {
        "studies:submit",
        "results:read",
        "vitals:submit",
        "worklist:read",
        "feedback:write",
        "fhir:read",
        "audit:read",
        "consent:write",
        "consent:read",
        "break-glass:open",
        "break-glass:read",
    }
)
"""Permissions whose use touches patient data and is therefore audited, denials included."""

OPEN_ROUTES: Final[frozenset[str]] = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
)
"""Paths served without a token (probes, scrapers, the API description, ``/`` → the pages). Every other
route must name a permission of :data:`PERMISSIONS` through ``inference.api.deps.require``; the test suite
checks both. The pages under ``/ui`` are a mounted app of their own, with a session cookie instead of a
token; their routes name permissions of the same table (see ``inference/api/ui/_auth.py``)."""


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (unknown roles and permissions hold nothing)."""
    return any(role == r.value for r in PERMISSIONS.get(permission, frozenset()))


def facility_allows(*, role: str, facility: str | None, patient_facility: str | None) -> bool:
    """Whether a caller bound to ``facility`` may touch a patient filed under ``patient_facility``.

    Rules: ``admin`` sees everything. A token carrying a facility sees patients of that facility and
    patients whose facility is unknown. A token without a facility is a national role and sees all,
    except the facility-bound roles (``pacs``), which must name their facility to read anything.
    """
    if role == Role.ADMIN:
        return True
    if facility is None:
        return role not in {r.value for r in FACILITY_BOUND}
    return patient_facility is None or patient_facility == facility
