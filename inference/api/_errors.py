"""Errors of the HTTP layer and the handlers that turn every exception into the contract's error shape.

Every answer that is not a success is ``{"error": {"code", "message"}}`` (``application/json``), except
under ``/fhir``, where it is a FHIR ``OperationOutcome`` (``application/fhir+json``) because FHIR clients
expect one. The mapping from package errors to statuses lives here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.api._text import UNPRINTABLE_NAME, invalid_characters_message
from inference.dicom import DicomRejected
from inference.observability import count_rejected
from inference.record import (
    Conflict,
    ConsentObjection,
    InvalidData,
    InvalidFeedback,
    InvalidSearch,
    NotFound,
    RecordError,
)
from inference.runtime import ModelUnavailable, RuntimeErrorBase
from inference.security import Forbidden, SecurityError, TokenCheckUnavailable, Unauthenticated
from inference.services import PictureUnreadable
from inference.triage import VitalsRejected

logger = logging.getLogger(__name__)

FHIR_MEDIA_TYPE: Final = "application/fhir+json"
# Statuses that mean "the input was refused", counted by dxassist_rejected_inputs_total{code}.
_REJECTED_STATUSES: Final = frozenset({400, 409, 413, 415, 422})
_FHIR_ISSUE_CODES: Final[dict[int, str]] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}
# Errors whose FHIR issue type is more precise than their status's: a parameter holding a character no
# value holds is an invalid value (FHIR ``value``, a kind of ``invalid``), not the server failing at the
# request (``processing``, the other 422s: valid but unsupported).
_FHIR_ISSUE_CODES_BY_ERROR: Final[dict[str, str]] = {"invalid_characters": "value"}


class ApiError(StarletteHTTPException):
    """An error the HTTP layer itself detects (media type, body size, malformed multipart, bad path).

    It subclasses Starlette's ``HTTPException`` so that FastAPI lets it through untouched when it is
    raised while the request body is being read.

    Attributes:
        code: Stable machine code (the ``error.code`` of the answer).
        message: Full sentence for the caller; never holds patient data.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message


class PayloadTooLarge(ApiError):
    """The request body is larger than the configured limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"The request body is larger than the limit of {limit} bytes; send less data per request.",
        )


class UnsupportedMediaType(ApiError):
    """The request's Content-Type is not what the route accepts (HTTP 415)."""

    def __init__(self, message: str) -> None:
        super().__init__(415, "unsupported_media_type", message)


class MalformedRequest(ApiError):
    """The request body cannot be parsed (HTTP 400)."""

    def __init__(self, message: str, code: str = "malformed") -> None:
        super().__init__(400, code, message)


class InvalidCharacters(ApiError):
    """A value of the request holds a character no value holds (HTTP 422 ``invalid_characters``), named
    by its field or parameter, never quoted (see :data:`inference.security.NOT_IN_TEXT`)."""

    def __init__(self, kind: str, where: str) -> None:
        super().__init__(422, "invalid_characters", invalid_characters_message(kind, where))


def is_fhir(path: str) -> bool:
    """Whether ``path`` is under the FHIR base, whose errors are OperationOutcomes."""
    return path == "/fhir" or path.startswith("/fhir/")


def error_body(path: str, status: int, code: str, message: str) -> tuple[dict[str, Any], str]:
    """``(body, media type)`` of an error at ``path``: the contract's shape, or an OperationOutcome."""
    if is_fhir(path):
        issue = _FHIR_ISSUE_CODES_BY_ERROR.get(code) or _FHIR_ISSUE_CODES.get(status, "exception")
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": issue,
                    "details": {"coding": [{"system": "urn:dxassist:error", "code": code}], "text": message},
                    "diagnostics": message,
                }
            ],
        }
        return outcome, FHIR_MEDIA_TYPE
    return {"error": {"code": code, "message": message}}, "application/json"


