"""The STOW-RS response: a DICOM JSON dataset (PS3.18 §10.5.3, PS3.18 Annex F) and its HTTP status."""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import JSONResponse

from inference.observability import count_rejected
from inference.services import StowOutcome

DICOM_JSON: Final = "application/dicom+json"

RETRIEVE_URL: Final = "00081190"
FAILED_SOP_SEQUENCE: Final = "00081198"
REFERENCED_SOP_SEQUENCE: Final = "00081199"
FAILURE_REASON: Final = "00081197"
REFERENCED_SOP_CLASS_UID: Final = "00081150"
REFERENCED_SOP_INSTANCE_UID: Final = "00081155"


class DicomJSONResponse(JSONResponse):
    """JSON with the DICOM JSON media type."""

    media_type = DICOM_JSON


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def _empty_url() -> dict[str, Any]:
    return {"vr": "UR"}


def stow_dataset(outcome: StowOutcome) -> dict[str, Any]:
    """The STOW-RS response dataset (PS3.18 Table I.1-1, Store Instances Response Module).

    ``RetrieveURL`` (0008,1190) is Type 2 at the top level (the Studies Retrieve resource) and in each
    ``ReferencedSOPSequence`` item (the Instance's): always present, and empty (DICOM JSON ``{"vr": "UR"}``,
    no ``Value``) because the server analyses images without archiving them and serves no WADO-RS
    Retrieve. The client finds the analysis of each study it sent, by the Study Instance UID of its
    instances, at ``GET /v1/studies/{uid}/result``.
    """
    dataset: dict[str, Any] = {RETRIEVE_URL: _empty_url()}
    if outcome.stored:
        dataset[REFERENCED_SOP_SEQUENCE] = {
            "vr": "SQ",
            "Value": [
                {
                    REFERENCED_SOP_CLASS_UID: _ui(item.sop_class_uid),
                    REFERENCED_SOP_INSTANCE_UID: _ui(item.sop_instance_uid),
                    RETRIEVE_URL: _empty_url(),
                }
                for item in outcome.stored
            ],
        }
    if outcome.failed:
        items = []
        for failure in outcome.failed:
            item: dict[str, Any] = {}
            if failure.sop_class_uid:
                item[REFERENCED_SOP_CLASS_UID] = _ui(failure.sop_class_uid)
            if failure.sop_instance_uid:
                item[REFERENCED_SOP_INSTANCE_UID] = _ui(failure.sop_instance_uid)
            item[FAILURE_REASON] = {"vr": "US", "Value": [failure.reason]}
            items.append(item)
        dataset[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": items}
    return dataset


RETRY_AFTER_SECONDS: Final = 30


def stow_status(outcome: StowOutcome) -> int:
    """200 when every instance was stored, 202 when some failed, 409 when all failed for good, 503 when all
    failed only for now (the model or the record unavailable: PS3.18 §10.5.3 "Busy"; the sender retries
    after ``Retry-After``, where a 409 would have it give up)."""
    if not outcome.failed:
        return 200
    if outcome.stored:
        return 202
    return 503 if outcome.failed_for_now else 409


def stow_response(outcome: StowOutcome) -> DicomJSONResponse:
    """The STOW-RS response: its dataset, its status and, for a 503, when to send again."""
    status = stow_status(outcome)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return DicomJSONResponse(stow_dataset(outcome), status_code=status, headers=headers)


def count_failures(outcome: StowOutcome) -> None:
    """Count each refused instance in ``dxassist_rejected_inputs_total`` by its error code."""
    for failure in outcome.failed:
        count_rejected(failure.code)
