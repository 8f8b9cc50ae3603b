"""Sending one DICOM object to a destination: C-STORE (pynetdicom) or STOW-RS (httpx).

Each sender returns on success and raises :class:`DeliveryFailed` otherwise, saying whether trying again
later can help (the destination is down, busy or out of resources) or not (it refuses the object).
Error texts name the destination, the transport and the status, never patient data.
"""

from __future__ import annotations

import json
import logging
import ssl
import uuid
from io import BytesIO
from typing import TYPE_CHECKING, Any, Final

from inference.errors import InferenceError

if TYPE_CHECKING:
    import httpx
    from pynetdicom.association import Association

    from inference.config import Destination

logger = logging.getLogger(__name__)

# 401/403: a credentials problem of the configuration, not of the object; fixed, the queue resumes.
_RETRYABLE_HTTP: Final = frozenset({401, 403, 408, 425, 429})
# Store Instances Response Module (PS3.18 Annex I), as DICOM JSON keys.
_REFERENCED_SOP_SEQUENCE: Final = "00081199"
_FAILED_SOP_SEQUENCE: Final = "00081198"
_OTHER_FAILURES_SEQUENCE: Final = "0008119A"
_REFERENCED_SOP_INSTANCE_UID: Final = "00081155"
_FAILURE_REASON: Final = "00081197"


