"""The pages' routes: sign-in and sign-out, the worklist, the viewer, its images and the reader's actions.

Thin like the API's routes: each checks the session and permission through :mod:`._auth`, calls one
service and renders a template. URLs carry no patient data beyond the result id, and page titles none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from inference.api.ui._auth import (
    ContextDep,
    Reader,
    SettingsDep,
    check_csrf,
    cookie_options,
    form_permission,
    new_signin_token,
    page_permission,
    session_cookie_name,
    signin_cookie_name,
    sso_cookie_name,
    sso_cookie_options,
)
from inference.api.ui._render import page_language, render
from inference.api.ui._views import (
    AI_STATUSES,
    PRIORITIES,
    priors_model,
    triage_model,
    viewer_model,
    worklist_rows,
)
from inference.record import Verdict
from inference.services import (
    SignInRefused,
    SsoRefused,
    SsoUnavailable,
    WebSession,
    finish_sso,
    get_heat_layer,
    get_heatmap,
    get_result_image,
    mark_read,
    reading_worklist,
    record_verdicts,
    sign_in,
    sign_out,
    start_sso,
    viewed_result,
)

router = APIRouter()

# The filter form's "All" sends an empty value: no filter on that column.
Priority = Literal["critical", "urgent", "routine", ""]
AiStatus = Literal["analysed", "not_assessable", "failed", ""]
ResultId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description="A result id."
    ),
]
# The page shows at most this many open results (the most urgent ones) and says so when there are more.
WORKLIST_LIMIT = 200
_IMAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _signin_page(request: Request, *, status: int = 200, error: str | None = None) -> HTMLResponse:
    token = new_signin_token()
    settings = request.app.state.parent.state.settings
    sso = settings.ui.ui_oidc_display_name if settings.ui.ui_oidc else None
    response = render(request, "signin.html", status=status, csrf=token, error=error, sso=sso)
    response.set_cookie(signin_cookie_name(settings), token, max_age=1800, **cookie_options(settings))
    return response


def _set_session_cookie(response: Response, settings: SettingsDep, session: WebSession) -> None:
    max_age = int((session.expires - datetime.now(UTC)).total_seconds())
    response.set_cookie(
        session_cookie_name(settings), session.token, max_age=max_age, **cookie_options(settings)
    )


@router.get("/signin", response_class=HTMLResponse, name="signin")
async def signin_form(request: Request) -> HTMLResponse:
    """The sign-in form."""
    return _signin_page(request)


@router.post("/signin", response_class=HTMLResponse)
async def signin_submit(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str | None, Form(max_length=128)] = None,
) -> Response:
    """Check the credentials; on success set the session cookie and go to the worklist (the browser's
    former session, if it had one open, ends).

    A refusal is one page whatever its reason (unknown username, wrong password, disabled or locked
    account), so that the form tells nobody which usernames exist; the audit trail keeps the reason.
    """
    check_csrf(request.cookies.get(signin_cookie_name(settings), ""), csrf_token)
    client = request.client.host if request.client else None
    try:
        session = await sign_in(
            ctx=ctx, username=username.strip(), password=password, client=client,
            replaces=request.cookies.get(session_cookie_name(settings), ""),
        )  # fmt: skip
    except SignInRefused:  # AccountLocked included
        return _signin_page(request, status=401, error="refused")
    response = RedirectResponse("/ui/", status_code=303)
    _set_session_cookie(response, settings, session)
    response.delete_cookie(signin_cookie_name(settings), path="/", secure=cookie_options(settings)["secure"])
    return response


def _public_url(request: Request, settings: SettingsDep, path: str) -> str:
    # A URL the provider registered for the pages; it sends the browser back there and nowhere else.
    # Behind a proxy the public address is the configured one, not what the proxy's request says.
    base = settings.server.public_base_url
    if base:
        return f"{base}{path}"
    return str(request.url.replace(path=path, query="", fragment=""))


def _callback_url(request: Request, settings: SettingsDep) -> str:
    return _public_url(request, settings, "/ui/sso/callback")


def _without_flow(response: Response, settings: SettingsDep) -> Response:
    options = sso_cookie_options(settings)
    response.delete_cookie(
        sso_cookie_name(settings), path=options["path"], secure=options["secure"], httponly=True,
        samesite=options["samesite"],
    )  # fmt: skip
    return response


@router.get("/sso/start", name="sso_start")
async def sso_start(request: Request, ctx: ContextDep, settings: SettingsDep) -> Response:
    """Single sign-on: send the browser to the identity provider (404 when none is configured)."""
    if not settings.ui.ui_oidc:
        raise StarletteHTTPException(404)
    try:
        begun = await start_sso(ctx=ctx, redirect_uri=_callback_url(request, settings))
    except SsoUnavailable:
        return _signin_page(request, status=503, error="sso_unavailable")
    response = RedirectResponse(begun.url, status_code=302)
    response.set_cookie(sso_cookie_name(settings), begun.flow, max_age=600, **sso_cookie_options(settings))
    return response


@router.get("/sso/callback", response_class=HTMLResponse, name="sso_callback")
async def sso_callback(request: Request, ctx: ContextDep, settings: SettingsDep) -> Response:
    """Single sign-on: the provider's answer; on success the session opens and the worklist follows.

    The next page is always the worklist (never a URL from the request). It comes from a page of ours
    rather than a redirect: the session cookie is ``SameSite=Strict``, and a browser sends it only on a
    navigation that a page of this site started.
    """
    if not settings.ui.ui_oidc:
        raise StarletteHTTPException(404)
    params = {key: value[:4096] for key, value in request.query_params.items()}
    client = request.client.host if request.client else None
    try:
        session = await finish_sso(
            ctx=ctx, params=params, flow=request.cookies.get(sso_cookie_name(settings), ""),
            redirect_uri=_callback_url(request, settings), client=client,
            replaces=request.cookies.get(session_cookie_name(settings), ""),
        )  # fmt: skip
    except SsoUnavailable:
        return _without_flow(_signin_page(request, status=503, error="sso_unavailable"), settings)
    except SsoRefused:
        return _without_flow(_signin_page(request, status=401, error="sso"), settings)
    response = render(request, "signed_in.html")
    _set_session_cookie(response, settings, session)
    return _without_flow(response, settings)


@router.post("/signout")
async def signout(
    request: Request, ctx: ContextDep, settings: SettingsDep, reader: Annotated[Reader, form_permission(None)]
) -> Response:
    """End the session and go back to the sign-in form; a session opened by single sign-on is then ended
    at the provider too, when it names an end-session endpoint (it sends the browser back to the form).

    The provider's page follows from a page of ours rather than a redirect: the pages' ``form-action
    'self'`` forbids a form's answer to redirect to another site, and stays.
    """
    provider = await sign_out(
        ctx=ctx, actor=reader.actor, token=reader.token,
        post_logout_redirect_uri=_public_url(request, settings, "/ui/signin"),
    )  # fmt: skip
    response: Response
    if provider is None:
        response = RedirectResponse("/ui/signin", status_code=303)
    else:
        response = render(request, "signed_out.html", provider=provider)
    response.delete_cookie(session_cookie_name(settings), path="/", secure=cookie_options(settings)["secure"])
    return response


@router.get("/", response_class=HTMLResponse)
async def worklist_page(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    reader: Annotated[Reader, page_permission("worklist:read")],
    priority: Annotated[Priority | None, Query()] = None,
    status: Annotated[AiStatus | None, Query()] = None,
) -> HTMLResponse:
    """The worklist: open results of the reader's scope, most urgent first."""
    return await _worklist(request, ctx, settings, reader, priority, status, template="worklist.html")