def error_response(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error answer for ``request``: contract shape, or an OperationOutcome under ``/fhir``."""
    if status in _REJECTED_STATUSES:
        count_rejected(code)
    request.state.error_code = code  # for the access log line (inference.api._middleware)
    body, media_type = error_body(request.url.path, status, code, message)
    return JSONResponse(body, status_code=status, headers=headers, media_type=media_type)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [_shown(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _shown(part: Any) -> str:
    """A part of an error's location as the message may quote it: an unknown key a caller sent is its
    own text, which may hold a bidirectional override or a line break (never echoed) or be very long."""
    text = str(part)
    return text if text.isprintable() and len(text) <= 64 else UNPRINTABLE_NAME


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return "malformed", "The request body is not valid JSON; send a JSON object."
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    where = _loc(loc)
    kind = (
        "Path parameter" if loc[:1] == ("path",) else "Query parameter" if loc[:1] == ("query",) else "Field"
    )
    if loc[:1] in (("path",), ("query",)):
        where = ".".join(_shown(p) for p in loc[1:])
    # pydantic's msg names the expected type; the offending input is never echoed (it may be PHI).
    detail = str(first.get("msg", "is invalid"))
    more = f" ({len(errors) - 1} more problem(s) in the request)" if len(errors) > 1 else ""
    if first.get("type") == "extra_forbidden":
        return (
            "invalid_field",
            f"{kind} '{where}' is not accepted; check its spelling against the API reference{more}.",
        )
    if first.get("type") == "missing":
        return "invalid_field", f"{kind} '{where}' is required{more}."
    if first.get("type") == "invalid_characters":
        return "invalid_characters", invalid_characters_message(kind, where, more)
    if first.get("type") in _PLAUSIBILITY_CODES:
        # Our own validators' sentences: they name the field and the accepted range, never the value.
        return str(first["type"]), f"Field {detail.rstrip('.')}{more}."
    return "invalid_field", f"{kind} '{where}' is invalid: {detail}{more}."


# Well-formed values outside what is physically possible (a date in year 10000): 422, like vitals.
_PLAUSIBILITY_CODES: Final = frozenset({"implausible_date"})
# Codes of validation errors answered 422: well-formed JSON whose values cannot be taken as they are.
_UNPROCESSABLE: Final = _PLAUSIBILITY_CODES | {"invalid_characters"}

# The kinds of DICOM refusal (inference.dicom.DicomRejected.kind) and the statuses they are answered with.
DICOM_STATUS: Final[dict[str, int]] = {
    "malformed": 400,
    "too_large": 413,
    "unsupported_media": 415,
    "unsupported_content": 422,
}

_VITALS_STATUS: Final[dict[str, int]] = {
    "invalid_type": 400,
    "invalid_value": 400,
    "implausible_value": 422,
    "inconsistent_values": 422,
    "no_vital_signs": 422,
    "paediatric_patient": 422,
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers mapping every known exception to its status and error code."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            code, message = "not_found", "No resource is served at this path; see the API reference."
        elif exc.status_code == 405:
            code, message = "method_not_allowed", f"Method {request.method} is not accepted on this path."
        elif exc.status_code == 400:
            # Starlette's own parsers (form data) raise these; their detail never quotes the data.
            code, message = "malformed", f"The request could not be parsed: {exc.detail}"
        else:
            code, message = "http_error", str(exc.detail)
        return error_response(request, exc.status_code, code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(request, 422 if code in _UNPROCESSABLE else 400, code, message)

    @app.exception_handler(DicomRejected)
    async def _dicom(request: Request, exc: DicomRejected) -> JSONResponse:
        return error_response(request, DICOM_STATUS[exc.kind], exc.code, exc.message)

    @app.exception_handler(VitalsRejected)
    async def _vitals(request: Request, exc: VitalsRejected) -> JSONResponse:
        return error_response(request, _VITALS_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.exception_handler(SecurityError)
    async def _security(request: Request, exc: SecurityError) -> JSONResponse:
        if isinstance(exc, Unauthenticated):
            challenge = 'Bearer realm="dxassist"'
            if exc.code != "unauthenticated":
                challenge += f', error="invalid_token", error_description="{exc.message}"'
            return error_response(request, 401, exc.code, exc.message, {"WWW-Authenticate": challenge})
        if isinstance(exc, Forbidden):
            return error_response(request, 403, exc.code, exc.message)
        if isinstance(exc, TokenCheckUnavailable):
            retry_after = {"Retry-After": str(exc.retry_after_seconds)}
            return error_response(request, 503, exc.code, exc.message, retry_after)
        logger.error("security configuration error", extra={"code": exc.code})
        return error_response(request, 500, exc.code, exc.message)

    @app.exception_handler(PictureUnreadable)
    async def _rendering(request: Request, exc: PictureUnreadable) -> JSONResponse:
        # The server's own stored data, not the caller's request: a server error, said plainly.
        return error_response(
            request,
            500,
            "rendering_unreadable",
            "The stored rendering of this result cannot be read, so this picture cannot be drawn; "
            "the failure was logged. The result itself and its findings are unaffected.",
        )

    @app.exception_handler(RecordError)
    async def _record(request: Request, exc: RecordError) -> JSONResponse:
        if isinstance(exc, NotFound):
            return error_response(request, 404, "not_found", str(exc))
        if isinstance(exc, ConsentObjection):
            return error_response(request, 409, exc.code, str(exc))
        if isinstance(exc, Conflict):
            return error_response(request, 409, exc.code, str(exc))
        if isinstance(exc, InvalidFeedback):
            return error_response(request, 422, "invalid_feedback", str(exc))
        if isinstance(exc, InvalidSearch):
            return error_response(request, 400, "invalid_search", str(exc))
        if isinstance(exc, InvalidData):
            return error_response(request, 422, exc.code, str(exc))
        logger.error("record error", extra={"code": type(exc).__name__}, exc_info=exc)
        return error_response(
            request,
            503,
            "record_unavailable",
            "The patient record could not complete the request; retry later.",
        )

    @app.exception_handler(ModelUnavailable)
    async def _model_unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return error_response(request, 503, "model_unavailable", str(exc), {"Retry-After": "30"})

    @app.exception_handler(RuntimeErrorBase)
    async def _runtime(request: Request, exc: RuntimeErrorBase) -> JSONResponse:
        # Inputs reach the runtime only after validation: anything it refuses is our fault, not the caller's.
        logger.error("inference failed", extra={"code": type(exc).__name__}, exc_info=exc)
        return error_response(
            request, 500, "inference_failed", "The model could not score this input; the failure was logged."
        )
