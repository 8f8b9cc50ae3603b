"""Every dependency a route takes, in one place: engines, the caller, permissions and request bodies.

Routes declare ``Annotated`` parameters with these and call one service function. Order matters:
authentication and the permission check come first in each route, so a caller without a token learns
nothing about how its body would have been judged.

Every dependency here is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop
that costs a request about a millisecond even on an idle server and tens of milliseconds while decoding
threads hold the GIL. None of these waits on anything (they read the request, the app state and the
settings); what may wait (the JWKS fetch of :func:`get_principal`, the audit entry of a refused token) is
sent to a worker thread itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from inference.api._errors import ApiError, MalformedRequest, PayloadTooLarge, UnsupportedMediaType
from inference.api._json import parse_json
from inference.api._multipart import SpooledBody, form_field, media_type
from inference.api._text import UNPRINTABLE_NAME, shown_name
from inference.config import Settings
from inference.security import (
    NOT_IN_LINE,
    PATIENT_DATA,
    PERMISSIONS,
    Forbidden,
    Principal,
    Unauthenticated,
    allowed,
    verify_token,
)
from inference.services import (
    Actor,
    Context,
    OversizedPart,
    audit_denial,
    audit_refused_authentication,
    token_revoked,
)

M = TypeVar("M", bound=BaseModel)

DICOM = "application/dicom"
_FILE_TYPES = frozenset({DICOM, "application/octet-stream"})
_MAX_OTHER_FIELDS = 16  # form fields besides the files an upload may carry (they are ignored)
_bearer = HTTPBearer(auto_error=False, description="A token from 'dxassist token issue'.")


async def get_context(request: Request) -> Context:
    """The engines built by the app's lifespan."""
    ctx: Context = request.app.state.ctx
    return ctx


async def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


