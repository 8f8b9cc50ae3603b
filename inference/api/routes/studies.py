"""Chest radiograph studies: upload (multipart/form-data) and the latest result of a study."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from inference.api._public import public_result
from inference.api.deps import AcceptLanguage, ContextDep, DicomUploads, require
from inference.api.routes._responses import AUTH, errors
from inference.api.schemas import ImagingResult
from inference.services import Actor, analyse_study, get_study_result

router = APIRouter(prefix="/v1", tags=["imaging"])

UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
StudyUid = Annotated[str, Path(pattern=UID_PATTERN, max_length=64, description="A DICOM UID.")]

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "DICOM Part-10 files of one study.",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/studies",
    response_model=ImagingResult,
    status_code=201,
    responses=errors(
        400,
        *AUTH,
        409,
        413,
        415,
        422,
        503,
        extra={200: {"model": ImagingResult, "description": "Already analysed."}},
    ),
    openapi_extra=_UPLOAD_BODY,
    summary="Analyse the DICOM files of one study and return the imaging result.",
)
async def submit_study(
    actor: Annotated[Actor, require("studies:submit")],
    ctx: ContextDep,
    blobs: DicomUploads,
    response: Response,
    accept_language: AcceptLanguage = None,
) -> Any:
    outcome = await analyse_study(
        ctx=ctx, actor=actor, blobs=blobs, source="upload", accept_language=accept_language
    )
    response.status_code = 201 if outcome.created else 200
    response.headers["Location"] = f"/v1/results/{outcome.result.result_id}"
    return public_result(outcome.result, language=outcome.language)


@router.get(
    "/studies/{study_instance_uid}/result",
    response_model=ImagingResult,
    responses=errors(400, *AUTH, 404),
    summary="The latest imaging result of a study.",
)
async def study_result(
    actor: Annotated[Actor, require("results:read")],
    ctx: ContextDep,
    study_instance_uid: StudyUid,
    accept_language: AcceptLanguage = None,
) -> Any:
    view = await get_study_result(
        ctx=ctx, actor=actor, study_instance_uid=study_instance_uid, accept_language=accept_language
    )
    return public_result(view.result, language=view.language)
