"""Who may call the API: bearer tokens (embedded EdDSA issuer, or an external issuer's JWKS), roles, the
permission table and facility scoping; the ``audit verify`` and ``export-training-set`` commands.

No FastAPI here: :mod:`inference.api.deps` turns these into dependencies; the CLI issues tokens.
"""

from inference.security._access import (
    ACCESS,
    BREAK_GLASS_ROLES,
    COLUMN_TITLES,
    COLUMNS,
    may_read,
    scope_for,
)
from inference.security._errors import (
    Forbidden,
    SecurityError,
    SigningKeyError,
    TokenCheckUnavailable,
    Unauthenticated,
)
from inference.security._id_tokens import IdTokenInvalid, jwk_keys, unverified_header, verify_id_token
from inference.security._jwks import JwksUnavailable
from inference.security._keys import KEY_FILE, SigningKey, signing_key
from inference.security._permissions import (
    FACILITY_BOUND,
    OPEN_ROUTES,
    PATIENT_DATA,
    PERMISSIONS,
    allowed,
    facility_allows,
)
from inference.security._roles import ROLES, Role
from inference.security._subjects import WEB_PREFIX, web_subject
from inference.security._text import NOT_IN_LINE, NOT_IN_TEXT
from inference.security._tokens import ALGORITHM, Principal, issue_token, own_token, verify_token

__all__ = [
    "ACCESS",
    "BREAK_GLASS_ROLES",
    "COLUMNS",
    "COLUMN_TITLES",
    "may_read",
    "scope_for",
    "ALGORITHM",
    "FACILITY_BOUND",
    "KEY_FILE",
    "NOT_IN_LINE",
    "NOT_IN_TEXT",
    "OPEN_ROUTES",
    "PATIENT_DATA",
    "PERMISSIONS",
    "ROLES",
    "Forbidden",
    "IdTokenInvalid",
    "JwksUnavailable",
    "Principal",
    "Role",
    "SecurityError",
    "SigningKey",
    "SigningKeyError",
    "TokenCheckUnavailable",
    "Unauthenticated",
    "allowed",
    "facility_allows",
    "issue_token",
    "own_token",
    "jwk_keys",
    "signing_key",
    "unverified_header",
    "verify_id_token",
    "verify_token",
    "WEB_PREFIX",
    "web_subject",
]
