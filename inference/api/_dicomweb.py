"""The STOW-RS response: a DICOM JSON dataset (PS3.18 §10.5.3, PS3.18 Annex F) and its HTTP status; the
same dataset in the Native DICOM Model XML (PS3.19 Annex A) for a client that asks for
``application/dicom+xml``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Annotated, Any, Final

from fastapi import Header
from fastapi.responses import JSONResponse, Response

from inference.api._errors import ApiError
from inference.observability import count_rejected
from inference.services import StowOutcome

DICOM_JSON: Final = "application/dicom+json"
DICOM_XML: Final = "application/dicom+xml"
NATIVE_DICOM_MODEL: Final = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
# Media ranges of an Accept header that each representation satisfies (a wildcard: both, JSON first).
_JSON_RANGES: Final = frozenset({DICOM_JSON, "application/json", "*/*", "application/*"})
_XML_RANGES: Final = frozenset({DICOM_XML, "*/*", "application/*"})

RETRIEVE_URL: Final = "00081190"
FAILED_SOP_SEQUENCE: Final = "00081198"
REFERENCED_SOP_SEQUENCE: Final = "00081199"
OTHER_FAILURES_SEQUENCE: Final = "0008119A"
FAILURE_REASON: Final = "00081197"
REFERENCED_SOP_CLASS_UID: Final = "00081150"
REFERENCED_SOP_INSTANCE_UID: Final = "00081155"
# The keywords of the response's attributes, written beside their tags in the XML representation.
_KEYWORDS: Final = {
    RETRIEVE_URL: "RetrieveURL",
    FAILED_SOP_SEQUENCE: "FailedSOPSequence",
    REFERENCED_SOP_SEQUENCE: "ReferencedSOPSequence",
    OTHER_FAILURES_SEQUENCE: "OtherFailuresSequence",
    FAILURE_REASON: "FailureReason",
    REFERENCED_SOP_CLASS_UID: "ReferencedSOPClassUID",
    REFERENCED_SOP_INSTANCE_UID: "ReferencedSOPInstanceUID",
}


class DicomJSONResponse(JSONResponse):
    """JSON with the DICOM JSON media type."""

    media_type = DICOM_JSON


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def _reason(reason: int) -> dict[str, Any]:
    return {"vr": "US", "Value": [reason]}


def _empty_url() -> dict[str, Any]:
    return {"vr": "UR"}


def stow_dataset(outcome: StowOutcome) -> dict[str, Any]:
    """The STOW-RS response dataset (PS3.18 Table I.1-1, Store Instances Response Module).

    ``RetrieveURL`` (0008,1190) is Type 2 at the top level (the Studies Retrieve resource) and in each
    ``ReferencedSOPSequence`` item (the Instance's): always present, and empty (DICOM JSON ``{"vr": "UR"}``,
    no ``Value``) because the server analyses images without archiving them and serves no WADO-RS
    Retrieve. The client finds the analysis of each study it sent, by the Study Instance UID of its
    instances, at ``GET /v1/studies/{uid}/result``.

    A refused instance whose SOP Class and Instance UIDs were read is a ``FailedSOPSequence`` (0008,1198)
    item; a refused part that names no instance (not DICOM, over the size limit, unreadable) is an
    ``OtherFailuresSequence`` (0008,119A) item with its Failure Reason alone.
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
    # A Failed SOP Sequence item names its instance (both UIDs are Type 1, PS3.18 Table 10.5.3-3); a part
    # that is not DICOM, too large to read, or whose UIDs could not be read is an Other Failures item.
    identified: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for failure in outcome.failed:
        if failure.sop_class_uid and failure.sop_instance_uid:
            identified.append(
                {
                    REFERENCED_SOP_CLASS_UID: _ui(failure.sop_class_uid),
                    REFERENCED_SOP_INSTANCE_UID: _ui(failure.sop_instance_uid),
                    FAILURE_REASON: _reason(failure.reason),
                }
            )
        else:
            others.append({FAILURE_REASON: _reason(failure.reason)})
    if identified:
        dataset[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": identified}
    if others:
        dataset[OTHER_FAILURES_SEQUENCE] = {"vr": "SQ", "Value": others}
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


def stow_response(outcome: StowOutcome, *, accept: str | None = None) -> Response:
    """The STOW-RS response: its dataset, its status and, for a 503, when to send again.

    DICOM JSON, the default; the Native DICOM Model XML when ``accept`` prefers ``application/dicom+xml``
    (as dcm4che's ``stowrs`` asks by default), PS3.18 Table 10.5.4-1.
    """
    status = stow_status(outcome)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    dataset = stow_dataset(outcome)
    if prefers_xml(accept):
        return Response(native_xml(dataset), status_code=status, headers=headers, media_type=DICOM_XML)
    return DicomJSONResponse(dataset, status_code=status, headers=headers)


def prefers_xml(accept: str | None) -> bool:
    """Whether an ``Accept`` header ranks ``application/dicom+xml`` above DICOM JSON (a tie is JSON's)."""
    json_q, xml_q = _ranks(accept)
    return xml_q > json_q


# ``async def``: pure header parsing, no worker thread hop.
async def acceptable_stow(
    accept: Annotated[
        str | None,
        Header(description="application/dicom+json (default) or application/dicom+xml."),
    ] = None,
) -> str | None:
    """The ``Accept`` header of a STOW-RS request, refused with 406 when no response representation
    satisfies it (PS3.18 8.3.3.1: the origin server answers 406 Not Acceptable), before the body is
    read, so nothing is stored or analysed for a client that could not read the answer.

    Raises:
        ApiError: 406 ``not_acceptable`` when the header accepts neither DICOM JSON nor DICOM XML.
    """
    if accept is not None and accept.strip() and max(_ranks(accept)) <= 0.0:
        raise ApiError(
            406,
            "not_acceptable",
            "The STOW-RS response is application/dicom+json or application/dicom+xml; the Accept header "
            "allows neither. Accept one of them (or */*).",
        )
    return accept


def _ranks(accept: str | None) -> tuple[float, float]:
    """The q an ``Accept`` header gives DICOM JSON and DICOM XML (1.0 each when it is absent or empty)."""
    if accept is None or not accept.strip():
        return 1.0, 1.0
    best = {"json": 0.0, "xml": 0.0}
    for element in accept.split(","):
        media, *params = (part.strip() for part in element.split(";"))
        media, q, kind = media.lower(), 1.0, ""
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"').lower()
            if name == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
            elif name == "type":
                kind = value
        # multipart/related; type="application/dicom+xml" is PS3.18's name for the XML representation.
        if media == "multipart/related" and kind == DICOM_XML:
            media = DICOM_XML
        if media in _JSON_RANGES:
            best["json"] = max(best["json"], q)
        if media in _XML_RANGES:
            best["xml"] = max(best["xml"], q)
    return best["json"], best["xml"]


def native_xml(dataset: dict[str, Any]) -> bytes:
    """A DICOM JSON dataset as a PS3.19 Native DICOM Model document (UTF-8, with its declaration)."""
    root = ET.Element("NativeDicomModel", xmlns=NATIVE_DICOM_MODEL)
    _xml_attributes(root, dataset)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _xml_attributes(parent: ET.Element, dataset: dict[str, Any]) -> None:
    for tag in sorted(dataset):
        element = dataset[tag]
        attribute = ET.SubElement(parent, "DicomAttribute", {"tag": tag, "vr": element["vr"]})
        keyword = _KEYWORDS.get(tag)
        if keyword:
            attribute.set("keyword", keyword)
        for number, value in enumerate(element.get("Value", []), start=1):
            if element["vr"] == "SQ":
                _xml_attributes(ET.SubElement(attribute, "Item", {"number": str(number)}), value)
            else:
                ET.SubElement(attribute, "Value", {"number": str(number)}).text = str(value)


def count_failures(outcome: StowOutcome) -> None:
    """Count each refused instance in ``dxassist_rejected_inputs_total`` by its error code."""
    for failure in outcome.failed:
        count_rejected(failure.code)