class DeliveryFailed(InferenceError):
    """An attempt to deliver an object failed.

    Attributes:
        retryable: True when a later attempt may succeed.
        code: What went wrong, for operators and the result's ``deliveries``: ``destination_unreachable``
            (no association, connection or timeout), ``destination_busy`` (out of resources, HTTP 5xx,
            429), ``destination_unauthorized`` (HTTP 401/403: credentials of the configuration) or
            ``destination_refused`` (the destination refuses this object).
    """

    def __init__(self, message: str, *, retryable: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code or ("destination_unreachable" if retryable else "destination_refused")


def send(destination: Destination, payload: bytes, sop_class_uid: str) -> None:
    """Deliver one Part-10 object to ``destination`` (blocking; run it in a thread).

    Raises:
        DeliveryFailed: The destination did not take the object.
    """
    if destination.kind == "dimse":
        _c_store(destination, payload, sop_class_uid)
    else:
        _stow(destination, payload)


def _c_store(destination: Destination, payload: bytes, sop_class_uid: str) -> None:
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

    tls = _tls_args(destination)
    ds = dcmread(BytesIO(payload))
    ae = AE(ae_title=destination.calling_ae_title)
    ae.acse_timeout = destination.timeout_seconds
    ae.dimse_timeout = destination.timeout_seconds
    ae.network_timeout = destination.timeout_seconds
    # One presentation context per transfer syntax: the acceptor then accepts the one it decodes.
    ae.add_requested_context(sop_class_uid, ExplicitVRLittleEndian)
    ae.add_requested_context(sop_class_uid, ImplicitVRLittleEndian)
    where = f"{destination.name} ({destination.ae_title}@{destination.host}:{destination.port})"
    assoc = ae.associate(
        str(destination.host), int(destination.port or 0), ae_title=str(destination.ae_title), tls_args=tls
    )
    if not assoc.is_established:
        _refused_sop_class(assoc, where, sop_class_uid)
        # Refused, aborted or unreachable: a PACS that is down or restarting answers like this.
        raise DeliveryFailed(f"No association with {where}.", retryable=True, code="destination_unreachable")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        raise DeliveryFailed(
            f"{where} sent no C-STORE response.", retryable=True, code="destination_unreachable"
        )
    code = int(status.Status)
    category = code_to_category(code)
    if category == STATUS_SUCCESS:
        return
    if category == STATUS_WARNING:
        # A warning (0001, Bxxx, 0107 attribute list error, 0116 value out of range...) means stored,
        # with a remark (PS3.7 C.3, PS3.4 B.2.3): delivered; the code is logged for the integrator.
        logger.warning(
            "the destination stored the object with a warning status",
            extra={"event": "delivery_warning", "destination": destination.name, "status": f"0x{code:04X}"},
        )
        return
    # 0xA7xx: out of resources, try later; anything else is a refusal of this object.
    busy = (code & 0xFF00) == 0xA700
    raise DeliveryFailed(
        f"{where} answered C-STORE status 0x{code:04X}.",
        retryable=busy,
        code="destination_busy" if busy else "destination_refused",
    )


def _tls_args(destination: Destination) -> tuple[ssl.SSLContext, str] | None:
    """The TLS client context of a DIMSE destination with ``tls`` (and the host name its certificate must
    name), None without TLS.

    Raises:
        DeliveryFailed: A TLS file cannot be loaded (``destination_tls``, not retryable: the operator fixes
            the configuration, then retries the dead letters).
    """
    if not destination.tls:
        return None
    return _tls_context(destination), str(destination.host)


def _tls_context(destination: Destination) -> ssl.SSLContext:
    """A TLS client context verifying the destination against ``tls_cafile`` (else the system's
    authorities) and presenting ``tls_certfile`` when set.

    Raises:
        DeliveryFailed: A TLS file cannot be loaded (``destination_tls``, not retryable).
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if destination.tls_cafile is not None:
            context.load_verify_locations(cafile=destination.tls_cafile)
        if destination.tls_certfile is not None and destination.tls_keyfile is not None:
            context.load_cert_chain(destination.tls_certfile, destination.tls_keyfile)
    except OSError as e:  # ssl.SSLError included
        reason = e.reason if isinstance(e, ssl.SSLError) and e.reason else e.strerror
        raise DeliveryFailed(
            f"The TLS files of {destination.name} cannot be loaded ({reason or type(e).__name__}).",
            retryable=False,
            code="destination_tls",
        ) from e
    return context


def _refused_sop_class(assoc: Association, where: str, sop_class_uid: str) -> None:
    """Raise a permanent refusal when the PACS answered the association but accepted none of its contexts.

    Every context offers this object's SOP class, so a PACS that negotiated them and accepted none does
    not store this kind of object (its configuration, not its state): trying again gives the same
    answer, and the destination's later objects must not wait behind this one.

    Raises:
        DeliveryFailed: ``destination_refused`` (not retryable), naming the SOP class and the PACS's answer.
    """
    from pydicom.uid import UID

    rejected = assoc.rejected_contexts
    if not rejected or assoc.accepted_contexts:
        return
    answers = ", ".join(sorted({context.status for context in rejected}))
    name = UID(sop_class_uid).name
    kind = f"{name} ({sop_class_uid})" if name != sop_class_uid else sop_class_uid
    raise DeliveryFailed(
        f"{where} accepted no presentation context for SOP class {kind} ({answers}): the PACS does not "
        "store this kind of object. Enable the SOP class on the PACS, then retry the dead letter.",
        retryable=False,
        code="destination_refused",
    )


def _stow(destination: Destination, payload: bytes) -> None:
    import httpx

    boundary = f"dxassist-{uuid.uuid4().hex}"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    auth: httpx.Auth | None = None
    if destination.token is not None:
        headers["Authorization"] = f"Bearer {destination.token.get_secret_value()}"
    elif destination.username is not None:
        password = destination.password.get_secret_value() if destination.password is not None else ""
        auth = httpx.BasicAuth(destination.username, password)
    base = str(destination.url).rstrip("/")
    custom = destination.tls_cafile is not None or destination.tls_certfile is not None
    verify: ssl.SSLContext | bool = _tls_context(destination) if custom else True
    try:
        with httpx.Client(
            timeout=destination.timeout_seconds, trust_env=False, verify=verify, auth=auth
        ) as client:
            response = client.post(f"{base}/studies", content=body, headers=headers)
            held = response.status_code == 409 and _already_held(client, base, headers, payload)
    except httpx.HTTPError as e:
        raise DeliveryFailed(
            f"STOW-RS to {destination.name} failed: {type(e).__name__}.",
            retryable=True,
            code="destination_unreachable",
        ) from e
    if held:
        # Sent before (a timeout after the archive stored it, a worker that died before recording it):
        # Google's and Microsoft's archives answer a resend 409 instead of storing it again.
        logger.info(
            "the destination already holds the object; a resend is not stored twice",
            extra={"event": "delivery_already_held", "destination": destination.name},
        )
        return
    if response.status_code in (200, 202):
        _stored_or_raise(destination.name, response.status_code, response.content, payload)
        return
    status = response.status_code
    retryable = status >= 500 or status in _RETRYABLE_HTTP
    if status in (401, 403):
        code = "destination_unauthorized"
    else:
        code = "destination_busy" if retryable else "destination_refused"
    raise DeliveryFailed(
        f"STOW-RS to {destination.name} answered HTTP {status}.", retryable=retryable, code=code
    )


def _stored_or_raise(name: str, status: int, body: bytes, payload: bytes) -> None:
    """Return when a 200 or 202 STOW-RS answer says the object was stored; raise otherwise.

    A DICOM JSON answer with a Referenced SOP, Failed SOP or Other Failures Sequence decides (PS3.18
    Annex I): the object listed as stored is delivered; listed as failed, or a failure that names no
    instance (Other Failures: the request carried this one object), it is refused for good, or retried
    when the reason is out of resources (0xA7xx); listed in neither, it was not stored and is retried.
    Orthanc 1.10 with its DICOMweb plugin 1.7 answers 200 with both sequences empty when its storage is
    full: taken at its status, the object was marked sent, its bytes dropped, and it never reached the
    PACS. An answer without those sequences (not DICOM JSON) is judged by its status, as before: 200
    stored, 202 with a Failed SOP or Other Failures Sequence refused.

    Raises:
        DeliveryFailed: The answer does not list the object as stored.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    decisive = {_REFERENCED_SOP_SEQUENCE, _FAILED_SOP_SEQUENCE, _OTHER_FAILURES_SEQUENCE}
    if not isinstance(answer, dict) or not decisive & answer.keys():
        if status == 202 and (
            _FAILED_SOP_SEQUENCE.encode() in body or _OTHER_FAILURES_SEQUENCE.encode() in body
        ):
            raise DeliveryFailed(
                f"STOW-RS to {name} refused the object (202).", retryable=False, code="destination_refused"
            )
        return
    uid = _sop_instance_uid(payload)
    referenced = {_item_uid(item) for item in _items(answer, _REFERENCED_SOP_SEQUENCE)}
    # A server that lists what it stored without the UIDs still says it stored our only object.
    if uid in referenced or referenced == {None}:
        return
    failed = _items(answer, _FAILED_SOP_SEQUENCE) or _items(answer, _OTHER_FAILURES_SEQUENCE)
    if failed:
        # One object per request: an item naming it, else the only failure there is.
        item = next((i for i in failed if _item_uid(i) == uid), failed[0])
        reason = _failure_reason(item)
        busy = reason is not None and (reason & 0xFF00) == 0xA700
        said = f"failure reason 0x{reason:04X}" if reason is not None else "no failure reason"
        raise DeliveryFailed(
            f"STOW-RS to {name} refused the object (HTTP {status}, {said}).",
            retryable=busy,
            code="destination_busy" if busy else "destination_refused",
        )
    raise DeliveryFailed(
        f"STOW-RS to {name} answered HTTP {status} without listing the object as stored.",
        retryable=True,
        code="destination_busy",
    )


# A QIDO-RS answer naming one instance is well under this; a larger one is not read.
_MAX_QIDO_BYTES: Final = 64 * 1024


def _already_held(client: httpx.Client, base: str, headers: dict[str, str], payload: bytes) -> bool:
    """Whether the destination's QIDO-RS finds the object a STOW-RS request was refused (409) for.

    Our objects' UIDs derive from the result, and building a result again gives the same bytes, so an
    instance the archive holds under the object's study, series and instance UIDs is the object: it was
    delivered before. The three are compared in the answer: an archive that holds the SOP Instance UID
    in another study or series (a study the PACS merged or split, or a search that ignored the URL's
    study and series) does not hold the object where a viewer of the study looks for it, and the 409
    stays a refusal. An answer without the study or series UID is taken as the URL's: for a series'
    instances PS3.18 asks only the instance-level attributes (Table 10.6.3-5), and an archive answering
    so holds the object. False when the archive serves no QIDO-RS, answers anything else, or cannot be
    reached.
    """
    import httpx
    from pydicom import dcmread

    ds = dcmread(
        BytesIO(payload),
        stop_before_pixels=True,
        specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
    )
    uid = str(ds.SOPInstanceUID)
    parents = {"0020000D": str(ds.StudyInstanceUID), "0020000E": str(ds.SeriesInstanceUID)}
    url = f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances"
    query = {"Accept": "application/dicom+json"}
    if "Authorization" in headers:
        query["Authorization"] = headers["Authorization"]
    try:
        with client.stream("GET", url, params={"SOPInstanceUID": uid}, headers=query) as response:
            if response.status_code != 200:
                return False
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > _MAX_QIDO_BYTES:
                    return False
        answers = json.loads(data)
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(answers, list) and any(
        isinstance(answer, dict)
        and _first_value(answer, "00080018") == uid
        and all(_first_value(answer, tag) in (None, value) for tag, value in parents.items())
        for answer in answers
    )


def _items(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = answer.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [item for item in values if isinstance(item, dict)] if isinstance(values, list) else []


def _first_value(item: dict[str, Any], tag: str) -> object:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None


def _item_uid(item: dict[str, Any]) -> str | None:
    value = _first_value(item, _REFERENCED_SOP_INSTANCE_UID)
    return value.strip() if isinstance(value, str) else None


def _failure_reason(item: dict[str, Any]) -> int | None:
    value = _first_value(item, _FAILURE_REASON)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _sop_instance_uid(payload: bytes) -> str:
    """The SOP Instance UID of one of our Part-10 objects."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(payload), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)
