"""DICOMweb STOW-RS: a PACS stores instances; the server analyses each study before answering."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from inference.api._dicomweb import (
    DICOM_JSON,
    DICOM_XML,
    DicomJSONResponse,
    acceptable_stow,
    count_failures,
    stow_response,
)
from inference.api.deps import AcceptLanguage, ContextDep, StowParts, require
from inference.api.routes._responses import AUTH, errors
from inference.api.routes.studies import StudyUid
from inference.services import Actor, store_instances

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_STOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            'multipart/related; type="application/dicom"': {"schema": {"type": "string", "format": "binary"}}
        },
    }
}
_STOW_RESPONSE = {
    "content": {
        DICOM_JSON: {"schema": {"$ref": "#/components/schemas/DicomJsonDataset"}},
        DICOM_XML: {"schema": {"type": "string", "description": "The dataset as PS3.19 Native DICOM Model."}},
    }
}
# application/dicom+xml (PS3.19 Native DICOM Model) when preferred over DICOM JSON, else DICOM JSON; an
# Accept that allows neither is refused with 406 before the body is read. Declared before the body's
# dependency, so it is checked first.
StowAccept = Annotated[str | None, Depends(acceptable_stow)]


_STOW_RESPONSES = errors(
    400,
    *AUTH,
    406,
    413,
    415,
    extra={
        200: {"description": "Every instance stored and analysed.", **_STOW_RESPONSE},
        202: {
            "description": "Some instances failed (FailedSOPSequence, OtherFailuresSequence).",
            **_STOW_RESPONSE,
        },
        409: {"description": "Every instance failed for good.", **_STOW_RESPONSE},
        503: {
            "description": (
                "Every instance failed only for now (the model or the record unavailable; FailedSOPSequence, "
                "Retry-After), or the server cannot take the request now (the error shape)."
            ),
            "content": {
                **_STOW_RESPONSE["content"],
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}},
            },
        },
    },
)


# Each route is served with a trailing slash too (``/dicomweb/studies/``, as clients build it from a base
# URL that ends in one): the framework's redirect (307) is one that many STOW-RS clients do not follow
# for a POST, so their upload failed.
@router.post("/studies/", response_class=DicomJSONResponse, include_in_schema=False)
@router.post(
    "/studies",
    response_class=DicomJSONResponse,
    responses=_STOW_RESPONSES,
    openapi_extra=_STOW_BODY,
    summary="STOW-RS: store DICOM instances (each study is analysed before the answer).",
)
async def stow(
    actor: Annotated[Actor, require("studies:submit")],
    accept: StowAccept,
    ctx: ContextDep,
    parts: StowParts,
    accept_language: AcceptLanguage = None,
) -> Response:
    outcome = await store_instances(ctx=ctx, actor=actor, parts=parts, accept_language=accept_language)
    count_failures(outcome)
    return stow_response(outcome, accept=accept)


@router.post("/studies/{study_instance_uid}/", response_class=DicomJSONResponse, include_in_schema=False)
@router.post(
    "/studies/{study_instance_uid}",
    response_class=DicomJSONResponse,
    responses=_STOW_RESPONSES,
    openapi_extra=_STOW_BODY,
    summary="STOW-RS into one study: instances of another study fail (0xC000), the others are stored.",
)
async def stow_study(
    actor: Annotated[Actor, require("studies:submit")],
    accept: StowAccept,
    ctx: ContextDep,
    study_instance_uid: StudyUid,
    parts: StowParts,
    accept_language: AcceptLanguage = None,
) -> Response:
    outcome = await store_instances(
        ctx=ctx,
        actor=actor,
        parts=parts,
        accept_language=accept_language,
        study_instance_uid=study_instance_uid,
    )
    count_failures(outcome)
    return stow_response(outcome, accept=accept)