ContextDep = Annotated[Context, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
AcceptLanguage = Annotated[str | None, Header(max_length=256, description="en, fr or ar (default en).")]


async def get_principal(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``.

    A token of this server's own key is checked on the event loop (a signature check against the key
    loaded at startup); one of an external issuer in a worker thread, as checking it may first fetch the
    issuer's JWKS over the network. A refusal is written to the audit trail (``api:authenticate``, at
    most one entry a minute per client address and reason: :func:`audit_refused_authentication`).

    Raises:
        Unauthenticated: No bearer token, or one that fails verification.
        JwksUnavailable: The external issuer's JWKS cannot be fetched (503).
    """
    try:
        if credentials is None:
            raise Unauthenticated(
                "This route needs 'Authorization: Bearer <token>'; get a token with 'dxassist token issue'."
            )
        if settings.security.jwks_url:
            principal = await run_in_threadpool(verify_token, settings, credentials.credentials)
        else:
            principal = verify_token(settings, credentials.credentials)
        if await token_revoked(ctx=ctx, principal=principal):
            raise Unauthenticated(
                "This bearer token was revoked (dxassist token revoke); ask for a new one.",
                code="token_revoked",
                claimed=principal,
            )
        return principal
    except Unauthenticated as refusal:
        client = request.client.host if request.client else None
        await audit_refused_authentication(ctx, client=client, refusal=refusal)
        raise


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: str) -> Any:
    """A dependency that lets the caller through only if its role holds ``permission``.

    Use as ``actor: Annotated[Actor, require("results:read")]``. A refusal of a permission that touches
    patient data is written to the audit trail.
    """

    if permission not in PERMISSIONS:
        raise ValueError(f"Permission {permission!r} is not in the permission table; add it there first.")

    async def dependency(request: Request, ctx: ContextDep, principal: PrincipalDep) -> Actor:
        actor = Actor(principal=principal, client=request.client.host if request.client else None)
        if not allowed(principal.role, permission):
            if permission in PATIENT_DATA:
                await audit_denial(ctx, actor, action=permission)
            raise Forbidden(f"The role '{principal.role}' does not allow '{permission}'.")
        return actor

    # Read by route_permission(): the test suite checks every route against the permission table.
    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def route_table(app: Any) -> list[tuple[str, str, str | None]]:
    """``(method, path template, permission or None)`` of every HTTP route of ``app`` (HEAD left out)."""
    try:  # FastAPI >= 0.130 mounts included routers lazily; this iterates the routes they hold
        from fastapi.routing import iter_route_contexts

        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = list(app.routes)
    table = []
    for route in routes:
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", None)
        if isinstance(path, str):
            table += [(method, path, route_permission(route)) for method in sorted(set(methods) - {"HEAD"})]
    return table


def route_permission(route: Any) -> str | None:
    """The permission a route requires through :func:`require` (None: the route requires none)."""
    pending = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    while pending:
        dependant = pending.pop()
        found = getattr(dependant.call, "permission", None)
        if isinstance(found, str):
            return found
        pending.extend(dependant.dependencies)
    return None


# -- bodies -----------------------------------------------------------------------------------------


def json_body(model: type[M]) -> Any:
    """A dependency that reads a JSON body (``application/json`` only) into ``model``.

    Read here rather than by FastAPI so that it runs after authentication (see the module docstring).
    """

    async def dependency(request: Request) -> M:
        kind, _params = media_type(request.headers.get("content-type"))
        if kind != "application/json" and not (kind.startswith("application/") and kind.endswith("+json")):
            raise UnsupportedMediaType("This route takes a JSON body; send 'Content-Type: application/json'.")
        # The size is bounded by the body limit while reading; the depth before parsing (see _json).
        data = parse_json(await request.body())
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_input=False, include_url=False)) from e

    # Read by the hostile-input tests, which send hostile JSON to every route that takes a JSON body.
    dependency.json_model = model  # type: ignore[attr-defined]
    return Depends(dependency)


async def dicom_uploads(request: Request, settings: SettingsDep) -> list[bytes]:
    """The ``files`` parts of a ``multipart/form-data`` body, as bytes (``application/dicom`` or
    ``application/octet-stream`` parts only).

    The body is kept in memory up to ``upload_memory_bytes`` (past it, in a spool file on disk:
    :class:`SpooledBody`) and split in place; a file part over ``max_instance_bytes`` is refused by its
    size without being read.

    Raises:
        UnsupportedMediaType: The body is not multipart/form-data, or a part has another media type.
        MalformedRequest: The multipart body is broken or has no ``files`` part.
        PayloadTooLarge: The body passes ``max_request_bytes`` (413, the rest is never read).
        ApiError: 413 when there are more files than ``max_instances``, or a file is over
            ``max_instance_bytes``.
    """
    kind, params = media_type(request.headers.get("content-type"))
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            "This route takes 'multipart/form-data' with one or more DICOM files in the field 'files'."
        )
    boundary = params.get("boundary")
    if not boundary:
        raise MalformedRequest("The multipart body could not be parsed: the Content-Type has no boundary.")
    limits = settings.limits
    body = SpooledBody(memory_bytes=limits.upload_memory_bytes)
    try:
        try:
            await body.receive(request.stream(), limit=limits.max_request_bytes, boundary=boundary)
        except OverflowError as e:
            raise PayloadTooLarge(limits.max_request_bytes) from e
        try:
            # The files, and as many other fields as a form may carry besides them.
            parts = body.parts(boundary, max_parts=limits.max_instances + _MAX_OTHER_FIELDS)
        except ValueError as e:
            raise ApiError(
                413,
                "too_many_instances",
                f"The request has more than {limits.max_instances} files, the limit per study.",
            ) from e
        files = []
        for part in parts:
            name, is_file = form_field(part)
            if name is None:
                raise MalformedRequest(
                    "The multipart body could not be parsed: a part has no Content-Disposition "
                    "'form-data' with a name."
                )
            if name != "files":
                continue
            if not is_file:
                raise MalformedRequest(
                    "The 'files' field must hold files, not text values.", code="missing_files"
                )
            files.append(part)
        if not files:
            raise MalformedRequest(
                "The form has no 'files' field; send each DICOM file as a part named 'files'.",
                code="missing_files",
            )
        if len(files) > limits.max_instances:
            raise ApiError(
                413,
                "too_many_instances",
                f"The request has more than {limits.max_instances} files, the limit per study.",
            )
        for part in files:
            part_type = part.content_type or "application/octet-stream"
            if part_type not in _FILE_TYPES:
                raise UnsupportedMediaType(
                    f"A file part has media type '{part_type[:64]}'; send application/dicom or "
                    "application/octet-stream."
                )
            if part.end - part.start > limits.max_instance_bytes:
                raise ApiError(
                    413,
                    "instance_too_large",
                    f"A file is larger than the limit of {limits.max_instance_bytes} bytes per instance.",
                )
        return [body.content(part) for part in files]
    finally:
        body.close()


async def stow_parts(
    request: Request, settings: SettingsDep
) -> AsyncIterator[Iterator[tuple[str | None, bytes | OversizedPart]]]:
    """The parts of a STOW-RS body (``multipart/related; type="application/dicom"``), one at a time.

    The body streams into a spool file (memory up to 1 MiB, then disk) and is split in place; each part's
    bytes are read only when the route's consumer reaches it, and a part over ``max_instance_bytes`` is
    never read (:class:`OversizedPart`). The spool is removed after the request.

    Raises:
        UnsupportedMediaType: Another Content-Type or ``type`` parameter (STOW-RS: 415).
        MalformedRequest: No boundary, a broken body, or no part at all.
        PayloadTooLarge: The body passes ``max_request_bytes`` (413, the rest is never read).
        ApiError: 413 when there are more parts than ``max_instances``.
    """
    kind, params = media_type(request.headers.get("content-type"))
    if kind != "multipart/related" or params.get("type", "").lower() != DICOM:
        raise UnsupportedMediaType(
            "STOW-RS takes 'multipart/related; type=\"application/dicom\"' with one DICOM instance per part; "
            "the metadata+bulkdata form (application/dicom+json) is not supported."
        )
    boundary = params.get("boundary")
    if not boundary:
        raise MalformedRequest("The Content-Type has no 'boundary' parameter.")
    body = SpooledBody()
    try:
        try:
            await body.receive(request.stream(), limit=settings.limits.max_request_bytes, boundary=boundary)
        except OverflowError as e:
            raise PayloadTooLarge(settings.limits.max_request_bytes) from e
        try:
            parts = body.parts(boundary, max_parts=settings.limits.max_instances)
        except ValueError as e:
            raise ApiError(
                413,
                "too_many_instances",
                f"The request has more than {settings.limits.max_instances} parts, the limit.",
            ) from e
        if not parts:
            raise MalformedRequest("The multipart body has no part; send at least one DICOM instance.")

        def contents() -> Iterator[tuple[str | None, bytes | OversizedPart]]:
            for part in parts:
                size = part.end - part.start
                if size > settings.limits.max_instance_bytes:
                    yield part.content_type, OversizedPart(size)
                else:
                    yield part.content_type, body.content(part)

        yield contents()
    finally:
        body.close()


DicomUploads = Annotated[list[bytes], Depends(dicom_uploads)]
StowParts = Annotated[Iterator[tuple[str | None, bytes | OversizedPart]], Depends(stow_parts)]


def _query_names(dependant: Any) -> set[str]:
    """Names of the query parameters a route's dependency tree declares."""
    names = {str(param.alias) for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _refuse_unprintable(place: str, pairs: list[tuple[str, str]]) -> None:
    """Refuse a parameter whose name or value holds a character no value holds (422
    ``invalid_characters``, naming the parameter; see :data:`inference.security.NOT_IN_LINE`).

    Raises:
        RequestValidationError: A name or value holds a control character (tab and line breaks
            included: a parameter is one line), a lone surrogate, a line or paragraph separator or a
            bidirectional override (the value is never echoed).
    """
    for name, value in pairs:
        if NOT_IN_LINE.search(name) or NOT_IN_LINE.search(value):
            shown = UNPRINTABLE_NAME if NOT_IN_LINE.search(name) else shown_name(name)
            msg = "holds a control or invisible formatting character"
            error = {"type": "invalid_characters", "loc": (place, shown), "msg": msg, "input": None}
            raise RequestValidationError([error])


async def printable_parameters(request: Request) -> None:
    """Refuse a query or path parameter holding a control or invisible formatting character (422
    ``invalid_characters``, naming the parameter), on every route, FHIR's included: the same characters
    a JSON body's fields refuse, so that none reaches a search, the record or the audit trail.

    Raises:
        RequestValidationError: See :func:`_refuse_unprintable`.
    """
    path_params: dict[str, Any] = request.scope.get("path_params") or {}
    _refuse_unprintable("path", [(str(k), v) for k, v in path_params.items() if isinstance(v, str)])
    _refuse_unprintable("query", request.query_params.multi_items())


async def declared_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not declare (400 ``invalid_field``).

    A misspelt ``?actve=true`` silently ignored would answer something else than the caller asked for.
    FHIR routes do not take this: FHIR R4 has servers ignore unknown search parameters unless the client
    sends ``Prefer: handling=strict`` (``inference.api._fhir``). Every route takes
    :func:`printable_parameters` before this.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    declared = _query_names(dependant)
    unknown = sorted({name for name in request.query_params if name not in declared})
    if unknown:
        # The name is echoed only when it looks like a parameter name, never as free text.
        error = {
            "type": "extra_forbidden",
            "loc": ("query", shown_name(unknown[0])),
            "msg": "",
            "input": None,
        }
        raise RequestValidationError([error])


async def all_query_params(request: Request) -> list[tuple[str, str]]:
    """Query parameters as ``(name, value)`` pairs in order, repeats kept (``date=ge..&date=le..``).

    Raises:
        RequestValidationError: A name or value holds a control or invisible formatting character (422
            ``invalid_characters``; see :func:`_refuse_unprintable`).
    """
    pairs = list(request.query_params.multi_items())
    # printable_parameters refused these already on the app's routes; said here too for any other caller.
    _refuse_unprintable("query", pairs)
    return pairs


QueryPairs = Annotated[list[tuple[str, str]], Depends(all_query_params)]


async def base_url(request: Request, settings: SettingsDep) -> str:
    """The server's base URL, without a trailing slash.

    ``DXASSIST_PUBLIC_BASE_URL`` when set (behind a reverse proxy), else as the caller reached it: the
    scheme, host and port of the request.
    """
    if settings.server.public_base_url:
        return settings.server.public_base_url
    url = request.base_url
    server = request.scope.get("server")
    # Some clients (dicomweb-client 0.61) send a Host header without the port. When that Host is the
    # very address of the socket the request came in on, the client reached us directly, so the port it
    # left out is ours; a name (a reverse proxy's, say) is left as is: set DXASSIST_PUBLIC_BASE_URL there.
    if url.port is None and server and server[1] is not None:
        default = 443 if url.scheme == "https" else 80
        if url.hostname == server[0] and server[1] != default:
            url = url.replace(port=server[1])
    return str(url).rstrip("/")


BaseUrl = Annotated[str, Depends(base_url)]

__all__: list[str] = [
    "AcceptLanguage",
    "BaseUrl",
    "ContextDep",
    "DicomUploads",
    "PrincipalDep",
    "QueryPairs",
    "SettingsDep",
    "StowParts",
    "json_body",
    "require",
    "route_permission",
    "route_table",
]
