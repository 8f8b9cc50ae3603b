"""The roles a bearer token may carry (the contract's ``dxassist token issue --role``)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who the caller is, as far as authorisation cares."""

    RADIOLOGIST = "radiologist"
    CLINICIAN = "clinician"
    PACS = "pacs"
    ML_ENGINEER = "ml_engineer"
    AUDITOR = "auditor"
    ADMIN = "admin"


ROLES: frozenset[str] = frozenset(role.value for role in Role)
