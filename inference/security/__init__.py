"""Who may call the API: EdDSA bearer tokens, roles, the permission table and facility scoping.

No FastAPI here: :mod:`inference.api.deps` turns these into dependencies; the CLI issues tokens.
"""

from inference.security._errors import Forbidden, SecurityError, SigningKeyError, Unauthenticated
from inference.security._keys import KEY_FILE, SigningKey, signing_key
from inference.security._permissions import (
    FACILITY_BOUND,
    PATIENT_DATA,
    PERMISSIONS,
    allowed,
    facility_allows,
)
from inference.security._roles import ROLES, Role
from inference.security._tokens import ALGORITHM, Principal, issue_token, verify_token

__all__ = [
    "ALGORITHM",
    "FACILITY_BOUND",
    "KEY_FILE",
    "PATIENT_DATA",
    "PERMISSIONS",
    "ROLES",
    "Forbidden",
    "Principal",
    "Role",
    "SecurityError",
    "SigningKey",
    "SigningKeyError",
    "Unauthenticated",
    "allowed",
    "facility_allows",
    "issue_token",
    "signing_key",
    "verify_token",
]
