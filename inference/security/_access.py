"""Who reads which patient data: the access table of ``docs/security.md``, and the scope made from it.

Every result is owned by the facility whose principal or DICOM node sent it. A caller reads a result
on one of four grounds (the columns of the table): it is its own facility's; the patient consented to
sharing results between facilities; the caller opened a break-the-glass access to the patient (reasoned,
time-limited, audited as such); or none of these. :data:`ACCESS` is the one table: the documentation
shows it, the test suite is generated from it, and :func:`scope_for` turns it into the
:class:`~inference.record.Scope` the record applies in SQL.
"""

from __future__ import annotations

from typing import Final

from inference.record import Scope
from inference.security._roles import Role
from inference.security._tokens import Principal

R = Role

COLUMNS: Final[tuple[str, ...]] = ("own_facility", "sharing_consent", "break_glass", "without")
"""The table's columns: what ties the caller to a result of a patient (see the module docstring)."""

COLUMN_TITLES: Final[dict[str, str]] = {
    "own_facility": "own facility",
    "sharing_consent": "other facility, patient consented to sharing",
    "break_glass": "other facility, break-the-glass open",
    "without": "other facility, none of these",
}

ACCESS: Final[dict[Role, dict[str, bool]]] = {
    R.RADIOLOGIST: {"own_facility": True, "sharing_consent": True, "break_glass": True, "without": False},
    R.CLINICIAN: {"own_facility": True, "sharing_consent": True, "break_glass": True, "without": False},
    # A PACS routes its own facility's studies; it never reads another facility's results.
    R.PACS: {"own_facility": True, "sharing_consent": False, "break_glass": False, "without": False},
    R.ML_ENGINEER: {"own_facility": False, "sharing_consent": False, "break_glass": False, "without": False},
    # Auditors read the audit trail and the break-the-glass list, never patients' results.
    R.AUDITOR: {"own_facility": False, "sharing_consent": False, "break_glass": False, "without": False},
    # The operator: every read is audited.
    R.ADMIN: {"own_facility": True, "sharing_consent": True, "break_glass": True, "without": True},
}
"""Role -> column -> may the role read a result in that situation."""

BREAK_GLASS_ROLES: Final[frozenset[Role]] = frozenset(
    role for role, row in ACCESS.items() if row["break_glass"] and not row["without"]
)
"""Roles that may open a break-the-glass access (those for whom it changes anything)."""


def may_read(role: str, column: str) -> bool:
    """Whether ``role`` reads a result in the situation ``column`` of the table (unknown: no)."""
    row = next((cells for r, cells in ACCESS.items() if r.value == role), None)
    return bool(row and row.get(column, False))


def scope_for(principal: Principal) -> Scope:
    """The record scope of a caller: the table's row of its role, bound to its facility and subject.

    A token without a facility owns nothing: everything is "another facility" to it.
    """
    grounds: set[str] = set()
    if may_read(principal.role, "without"):
        grounds.add("everything")
    for column in ("own_facility", "sharing_consent", "break_glass"):
        if may_read(principal.role, column):
            grounds.add(column)
    return Scope(subject=principal.subject, facility=principal.facility, grounds=frozenset(grounds))
