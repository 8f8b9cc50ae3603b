"""What the pages accept in a request: the API's character rule (:data:`inference.security.NOT_IN_LINE`)
on every form field and query and path parameter, so that what a form sends reaches the record only as
the API's JSON fields would (a bidirectional override in a finding code or a username is refused, nothing
written).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from inference.security import NOT_IN_LINE

# A password is never stored or shown as text (only checked against its hash), and its holder chose it:
# no character of it is refused, or a password that holds one could never sign in again.
_UNCHECKED_FIELDS: Final = frozenset({"password"})
_FORMS: Final = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _refuse(place: str, pairs: Any) -> None:
    for name, value in pairs:
        if place == "form" and (name in _UNCHECKED_FIELDS or not isinstance(value, str)):
            continue
        if NOT_IN_LINE.search(str(name)) or NOT_IN_LINE.search(str(value)):
            # The page names no field (the reader typed into one form); the error is never logged with it.
            error = {"type": "invalid_characters", "loc": (place,), "msg": "", "input": None}
            raise RequestValidationError([error])


async def printable_request(request: Request) -> None:
    """Refuse a request whose form fields (but the password), query or path parameters hold a control or
    invisible formatting character, before the session, the permission or the form is looked at: the
    pages answer 422 and write nothing (no audit entry, no sign-in attempt, no session activity).

    The pages' forms are one line each (a username, a finding code, a verdict): tab and line breaks are
    refused too.

    Raises:
        RequestValidationError: ``invalid_characters`` (the pages show their error page for it).
    """
    _refuse("path", (request.scope.get("path_params") or {}).items())
    _refuse("query", request.query_params.multi_items())
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if request.method != "POST" or content_type not in _FORMS:
        return
    # Starlette keeps the parsed form on the request: the route's own Form parameters read the same one.
    _refuse("form", (await request.form()).multi_items())
