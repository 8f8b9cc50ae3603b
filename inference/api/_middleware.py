"""One pure ASGI middleware for every HTTP request: request id, body limit, metrics, access log, last resort.

It sits just inside Starlette's ``ServerErrorMiddleware``, so it sees every request, including those that
match no route, and it answers unexpected exceptions itself (500 in the contract's error shape) instead
of letting the server print a traceback whose text could quote patient data.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.api._errors import PayloadTooLarge, error_body
from inference.api._http import READ_TIMED_OUT
from inference.observability import (
    UNMATCHED_ROUTE,
    bind_request_id,
    count_rejected,
    observe_request,
    reset_request_id,
)

logger = logging.getLogger("inference.api.access")
error_logger = logging.getLogger("inference.api.errors")

ERROR_CODE: Final = "error_code"
"""Key of the request state where the error handlers leave the ``error.code`` they answered."""
CLIENT_REQUEST_ID: Final = "client_request_id"
"""Key of the request state (and field of the access-log line) holding the caller's own ``X-Request-ID``."""
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def route_template(scope: Scope) -> str:
    """The template of the route that matched (``/v1/results/{result_id}``), never the concrete path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """Request id, request body limit, Prometheus metrics, one JSON access-log line, and the 500 fallback.

    Args:
        app: The wrapped ASGI app.
        body_limit: ``body_limit(method, path)`` → largest accepted request body in bytes.
    """

    def __init__(self, app: ASGIApp, *, body_limit: Callable[[str, str], int]) -> None:
        self.app = app
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        # The request's id is always the server's own: the audit trail and the logs name requests by it, so
        # a caller must not choose it (it could give its entries the id of another request, or the
        # `retry-`/`registry-` id of the server's own work). A caller's id of the safe shape is kept
        # beside it, on the access-log line, to join the caller's (or a proxy's) logs with ours.
        supplied = headers.get("x-request-id", "")
        request_id = uuid.uuid4().hex
        client_id = supplied if _CLIENT_ID.fullmatch(supplied) else None
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[CLIENT_REQUEST_ID] = client_id
        # Every record logged while this request is served (threads it starts included) carries its id.
        bound = bind_request_id(request_id)
        method = scope.get("method", "GET")
        limit = self.body_limit(method, scope.get("path", "/"))
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0
        page = _is_page(scope.get("path", "/"))

        def too_large() -> PayloadTooLarge:
            # Raised inside the route's body read; the error handlers answer 413. The access line names
            # it whoever answers; the pages' HTML answer is counted here (the API's JSON counts itself).
            state[ERROR_CODE] = "payload_too_large"
            if page:
                count_rejected("payload_too_large")
            return PayloadTooLarge(limit)

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large()
            return message

        async def refuse_body() -> Message:
            raise too_large()

        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
                # Refuse before reading a byte of an announced oversized body.
                if page:
                    # The pages answer with an HTML page in the reader's language: their form read fails
                    # at once, without a byte read, and their error handler answers 413.
                    await self.app(scope, refuse_body, send_wrapper)
                else:
                    await _send_json(send_wrapper, scope.get("path", "/"), 413, PayloadTooLarge(limit))
                    state[ERROR_CODE] = "payload_too_large"
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except ClientDisconnect:
            # The client went away before its request arrived whole: it gave up, or the server's read
            # timeout answered 408 and closed it (inference.api._http). Nobody is left to answer, and it
            # is no failure of the server's (it was a 500 with a stack in the log).
            if not response_started:
                timed_out = bool(state.get(READ_TIMED_OUT))
                status = 408 if timed_out else _CLIENT_CLOSED_REQUEST
                state[ERROR_CODE] = "request_timeout" if timed_out else "client_disconnected"
        except Exception as exc:  # the last resort: answer, log without the exception's text, keep serving
            error_logger.error(
                "unhandled exception",
                exc_info=exc,
                extra={"request_id": request_id, "route": route_template(scope), "method": method},
            )
            if not response_started:
                state[ERROR_CODE] = "internal_error"
                await _send_json(
                    send_wrapper,
                    scope.get("path", "/"),
                    500,
                    None,
                    code="internal_error",
                    message="The server failed to process the request; the failure was logged.",
                )
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            observe_request(route=route, method=method, status=status, seconds=seconds)
            line: dict[str, Any] = {
                "event": "request",
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            }
            if client_id is not None:
                line[CLIENT_REQUEST_ID] = client_id
            if status >= 400:
                # The error code of the answer (set by whoever answered), so a refusal is explained in
                # the access log without its message, which may be long.
                line["code"] = str(state.get(ERROR_CODE) or "http_error")
            logger.info("request", extra=line)
            reset_request_id(bound)


def _is_page(path: str) -> bool:
    """Whether ``path`` is one of the web pages (``inference.api.ui``), whose errors are HTML pages."""
    return path == "/ui" or path.startswith("/ui/")


_CLIENT_CLOSED_REQUEST: Final = 499
"""The status the access log and metrics give a request its client abandoned (nginx's convention)."""


async def _send_json(
    send: Send, path: str, status: int, error: PayloadTooLarge | None, *, code: str = "", message: str = ""
) -> None:
    if error is not None:
        code, message = error.code, error.message
        count_rejected(code)
    # The contract's error shape, or an OperationOutcome under /fhir.
    content, media_type = error_body(path, status, code, message)
    body = json.dumps(content).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 413:
        headers.append((b"connection", b"close"))
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