@router.get("/worklist/rows", response_class=HTMLResponse)
async def worklist_rows_fragment(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    reader: Annotated[Reader, page_permission("worklist:read", activity=False)],
    priority: Annotated[Priority | None, Query()] = None,
    status: Annotated[AiStatus | None, Query()] = None,
) -> HTMLResponse:
    """The worklist's rows alone (the page refreshes itself with these; a refresh is not the reader's
    activity, so a worklist left open still reaches the session's idle timeout)."""
    return await _worklist(request, ctx, settings, reader, priority, status, template="_rows.html")


async def _worklist(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    reader: Reader,
    priority: str | None,
    status: str | None,
    *,
    template: str,
) -> HTMLResponse:
    language = page_language(request)
    # The filters choose before the limit (in the worklist's query): a filter finds its items however
    # many others rank above them. "" is a column left at "All".
    listed = await reading_worklist(
        ctx=ctx, actor=reader.actor, limit=WORKLIST_LIMIT, priority=priority or None, ai_status=status or None
    )
    rows = worklist_rows(listed.items, language=language)
    return render(
        request, template, language=language, rows=rows, reader=reader.actor.principal,
        csrf=reader.session.csrf, priority=priority, ai_filter=status, priorities=PRIORITIES,
        statuses=AI_STATUSES, max_wait=settings.ui.worklist_max_wait_minutes,
        refresh=settings.ui.ui_refresh_seconds, truncated=listed.more, limit=WORKLIST_LIMIT,
    )  # fmt: skip


@router.get("/results/{result_id}", response_class=HTMLResponse)
async def viewer_page(
    request: Request,
    result_id: ResultId,
    ctx: ContextDep,
    reader: Annotated[Reader, page_permission("results:read")],
) -> HTMLResponse:
    """The viewer of one result, with the patient's prior studies and recent vital signs beside it."""
    language = page_language(request)
    # The result, the reader's verdicts on it and the patient's priors: one read, audited in its transaction.
    viewed = await viewed_result(ctx=ctx, actor=reader.actor, result_id=result_id, accept_language=language)
    view = viewer_model(
        viewed.shown.result,
        language=language,
        verdicts=viewed.verdicts,
        patient=viewed.patient,
        others=viewed.others,
    )
    view["study_date"] = viewed.study_date
    return render(
        request, "viewer.html", language=language, r=view, reader=reader.actor.principal,
        csrf=reader.session.csrf, priors=priors_model(viewed.priors, language=language),
        triage=triage_model(viewed.triage, language=language),
    )  # fmt: skip


@router.get("/results/{result_id}/image.png")
async def display_image(
    result_id: ResultId,
    ctx: ContextDep,
    reader: Annotated[Reader, page_permission("results:read")],
) -> Response:
    """The result's display rendering, for the viewer's canvas (audited like the API's image.png)."""
    png = await get_result_image(ctx=ctx, actor=reader.actor, result_id=result_id)
    return Response(png, media_type="image/png", headers=_IMAGE_HEADERS)


@router.get("/results/{result_id}/heatmaps/{finding}.png")
async def heatmap_layer(
    result_id: ResultId,
    finding: Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$")],
    ctx: ContextDep,
    reader: Annotated[Reader, page_permission("results:read")],
    layer: Annotated[bool, Query()] = False,
) -> Response:
    """One finding's heat layer over the display rendering (``layer=1``), or the overlay with the
    radiograph burned in (results filed before renderings were kept have only that)."""
    fetch = get_heat_layer if layer else get_heatmap
    png = await fetch(ctx=ctx, actor=reader.actor, result_id=result_id, code=finding)
    return Response(png, media_type="image/png", headers=_IMAGE_HEADERS)


@router.post("/results/{result_id}/feedback")
async def feedback(
    result_id: ResultId,
    ctx: ContextDep,
    reader: Annotated[Reader, form_permission("feedback:write")],
    code: Annotated[str, Form(max_length=64)],
    verdict: Annotated[Literal["agree", "disagree"], Form()],
    correct_label: Annotated[Literal["present", "absent", ""], Form()] = "",
) -> Response:
    """Record the reader's verdict on one finding; the result stays open."""
    label = {"present": True, "absent": False}.get(correct_label)
    await record_verdicts(
        ctx=ctx, actor=reader.actor, result_id=result_id,
        verdicts=[Verdict(code=code, verdict=verdict, correct_label=None if verdict == "agree" else label)],
    )  # fmt: skip
    return RedirectResponse(f"/ui/results/{result_id}#finding-{code}", status_code=303)


@router.post("/results/{result_id}/read")
async def read(
    result_id: ResultId,
    ctx: ContextDep,
    reader: Annotated[Reader, form_permission("feedback:write")],
) -> Response:
    """Mark the result read: it leaves the worklist; back to the worklist."""
    await mark_read(ctx=ctx, actor=reader.actor, result_id=result_id)
    return RedirectResponse("/ui/", status_code=303)
