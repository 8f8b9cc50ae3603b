"""``dxassist listen``: a DICOM node (C-ECHO and C-STORE SCP) that analyses the studies a PACS sends.

Each received instance is validated and decoded on arrival (:func:`read_instance`); a refused one is
answered with a DIMSE failure status and the association stays up. An accepted one is written durably
under ``DXASSIST_HOME/incoming/<study>/<sop>.dcm`` before the success status goes out. Once a study has
been quiet for ``dimse_stable_seconds`` it is analysed by the same service as an HTTP upload
(:func:`inference.services.analyse_decoded`, which also queues its SR and heatmap captures for every
destination), and its folder is removed; a study whose patient objected to AI processing is dropped.
Folders left by a stopped listener are analysed at the next start.

Every log line of an association carries its id (``assoc-<hex>``, as ``request_id``), and each analysis
of a study its own (``analysis-<hex>``), which its audit entries carry too; the analysis's first line
names the associations that delivered the study's instances (docs/operations.md, "Correlation ids").

An analysis that fails (model not loaded, database down, a bug) is tried again with exponential backoff,
``dimse_max_attempts`` times in all; then the study's folder moves to
``DXASSIST_HOME/dead-letter/studies`` (counted in ``dxassist_dead_lettered_total{kind="study"}``, listed
by ``dxassist dead-letter list``), so ``incoming/`` holds only studies still in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom import (
    ACCEPTED_SOP_CLASSES,
    SUPPORTED_TRANSFER_SYNTAXES,
    TOO_LARGE,
    UNSUPPORTED_CONTENT,
    DicomRejected,
    Instance,
    LazyInstances,
    Limits,
    StudyCollector,
    read_instance,
    read_study,
)
from inference.dicom._stable import DEAD_STUDIES_DIR, StableStudy
from inference.dimse._connections import (
    PduStalled,
    PduTooLarge,
    framed_ssl_socket_class,
    guarded_server_class,
    peer_share,
)
from inference.dimse._identity import (
    PeerCertificate,
    audit_client,
    delivered_by,
    forget,
    peer_certificate,
    remember,
)
from inference.dimse._shared import SharedStudyCollector, instance_name
from inference.errors import InferenceError
from inference.observability import (
    MetricsExporter,
    bind_request_id,
    correlated,
    current_request_id,
    new_correlation_id,
)
from inference.observability._exporter import PATH as METRICS_PATH
from inference.record import InstanceIn, RecordError
from inference.record.fhir import audit_events

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydicom import Dataset

    from inference.config import DimseSettings, Settings
    from inference.services import Actor, Context

logger = logging.getLogger(__name__)

VERIFICATION: Final = "1.2.840.10008.1.1"
INCOMING_DIR: Final = "incoming"
LOG_FILE: Final = "listener.jsonl"

# PS3.4 C-STORE failure statuses.
OUT_OF_RESOURCES: Final = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000
_TICK_SECONDS: Final = 0.25
_RESCAN_SECONDS: Final = 2.0
# The analysis loop's longest expected round: a large study's analysis under load, with its database waits.
_STUCK_SECONDS: Final = 600.0
RECEIVING_DIR: Final = "receiving"
# PDU headers and the command set ride along with the dataset's bytes.
_FRAMING_SLACK: Final = 1 << 20
_ASSOC_ID: Final = "_dxassist_correlation_id"
_RECEIVED: Final = "_dxassist_bytes_received"  # bytes of the message in progress, on its association
# Associations remembered per study for its analysis's log line; a study sent one instance per
# association keeps the first ones only (bounded memory).
_MAX_ASSOCIATIONS: Final = 32
_REMEMBERED_STUDIES: Final = 4096
"""Studies whose delivering associations a listener remembers before it forgets those no longer in its
spool (each is a few dozen bytes)."""
_MAX_PROPOSED: Final = 32  # presentation contexts named in a log line (a peer may propose 128)


def dimse_status(error: DicomRejected) -> int:
    """The C-STORE failure status for a refused instance.

    Too large: out of resources (0xA700). Valid DICOM whose content is not a single-frame grayscale
    chest radiograph: data set does not match SOP class (0xA900). Broken or undecodable (malformed,
    unsupported media): cannot understand (0xC000).
    """
    if error.kind == TOO_LARGE:
        return OUT_OF_RESOURCES
    if error.kind == UNSUPPORTED_CONTENT:
        return DATASET_DOES_NOT_MATCH_SOP_CLASS
    return CANNOT_UNDERSTAND


NOT_AUTHORIZED: Final = 0x0124  # PS3.7 C.4.2 "Refused: Not Authorized"
_NO_TITLE: Final = " "  # no calling AE title strips to this, so a registry without nodes refuses every AE


@dataclass
class _Node:
    """What the association threads share with the analysis loop."""

    collector: StudyCollector
    limits: Limits
    target_size: int | None
    min_free: int = 0  # bytes left free on the spool's file system (dimse_min_free_bytes)
    registry: Callable[[str | None, str | None], str | None] = lambda _title, _host: None
    certified: Callable[[str | None, frozenset[str]], bool] = lambda _title, _names: True
    pinned: Callable[[str | None, str | None], bool] = lambda _title, _sha256: True
    # Audits a node refused, or accepted over mutual TLS (calling AE title, its address, the reason code,
    # the certificate it presented): see :class:`_NodeAudit`.
    refused: Callable[[str, str | None, str, PeerCertificate | None], None] = lambda *_args: None
    accepted: Callable[[str, str | None, str, PeerCertificate | None], None] = lambda *_args: None
    # Ids of the associations that delivered instances of each study in incoming/ (by folder name), and
    # the folders, to forget the studies that left it by another way (another instance analysed them).
    delivered_by: dict[str, list[str]] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, folder: Path, association: str | None) -> None:
        """Remember that ``association`` delivered an instance of the study in ``folder``.

        Memory stays bounded: past :data:`_REMEMBERED_STUDIES` studies, those whose folder is gone are
        forgotten (with studies shared between listener instances, one another instance analysed never
        comes back through :meth:`forget` here).
        """
        if association is None:
            return
        key = folder.name
        with self.lock:
            if key not in self.delivered_by and len(self.delivered_by) >= _REMEMBERED_STUDIES:
                for gone in [k for k, place in self.folders.items() if not place.exists()]:
                    self.delivered_by.pop(gone, None)
                    self.folders.pop(gone, None)
            self.folders[key] = folder
            seen = self.delivered_by.setdefault(key, [])
            if association not in seen and len(seen) < _MAX_ASSOCIATIONS:
                seen.append(association)

    def associations(self, key: str) -> list[str]:
        """The associations that delivered the study in folder ``key`` (since this listener started)."""
        with self.lock:
            return list(self.delivered_by.get(key, ()))

    def forget(self, key: str) -> None:
        """The study left ``incoming/`` (analysed, dropped or dead-lettered)."""
        with self.lock:
            self.delivered_by.pop(key, None)
            self.folders.pop(key, None)


def _association_id(assoc: Any) -> str:
    """The correlation id of an association, made at its first event (``assoc-<hex>``)."""
    found = getattr(assoc, _ASSOC_ID, None)
    if isinstance(found, str):
        return found
    made = new_correlation_id("assoc")
    # pynetdicom's Association is a plain object: the id lives and dies with it.
    setattr(assoc, _ASSOC_ID, made)
    return made


def _on_store(event: Any, node: _Node) -> int | Dataset:
    """C-STORE: validate, write durably, then answer (runs in the association's thread).

    pynetdicom has already written the dataset to a file under ``receiving/`` as it arrived
    (``STORE_RECV_CHUNKED_DATASET``), so no instance is ever held whole in memory before its size is
    known: a file over the limit is refused by its size alone, an accepted one is read once for
    validation (within the process's decode budget) and then renamed into ``incoming/``, not copied.
    """
    calling = str(event.assoc.requestor.ae_title).strip()
    with correlated(_association_id(event.assoc)):
        try:
            status, code = _store(event, node, calling)
        finally:
            setattr(event.assoc, _RECEIVED, 0)  # the next message of this association starts at zero
    return status if code is None else _failure(status, code)


def _failure(status: int, code: str) -> Dataset:
    """A C-STORE response that says why: the status and an Error Comment (0000,0902) naming the reason.

    The comment is the reason code the logs and the HTTP API use (``not_chest``, ``decode_failed``...),
    so a PACS administrator reading the sender's log can look it up in docs/pacs.md; it never quotes
    the data set (no patient data). Error Comment is LO: at most 64 characters, no backslash.
    """
    from pydicom import Dataset

    response = Dataset()
    response.Status = status
    response.ErrorComment = f"dxassist refused: {code}"[:64].replace("\\", "/")
    return response


def _store(event: Any, node: _Node, calling: str) -> tuple[int, str | None]:
    """The status to answer and, for a refusal, its reason code."""
    address = getattr(event.assoc.requestor, "address", None)
    if node.registry(calling, address) is None:
        # Association-time checks let it in, but this node may not send from this host.
        logger.warning("C-STORE refused: unregistered DICOM node", extra={"code": "unknown_node"})
        return NOT_AUTHORIZED, "unknown_node"
    certificate = peer_certificate(event.assoc)
    refusal = _certificate_refusal(node, calling, certificate)
    if refusal is not None:
        logger.warning("C-STORE refused: %s", _CERTIFICATE_REFUSALS[refusal], extra={"code": refusal})
        return NOT_AUTHORIZED, refusal
    try:
        path = _received_file(event, node)
        size = path.stat().st_size
    except (AttributeError, TypeError, ValueError, OSError):  # pynetdicom could not even frame the dataset
        logger.warning("a C-STORE dataset could not be written as a file", extra={"code": "malformed_header"})
        return CANNOT_UNDERSTAND, "malformed_header"
    peer = audit_client(address, certificate) if certificate is not None else None
    status: int
    code: str | None
    if _short_of_space(path, node.min_free):
        logger.warning(
            "C-STORE refused (storage_full), answered 0x%04X: the spool's disk is nearly full",
            OUT_OF_RESOURCES,
            extra={"event": "dimse_refused", "code": "storage_full", "bytes": size},
        )
        status, code = OUT_OF_RESOURCES, "storage_full"
    else:
        status, code = _validate_and_keep(path, size, node, calling, peer)
    if status != 0x0000:
        path.unlink(missing_ok=True)  # nothing of a refused instance is kept
    return status, code


def _check_reserve(spool: Path, reserve: int) -> None:
    """Refuse to start with a reserve the spool's whole file system cannot leave free: every C-STORE would
    be answered 0xA700 for ever, and the PACS would retry without end.

    Raises:
        CannotListen: ``DXASSIST_DIMSE_MIN_FREE_BYTES`` is not below the file system's size.
    """
    if reserve <= 0:
        return
    place = spool
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        total = shutil.disk_usage(place).total
    except OSError:
        return  # not asked, not refused: a C-STORE then finds out
    if reserve >= total:
        raise CannotListen(
            f"DXASSIST_DIMSE_MIN_FREE_BYTES ({reserve} bytes) is not below the size of the DIMSE spool's "
            f"file system ({total} bytes): every instance would be refused as storage_full. Lower it, or "
            "put the spool (DXASSIST_DIMSE_SPOOL) on a larger file system."
        )


def _short_of_space(path: Path, reserve: int) -> bool:
    """Whether the file system of ``path`` (the spool's) has less than ``reserve`` bytes free.

    The record shares it by default: filled to the last byte, nothing could be filed, not even the studies
    already received, whose filing frees their space. A file system that cannot be asked is not refused
    for it (writing the instance then fails on its own, ``storage_unavailable``).
    """
    if reserve <= 0:
        return False
    try:
        return shutil.disk_usage(path.parent).free < reserve
    except OSError:
        return False


def _certificate_refusal(node: _Node, title: str, certificate: PeerCertificate | None) -> str | None:
    """Why the node registered as ``title`` may not present ``certificate``; None when it may."""
    if not node.certified(title, certificate.names if certificate is not None else frozenset()):
        return "certificate_mismatch"
    if not node.pinned(title, certificate.sha256 if certificate is not None else None):
        return "tls_certificate_refused"
    return None


_CERTIFICATE_REFUSALS: Final = {
    "certificate_mismatch": "the node's certificate names another",
    "tls_certificate_refused": "the node presented another certificate than the one registered",
}


def _validate_and_keep(
    path: Path, size: int, node: _Node, calling: str, peer: str | None = None
) -> tuple[int, str | None]:
    """Validate a received file and move it into its study; ``peer``: the certificate identity that sent
    it (:func:`audit_client`), kept with the study for the audit entry of its filing."""
    if size > node.limits.max_instance_bytes:
        logger.warning(
            "C-STORE refused (instance_too_large), answered 0x%04X",
            OUT_OF_RESOURCES,
            extra={"event": "dimse_refused", "code": "instance_too_large", "bytes": size},
        )
        return OUT_OF_RESOURCES, "instance_too_large"
    try:
        instance = read_instance(path.read_bytes(), limits=node.limits, target_size=node.target_size)
    except DicomRejected as e:
        status = dimse_status(e)
        logger.warning(
            "C-STORE refused (%s), answered 0x%04X",
            e.code,
            status,
            extra={"event": "dimse_refused", "code": e.code},
        )
        return status, e.code
    sop = instance.sop_instance_uid
    study = instance.study_instance_uid
    del instance  # the decoded pixels are not needed any more: the file is what is kept
    try:
        kept = _move_in(node.collector, path, study=study, sop=sop, calling=calling)
    except OSError:
        logger.exception("a received instance could not be written to disk")
        return OUT_OF_RESOURCES, "storage_unavailable"
    node.delivered(kept.parent, current_request_id())
    if peer is not None:
        remember(kept.parent, peer)
    logger.info("C-STORE stored", extra={"event": "dimse_stored", "bytes": size})
    return 0x0000, None


def _move_in(collector: StudyCollector, path: Path, *, study: str, sop: str, calling: str) -> Path:
    """Move the received file ``path`` into its study's folder; return where it went.

    The folder of a study whose earlier instances were just filed is removed once empty (by the analysis
    loop, or by another listener instance on a shared spool), possibly between its making and the move
    here: the collector then makes it again (:meth:`StudyCollector.store_file`), so a late instance is
    never refused for it.

    Raises:
        OSError: The file could not be kept (the disk is full or gone).
    """
    return collector.store_file(study_instance_uid=study, sop_instance_uid=sop, source=path, sender=calling)


def _received_file(event: Any, node: _Node) -> Path:
    """The file pynetdicom wrote the dataset to; written here from memory when chunked receiving is off
    (an AE built outside :func:`listen`, as some tests do)."""
    try:
        received = event.dataset_path
    except AttributeError:
        received = None
    if received is not None:
        return Path(received)
    receiving = node.collector.incoming.parent / RECEIVING_DIR
    receiving.mkdir(parents=True, exist_ok=True)
    path = receiving / f"{uuid.uuid4().hex}.dcm"
    path.write_bytes(event.encoded_dataset(include_meta=True))
    return path


def _on_data(event: Any, node: _Node) -> None:
    """Count the bytes of the message being received; abort the association once it passes the limit.

    This runs for every PDU as it arrives, so an instance larger than ``max_instance_bytes`` is stopped
    while it is being sent, before it fills the disk (pynetdicom writes it to ``receiving/``).
    """
    with correlated(_association_id(event.assoc)):
        _count_data(event, node)


def _count_data(event: Any, node: _Node) -> None:
    # Kept on the association itself: counts keyed by id() outlived an association cut mid-message, and a
    # later association given the same id() started from that count (a valid instance then "too large").
    total = getattr(event.assoc, _RECEIVED, 0) + len(event.data)
    setattr(event.assoc, _RECEIVED, total)
    if total > node.limits.max_instance_bytes + _FRAMING_SLACK:
        setattr(event.assoc, _RECEIVED, 0)
        logger.warning(
            "association aborted: an instance larger than the limit was being sent",
            extra={"event": "dimse_refused", "code": "instance_too_large", "bytes": total},
        )
        event.assoc.abort(block=False)
        # The partial file pynetdicom was writing (a private attribute: the periodic sweep of
        # receiving/ is the fallback should it move).
        message = getattr(getattr(event.assoc, "dimse", None), "message", None)
        partial = getattr(message, "_data_set_path", None)
        if partial is not None:
            with contextlib.suppress(OSError):
                Path(partial).unlink()


def _on_established(event: Any, node: _Node) -> None:
    """Abort an association from a registered AE title but another host than the one registered, or
    over TLS with a certificate that does not name the node registered under that AE title, or is not
    the one certificate registered for it; audit one accepted over mutual TLS with its certificate."""
    requestor = event.assoc.requestor
    title = str(requestor.ae_title).strip()
    address = getattr(requestor, "address", None)
    certificate = peer_certificate(event.assoc)
    with correlated(_association_id(event.assoc)):
        if node.registry(title, address) is None:
            logger.warning(
                "association aborted: DICOM node from an unregistered host", extra={"code": "unknown_node"}
            )
            event.assoc.abort()
            node.refused(title, address, "unknown_node", certificate)
        elif (refusal := _certificate_refusal(node, title, certificate)) is not None:
            logger.warning("association aborted: %s", _CERTIFICATE_REFUSALS[refusal], extra={"code": refusal})
            event.assoc.abort()
            node.refused(title, address, refusal, certificate)
        else:
            if certificate is not None:
                node.accepted(title, address, "accepted", certificate)
            if not event.assoc.accepted_contexts:
                _nothing_supported(event.assoc)


def _nothing_supported(assoc: Any) -> None:
    """Log an association whose every presentation context was rejected: the node can send nothing on it,
    and the operator needs to know what it proposed (SOP class and transfer syntax UIDs, no patient data)
    to tell its administrator what the listener takes instead (docs/pacs.md)."""
    proposed = sorted(
        {f"{cx.abstract_syntax} {syntax}" for cx in assoc.rejected_contexts for syntax in cx.transfer_syntax}
    )
    logger.warning(
        "association accepted, but the node proposed no SOP class and transfer syntax the listener "
        "supports; it proposed (SOP class, transfer syntax): %s",
        ", ".join(proposed[:_MAX_PROPOSED]),
        extra={"code": "no_presentation_context"},
    )


def _on_rejected(event: Any, node: _Node) -> None:
    """Audit an association refused because its calling AE title is not a registered node."""
    requestor = event.assoc.requestor
    title = str(requestor.ae_title).strip()
    address = getattr(requestor, "address", None)
    if node.registry(title, address) is None:
        with correlated(_association_id(event.assoc)):  # the entry carries the association's id
            node.refused(title, address, "unknown_node", peer_certificate(event.assoc))


# The association's life in the log: the calling AE title and the address are not written (a node's
# title can be a ward's or a person's name); the id links the lines of one association.
_LIFECYCLE: Final = {
    "accepted": (logging.INFO, "association accepted"),
    "refused": (logging.WARNING, "association refused (A-ASSOCIATE-RJ)"),
    "released": (logging.INFO, "association released"),
    "aborted": (logging.WARNING, "association aborted"),
}


def _on_requested(event: Any) -> None:
    """Bind the association's id for the rest of its thread's life (A-ASSOCIATE-RQ, its first event).

    pynetdicom runs each association in a thread of its own, which dies with it, so the binding is never
    undone: lines logged outside our handlers (pynetdicom's own warnings) carry the id too.
    """
    bind_request_id(_association_id(event.assoc))


def _on_lifecycle(event: Any, what: str) -> None:
    """Log an association's acceptance, refusal, release or abort under its id."""
    level, message = _LIFECYCLE[what]
    with correlated(_association_id(event.assoc)):
        logger.log(level, message, extra={"event": f"association_{what}"})


def _make_ae(ae_title: str, dimse: DimseSettings, node: _Node) -> tuple[Any, list[Any]]:
    from pynetdicom import AE, evt

    ae = AE(ae_title=ae_title)
    ae.add_supported_context(VERIFICATION)
    for sop_class in sorted(ACCEPTED_SOP_CLASSES):
        ae.add_supported_context(sop_class, sorted(SUPPORTED_TRANSFER_SYNTAXES))
    if dimse.dimse_open_facility is None:
        # Only registered nodes may associate: an unknown calling AE gets A-ASSOCIATE-RJ (calling AE title
        # not recognised). pynetdicom treats an empty list as "any", so no node at all means a title that
        # nobody can send.
        titles = [n.ae_title.strip() for n in dimse.dimse_nodes]
        ae._require_calling_aet = titles or [_NO_TITLE]  # the setter refuses the impossible title
    # Decoding a large radiograph takes a moment: do not drop a sender waiting for its C-STORE response.
    ae.dimse_timeout = 120
    ae.network_timeout = dimse.dimse_network_timeout
    # Connections over the bounds are closed on arrival (_connections); none reaches this one.
    ae.maximum_associations = dimse.dimse_max_associations
    handlers = [
        (evt.EVT_C_STORE, _on_store, [node]),
        (evt.EVT_ESTABLISHED, _on_established, [node]),
        (evt.EVT_DATA_RECV, _on_data, [node]),
        (evt.EVT_REQUESTED, _on_requested),
        (evt.EVT_ACCEPTED, _on_lifecycle, ["accepted"]),
        (evt.EVT_REJECTED, _on_lifecycle, ["refused"]),
        (evt.EVT_REJECTED, _on_rejected, [node]),
        (evt.EVT_RELEASED, _on_lifecycle, ["released"]),
        (evt.EVT_ABORTED, _on_lifecycle, ["aborted"]),
    ]
    return ae, handlers


async def _analyse(ctx: Context, study: StableStudy) -> bool:
    """Analyse one stable study; True when its folder may be removed.

    Filing the result also queues its SR and heatmap captures for every destination (in the service,
    as for uploads and STOW-RS). A study whose patient objected to AI processing is dropped: the
    objection stands until withdrawn, so trying again would only repeat the refusal; so is one the
    service refuses (a patient under 18, an image smaller than the model's input), as a lateral-only one.

    Instances of a study the record holds a result of (they came after its folder was analysed and
    removed) join that study: see :func:`_result_stands`.
    """
    from inference.record import Conflict, ConsentObjection, InvalidData
    from inference.services import analyse_decoded

    served = ctx.host.imaging
    # Read one file at a time as the study is decoded, not all of them up front.
    blobs = LazyInstances(study.files, Path.read_bytes)
    try:
        decoded = await ctx.workers.run(
            read_study, blobs, limits=ctx.limits, target_size=served.imaging_meta.input_size
        )
    except DicomRejected as e:
        # Every instance was valid on arrival; the study as a whole is not analysable (lateral only, ...).
        actor = await _actor(ctx, study) if e.code == _NO_FRONTAL else None
        headers = await asyncio.to_thread(_headers_of, study.files) if actor is not None else None
        if actor is not None and headers is not None:
            study_uid, instances, patient = headers
            if await _result_stands(
                ctx, actor, study_instance_uid=study_uid, instances=instances, frontal=None, patient=patient
            ):
                return True
        logger.warning(
            "a received study cannot be analysed (%s)", e.code, extra={"event": "dimse_study", "code": e.code}
        )
        return True
    actor = await _actor(ctx, study)
    if actor is None:
        # Registered when it was received, not any more: nobody may own it, so it is not filed.
        logger.warning(
            "a received study was dropped: its DICOM node is no longer registered",
            extra={"event": "dimse_study", "code": "unknown_node"},
        )
        return True
    frontal = decoded.primary.view_position or ""
    named = decoded.primary.patient
    if await _result_stands(
        ctx,
        actor,
        study_instance_uid=decoded.study_instance_uid,
        instances=tuple(_instance_in(instance) for instance in decoded.instances),
        frontal=frontal,
        patient=(named.patient_id, named.issuer),
    ):
        return True

    async def judge_scored(view: Instance, assessable: bool) -> None:
        # The view scored, when the one chosen by its tag was refused as not assessable (a lateral film
        # tagged PA), is what the study's standing result is superseded by or not: judged again by it;
        # a view the model refused (none of theirs assessable) supersedes nothing.
        if assessable and view.sop_instance_uid == decoded.primary.sop_instance_uid:
            return
        if await _result_stands(
            ctx,
            actor,
            study_instance_uid=decoded.study_instance_uid,
            instances=tuple(_instance_in(instance) for instance in decoded.instances),
            frontal=view.view_position or "" if assessable else None,
            patient=(named.patient_id, named.issuer),
            outcome=None if assessable else _NOT_ASSESSABLE,
        ):
            raise _ResultStood

    try:
        await analyse_decoded(
            ctx=ctx,
            actor=actor,
            study=decoded,
            source="dimse",
            accept_language=None,
            served=served,
            scored=judge_scored,
        )
    except _ResultStood:
        return True  # the instances joined the study; its result stands (logged as such)
    except DicomRejected as e:
        # Refused by the service before any pixel is scored (a child's film, an image smaller than the
        # model's input): as final as a refusal of the header, so not a failure to try again.
        logger.warning(
            "a received study cannot be analysed (%s)", e.code, extra={"event": "dimse_study", "code": e.code}
        )
        return True
    except ConsentObjection as e:
        # The service wrote the refusal to the audit trail; the log names no patient.
        logger.warning(
            "a received study was dropped: the patient objected to AI processing",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    except Conflict as e:
        # Not a resend (another facility's UIDs, other pixels): audited by the service; retrying repeats it.
        logger.warning(
            "a received study was dropped: it conflicts with what the record holds",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    except InvalidData as e:
        # A value the record cannot hold (an issuer too long once upper-cased): retrying repeats it.
        logger.warning(
            "a received study was dropped: a value does not fit the record",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    # Filed with a pending build of its outputs in the same transaction: the outbox worker builds them.
    return True


_NO_FRONTAL: Final = "no_frontal_view"
_NOT_ASSESSABLE: Final = "not_assessable"


class _ResultStood(InferenceError):
    """The view a late study's analysis scored ranks below the view of the study's standing result: the
    instances joined the study (:func:`_result_stands`) and nothing is filed of the analysis."""


async def _actor(ctx: Context, study: StableStudy) -> Actor | None:
    """Who files ``study``: its node, for the node's facility (as a facility-bound pacs token would), with
    the certificate(s) that delivered it over mutual TLS; None when the node is no longer registered."""
    from inference.security import Principal
    from inference.services import Actor

    facility = ctx.settings.dimse.node_facility(study.sender)
    if facility is None:
        return None
    return Actor(
        Principal(subject=f"dimse:{study.sender or 'unknown'}", role="pacs", facility=facility),
        client=await asyncio.to_thread(delivered_by, study.folder),
    )


def _instance_in(instance: Instance) -> InstanceIn:
    """A decoded instance as the record files it."""
    return InstanceIn(
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        series_instance_uid=instance.series_instance_uid,
        modality=instance.modality,
        view_position=instance.view_position,
        pixel_digest=instance.pixel_digest or None,
    )


def _headers_of(
    files: tuple[Path, ...],
) -> tuple[str, tuple[InstanceIn, ...], tuple[str, str | None]] | None:
    """The Study Instance UID, the instances (as the record files them, their Pixel Data digested as
    :func:`inference.dicom.read_instance` digests it) and the patient (Patient ID, Issuer of Patient ID)
    of a study's files, which were each read whole and found valid on arrival (the folder is its
    study's); None when one cannot be read, or they name more than one study or patient."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    def text(ds: Dataset, keyword: str) -> str:
        return str(ds.get(keyword) or "").strip()

    studies = set()
    patients = set()
    instances = []
    try:
        for path in files:
            ds = dcmread(path)
            studies.add(text(ds, "StudyInstanceUID"))
            patients.add((text(ds, "PatientID"), text(ds, "IssuerOfPatientID") or None))
            instances.append(
                InstanceIn(
                    sop_instance_uid=text(ds, "SOPInstanceUID"),
                    sop_class_uid=text(ds, "SOPClassUID"),
                    series_instance_uid=text(ds, "SeriesInstanceUID"),
                    modality=text(ds, "Modality").upper(),
                    view_position=text(ds, "ViewPosition").upper() or None,
                    pixel_digest=hashlib.sha256(ds.PixelData).hexdigest(),
                )
            )
            del ds
    except (InvalidDicomError, AttributeError, TypeError, ValueError, EOFError, OSError):
        return None
    if len(studies) != 1 or len(patients) != 1:
        return None
    return studies.pop(), tuple(instances), patients.pop()


async def _result_stands(
    ctx: Context,
    actor: Actor,
    *,
    study_instance_uid: str,
    instances: tuple[InstanceIn, ...],
    frontal: str | None,
    patient: tuple[str, str | None],
    outcome: str | None = None,
) -> bool:
    """Whether instances of a study that arrived after it was analysed leave its result as it is; they
    then join the study in the record.

    A PACS may send an instance of a study after the study's quiet period, once its folder was analysed
    and removed (a view taken later, a series forwarded late). Those instances belong to the study the
    record already holds a result of (for this node's facility), and are judged as if they had come with
    it: the view analysed is the best frontal view of them all (:func:`inference.dicom.select_frontal`).
    So the result stands (nothing is refused, no result filed) when they hold no frontal view (a lateral
    only: ``frontal`` None) or only one of a lower rank than the view the result analysed (an AP after a
    PA): the instances are filed in the study, without a result of their own (its FHIR ImagingStudy
    counts and lists them, as the PACS holds them), and the result and its SR are left as they are. A
    frontal of the same or a higher rank (a retake, a PA after an AP) is analysed, and its result
    supersedes the earlier one (its SR names the earlier SR). Instances the record holds already in the
    study with the same pixels (a resend) are judged likewise, and not filed twice. Instances filed under
    another study or with other pixels, or naming another patient than the study's, are analysed as
    before: filing them is refused as a conflict, audited and logged, and nothing of the study's patient
    is read for them.

    The record is read for the node and the instances filed in one transaction, audited
    ``studies:submit`` on the study's result (the read) and on its ImagingStudy (the instances filed).

    Args:
        instances: The instances that arrived.
        frontal: View Position of the frontal view judged (empty when not given; the best one by its
            tag, then the one the analysis scored when the model refused that one); None: none.
        patient: The Patient ID and Issuer of Patient ID (None: not given) they name.
        outcome: Why it stands, as logged (default: ``no_frontal_view`` when ``frontal`` is None, else
            ``lower_ranked_view``; ``not_assessable``: the model refused every frontal view of theirs).

    Raises:
        RecordError: The record could not be read or written (the study is tried again later).
    """
    from inference.services import join_analysed

    analysed = await join_analysed(
        ctx,
        actor,
        study_instance_uid=study_instance_uid,
        instances=instances,
        frontal=frontal,
        patient=patient,
    )
    if analysed is None:
        return False
    outcome = outcome or (_NO_FRONTAL if frontal is None else "lower_ranked_view")
    logger.info(
        "instances of a study analysed before arrived; its result stands (%s)",
        {
            _NO_FRONTAL: "no frontal view among them",
            _NOT_ASSESSABLE: "the model could not assess their views",
        }.get(outcome, "the view it analysed ranks above theirs"),
        extra={
            "event": "dimse_study",
            "code": "already_analysed",
            "outcome": outcome,
            "result_id": analysed.result_id,
            "instances": len(analysed.joined),
        },
    )
    return True


class _NodeAudit:
    """Audits a refused DICOM node (IHE ATNA's node-authentication failure), or one accepted over mutual
    TLS: ``dimse:associate``, outcome ``denied`` (``success``), the calling AE title as subject
    (``dimse:<title>``), the address as client (with the certificate the peer presented over TLS:
    :func:`audit_client`), the reason code (``accepted``) as resource id, and the facility of the node
    whose title was claimed (its auditor sees who tried to send as its node; None for an unknown title:
    admins and facility-less auditors).

    At most one entry every ``every`` seconds per (registered title, peer, certificate, reason): a sender
    retrying in a loop must not grow the append-only trail without bound (the log keeps every refusal),
    and a certificate not seen before is recorded at its first association. Titles nobody registered, and
    IPv6 addresses within a /64, are the sender's free choice: they count as one (the entry names the
    first one tried), or a peer cycling through them would write an entry per association. A certificate
    is not (the authorities signed it): each counts apart, under an unregistered title too, where it is
    the sender's only identity (an open listener). A trail that cannot be written is logged; the
    association goes on (or is refused) either way.
    """

    def __init__(
        self,
        record: Any,
        registry: Callable[[str | None, str | None], str | None],
        *,
        registered: frozenset[str] = frozenset(),
        outcome: str = "denied",
        every: float = 60.0,
    ) -> None:
        self._record = record
        self._registry = registry
        self._registered = registered
        self._outcome = outcome
        self._every = every
        self._last: dict[tuple[str, str, str | None, str], float] = {}
        self._lock = threading.Lock()

    def __call__(
        self, title: str, address: str | None, code: str, certificate: PeerCertificate | None = None
    ) -> None:
        client = audit_client(address, certificate)
        known = title if title in self._registered else ""
        key = (
            known,
            peer_share(address or ""),
            certificate.sha256 if certificate is not None else None,
            code,
        )
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._every) < self._every:
                return
            if len(self._last) > 4096:  # addresses are many: bound what is remembered
                self._last.clear()
            self._last[key] = now
        try:
            self._record.audit.append(
                subject=f"dimse:{title or 'unknown'}"[:128],
                role="pacs",
                facility=self._registry(title, None),
                action=audit_events.NODE_REFUSED,
                resource_type="DicomNode",
                resource_id=code,
                patient_id=None,
                outcome=self._outcome,
                client=client,
            )
        except RecordError:
            logger.warning("a DICOM node could not be audited", extra={"code": "audit_unavailable"})


class CannotListen(InferenceError):
    """``dxassist listen`` cannot start: its DICOM or metrics address cannot be bound (a port in use, a
    foreign host), or its TLS certificate, key or authorities cannot be loaded."""


class _HandshakeInAssociation(ssl.SSLContext):
    """A server context whose sockets do their TLS handshake in the association's own thread.

    pynetdicom wraps each accepted connection in its accept loop, where the default handshake-on-wrap
    would wait for the client: one connection that sends nothing would stop every other node from
    associating. The handshake is deferred to the association's first read (OpenSSL negotiates it then),
    in the thread pynetdicom runs for that association, under the bounds of :mod:`._connections` (its
    sockets are :class:`_FramedSSLSocket`: a handshake that stalls is cut off like a PDU that does).
    """

    sslsocket_class = framed_ssl_socket_class()

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )


_PDU_CUT: Final = "Connection closed before the entire PDU was received"


class _TransportFailures(logging.Filter):
    """One WARNING line with a code for a connection that failed below DICOM (TLS, framing, a cut).

    pynetdicom logs each such connection (a plain client on a TLS port, no certificate or a foreign one, a
    port probe, a peer gone or stalled in the middle of a PDU, a PDU over the size the listener reads) as
    two ERROR records with a traceback, from the association's read: noise an operator would be paged
    for. Attached to ``pynetdicom.dul`` while the listener runs; other records pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _PDU_CUT and not record.exc_info:
            return False  # the record with the exception follows and is reported below
        error = record.exc_info[1] if record.exc_info else None
        if error is None or record.msg is not error:  # not LOGGER.exception(exc) of a failed read
            return True
        if isinstance(error, ssl.SSLError):
            message, code = "a connection failed its TLS handshake; no association", "tls_handshake_failed"
        elif isinstance(error, PduStalled):
            message, code = "a connection stalled in the middle of a PDU and was closed", "connection_stalled"
        elif isinstance(error, PduTooLarge):
            message, code = "a connection announced a PDU too large to read and was closed", "pdu_too_large"
        else:
            message, code = "a connection closed in the middle of a PDU", "connection_lost"
        logger.warning(message, extra={"code": code})
        return False


def _tls_context(dimse: DimseSettings) -> ssl.SSLContext | None:
    """The listener's TLS server context (DICOM TLS, BCP 195: TLS 1.2 or newer), None without TLS.

    With ``dimse_tls_cafile`` a sending node must present a certificate that chains to it.

    Raises:
        CannotListen: A file is missing or unreadable, or the key does not match the certificate.
    """
    if dimse.dimse_tls_certfile is None or dimse.dimse_tls_keyfile is None:
        return None
    context = _HandshakeInAssociation(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(dimse.dimse_tls_certfile, dimse.dimse_tls_keyfile)
        if dimse.dimse_tls_cafile is not None:
            context.load_verify_locations(cafile=dimse.dimse_tls_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except OSError as e:  # ssl.SSLError included
        # The library's reason (a missing file, a key that does not match), never a certificate's content.
        reason = e.reason if isinstance(e, ssl.SSLError) and e.reason else e.strerror
        raise CannotListen(
            "The DICOM listener's TLS certificate, key or authorities cannot be loaded "
            f"({reason or type(e).__name__})."
        ) from e
    return context


async def listen(
    settings: Settings,
    *,
    ae_title: str = "DXASSIST",
    port: int | None = None,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the DICOM listener, the study analysis loop and the outbox worker until ``stop`` is set.

    Args:
        settings: Process settings (``DXASSIST_HOME``, limits, PACS settings).
        ae_title: The listener's AE title (the called AE title senders use).
        port: TCP port; ``dimse_port`` of the PACS settings when None.
        host: Address to bind (loopback by default).
        stop: Set it to stop; SIGINT and SIGTERM set it when None.
        metrics_port: Port of ``GET /metrics`` on ``dimse_metrics_host``; ``dimse_metrics_port`` when
            None, and none served when that is None too.

    Raises:
        CannotListen: The DICOM or the metrics address cannot be bound (a port in use), or the TLS
            certificate, key or authorities cannot be loaded.
    """
    dimse = settings.dimse
    port = dimse.dimse_port if port is None else port
    metrics_port = dimse.dimse_metrics_port if metrics_port is None else metrics_port
    # Loaded and bound before anything starts, so a bad file or a port in use stops it at once.
    _check_reserve(settings.listener_spool, dimse.dimse_min_free_bytes)
    tls = _tls_context(dimse)
    exporter = None
    if metrics_port is not None:
        try:
            exporter = MetricsExporter(dimse.dimse_metrics_host, metrics_port)
        except OSError as e:
            raise CannotListen(
                f"The listener's metrics cannot be served on {dimse.dimse_metrics_host}:{metrics_port} "
                f"({e.strerror or type(e).__name__})."
            ) from e
    quiet = _TransportFailures()
    logging.getLogger("pynetdicom.dul").addFilter(quiet)
    try:
        await _listen(
            settings, ae_title=ae_title, port=port, host=host, stop=stop, exporter=exporter, tls=tls
        )
    finally:
        logging.getLogger("pynetdicom.dul").removeFilter(quiet)
        if exporter is not None:
            await asyncio.to_thread(exporter.stop)


class _Health:
    """What ``GET /healthz`` of the listener's metrics port checks (Kubernetes probes it).

    Unhealthy when the DICOM acceptor's thread has ended (no association can start), or when the loop that
    analyses received studies has shown no progress (a tick, a study done) for :data:`_STUCK_SECONDS`: a
    loop stuck that long holds every received study.
    """

    def __init__(self, acceptor: threading.Thread) -> None:
        self._acceptor = acceptor
        self._beat = time.monotonic()

    def beat(self, now: float) -> None:
        self._beat = now

    def problem(self) -> str | None:
        if not self._acceptor.is_alive():
            return "the DICOM acceptor has stopped: no association can start"
        stuck = time.monotonic() - self._beat
        if stuck > _STUCK_SECONDS:
            return f"the analysis of received studies has not come round for {stuck:.0f} s"
        return None


async def _listen(
    settings: Settings,
    *,
    ae_title: str,
    port: int,
    host: str,
    stop: asyncio.Event | None,
    exporter: MetricsExporter | None,
    tls: ssl.SSLContext | None,
) -> None:
    from inference.services import open_context

    dimse = settings.dimse
    stop = stop if stop is not None else _stop_on_signals()
    spool = settings.listener_spool
    shared = dimse.dimse_grouping == "database"
    owner = instance_name() if shared else None
    receiving = spool / RECEIVING_DIR
    if owner is not None:
        # Instances share the spool, not their partial transfers: each cleans only its own at start.
        receiving = receiving / owner
    _receive_to_disk(receiving)
    # The same engines as the HTTP API, the outbox worker included (it stops before the models).
    async with open_context(settings) as ctx:
        collector: StudyCollector
        if owner is not None:
            collector = SharedStudyCollector(
                spool / INCOMING_DIR,
                quiet_seconds=dimse.dimse_stable_seconds,
                claims=ctx.record.dimse_studies,
                owner=owner,
                lease_seconds=dimse.dimse_lease_seconds,
            )
            logger.info("DICOM listener instance %s shares its spool and grouping", owner)
        else:
            collector = StudyCollector(spool / INCOMING_DIR, quiet_seconds=dimse.dimse_stable_seconds)
        recovered = await asyncio.to_thread(collector.recover)
        if recovered:
            logger.info("%d received studies from a previous run will be analysed", len(recovered))
        try:
            target = ctx.host.imaging.imaging_meta.input_size
        except Exception:  # no model yet: decode at full resolution on arrival
            target = None
        titles = frozenset(n.ae_title.strip() for n in dimse.dimse_nodes)
        node = _Node(
            collector=collector,
            limits=ctx.limits,
            target_size=target,
            min_free=dimse.dimse_min_free_bytes,
            registry=dimse.node_facility,
            certified=dimse.node_certified,
            pinned=dimse.node_pinned,
            refused=_NodeAudit(ctx.record, dimse.node_facility, registered=titles),
            # Once an hour per node, address and certificate: a new certificate at its first association.
            accepted=_NodeAudit(
                ctx.record, dimse.node_facility, registered=titles, outcome="success", every=3600.0
            ),
        )
        if dimse.dimse_allowed_aets:
            logger.warning(
                "DXASSIST_DIMSE_ALLOWED_AETS is no longer used: register each node with its facility in "
                "DXASSIST_DIMSE_NODES",
                extra={"code": "deprecated_setting"},
            )
        ae, handlers = _make_ae(ae_title, dimse, node)
        try:
            server = ae.make_server(
                (host, port),
                evt_handlers=handlers,
                ssl_context=tls,
                # A failed handshake is a node-authentication failure too (no AE title known yet).
                server_class=guarded_server_class(
                    dimse, on_handshake_failure=lambda address, code: node.refused("", address, code, None)
                ),
            )
        except OSError as e:
            raise CannotListen(
                f"The DICOM listener cannot listen on {host}:{port} ({e.strerror or type(e).__name__})."
            ) from e
        acceptor = threading.Thread(target=server.serve_forever, name="dxassist-dimse-accept", daemon=True)
        acceptor.start()
        health = _Health(acceptor)
        logger.info(
            "DICOM listener %s on %s:%d (C-ECHO, C-STORE%s)",
            ae_title,
            host,
            port,
            ", TLS only" if dimse.dimse_tls else "",
            extra={"event": "listening"},
        )
        if exporter is not None:
            exporter.start(health=health.problem)
            logger.info(
                "listener metrics on %s:%d%s",
                dimse.dimse_metrics_host,
                exporter.port,
                METRICS_PATH,
                extra={"event": "metrics_listening"},
            )
        retry = _Retry(
            max_attempts=dimse.dimse_max_attempts,
            base=dimse.dimse_retry_seconds,
            cap=settings.delivery.delivery_backoff_cap_seconds,
            dead_root=spool / DEAD_STUDIES_DIR,
        )
        rescanned = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                health.beat(now)
                try:
                    if now - rescanned >= _RESCAN_SECONDS:
                        # Studies an operator released from the dead-letter folder.
                        await asyncio.to_thread(collector.rescan)
                        await asyncio.to_thread(
                            _sweep_spool, spool / RECEIVING_DIR, own=receiving if owner else None
                        )
                        rescanned = now
                    while not stop.is_set() and (studies := await asyncio.to_thread(collector.stable)):
                        for study in studies:
                            await _process(ctx, collector, study, retry, node=node)
                            health.beat(time.monotonic())
                except RecordError:
                    # The database holding the shared grouping state is down: the files stay in the spool,
                    # claims that are not renewed run out, and the next tick tries again.
                    logger.warning(
                        "the shared grouping state of received studies could not be read or written",
                        exc_info=True,
                        extra={"code": "grouping_unavailable"},
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=_TICK_SECONDS)
        finally:
            await asyncio.to_thread(server.shutdown)
            logger.info("DICOM listener stopped", extra={"event": "shutdown"})


@dataclass(frozen=True)
class _Retry:
    """How often, and how long apart, a failing study is analysed before it becomes a dead letter."""

    max_attempts: int
    base: float
    cap: float
    dead_root: Path


async def _process(
    ctx: Context, collector: StudyCollector, study: StableStudy, retry: _Retry, *, node: _Node | None = None
) -> None:
    """Analyse a stable study under a fresh analysis id (its log lines and audit entries carry it).

    A listener sharing its studies with other instances renews its claim while the analysis runs.
    """
    associations = node.associations(study.key) if node is not None else []
    keeper = asyncio.create_task(_keep(collector, study)) if collector.lease_seconds else None
    with correlated(new_correlation_id("analysis")):
        logger.info(
            "analysing a received study",
            extra={"event": "dimse_analysis", "instances": len(study.files), "associations": associations},
        )
        try:
            remove = await _analyse(ctx, study)
        except Exception as e:  # model not loaded, database down, a bug: keep the files, try again later
            await _stop_keeping(keeper)
            await asyncio.to_thread(_failed, collector, study, retry, e)
        else:
            await _stop_keeping(keeper)
            await asyncio.to_thread(collector.done, study, remove=remove)
            if remove:
                await asyncio.to_thread(forget, study.folder)  # the certificates that delivered it
    if node is not None and not study.folder.exists():
        node.forget(study.key)


async def _keep(collector: StudyCollector, study: StableStudy) -> None:
    """Renew this instance's claim on ``study`` while it is analysed (every third of the lease)."""
    interval = (collector.lease_seconds or 60.0) / 3
    while True:
        await asyncio.sleep(interval)
        try:
            held = await asyncio.to_thread(collector.keep, study)
        except RecordError:
            logger.warning("the claim on a study being analysed could not be renewed", exc_info=True)
            continue
        if not held:
            # Its lease ran out (the database was unreachable for longer than it): another instance may
            # analyse it too; the record's idempotency files one result for the same instances.
            logger.warning("the claim on a study being analysed was lost", extra={"code": "claim_lost"})
            return


async def _stop_keeping(keeper: asyncio.Task[None] | None) -> None:
    if keeper is None:
        return
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper


def _failed(collector: StudyCollector, study: StableStudy, retry: _Retry, error: Exception) -> None:
    """Count a failed analysis; retry with backoff, or move the study to the dead-letter folder."""
    from inference.delivery import backoff
    from inference.delivery._worker import error_code
    from inference.observability import count_dead_lettered, count_retry

    code = error_code(error, "analysis_failed")
    try:
        attempts = collector.count_attempt(study)
    except OSError:  # the disk is full or gone: the files stay, the next try counts again
        attempts = 1
    if attempts < retry.max_attempts:
        delay = backoff(attempts, base=retry.base, cap=retry.cap)
        logger.warning(
            "a received study could not be analysed now; it is kept and tried again (%s)",
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
            extra={"event": "study_retry", "code": code, "attempts": attempts, "retry_in_seconds": delay},
        )
        count_retry("study", code)
        collector.retry_later(study, delay=delay)
        return
    reason = {
        "code": code,
        "error": f"The analysis failed ({type(error).__name__}); gave up after {attempts} attempts.",
        "attempts": attempts,
        "dead_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        collector.quarantine(study, retry.dead_root, reason)
    except OSError:
        logger.exception("a failing study could not be moved to the dead-letter folder")
        collector.retry_later(study, delay=retry.cap)
        return
    count_dead_lettered("study", code)
    logger.error(
        "a received study moved to the dead-letter folder; `dxassist dead-letter retry` analyses it again",
        exc_info=(type(error), error, error.__traceback__),
        extra={"event": "study_dead", "code": code, "attempts": attempts},
    )


def _receive_to_disk(receiving: Path) -> None:
    """Make pynetdicom write each incoming dataset to a file under ``receiving`` as it arrives.

    ``receiving`` is beside ``incoming`` (same file system), so an accepted file is renamed into its
    study's folder. Files left by a previous run (an association cut mid-transfer) are removed.
    """
    from pynetdicom import _config

    receiving.mkdir(parents=True, exist_ok=True)
    for leftover in receiving.iterdir():
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    # pynetdicom names its files with tempfile; this process is the listener, so its temporary files
    # may all live there.
    tempfile.tempdir = str(receiving)


def _sweep(receiving: Path, *, idle_seconds: float = 150.0) -> None:
    """Remove partial files of transfers that stopped (aborted associations leave them behind)."""
    cutoff = time.time() - idle_seconds
    with contextlib.suppress(OSError):
        for path in receiving.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()


def _sweep_spool(receiving: Path, *, own: Path | None, idle_seconds: float = 150.0) -> None:
    """Sweep ``receiving`` (one listener), or every instance's folder in it (shared spool, ``own`` being
    this instance's): a file whose transfer stopped is old whoever wrote it.

    On a shared spool each instance also marks its own folder as alive (and recreates it should another
    have removed it), and removes the empty folders of instances gone for ``idle_seconds``: every pod
    restart brings a new instance name, and their folders would pile up otherwise.
    """
    if own is None:
        _sweep(receiving, idle_seconds=idle_seconds)
        return
    with contextlib.suppress(OSError):
        own.mkdir(parents=True, exist_ok=True)
        os.utime(own)
    cutoff = time.time() - idle_seconds
    with contextlib.suppress(OSError):
        for folder in receiving.iterdir():
            if not folder.is_dir():
                continue
            _sweep(folder, idle_seconds=idle_seconds)
            if folder != own:
                with contextlib.suppress(OSError):
                    if folder.stat().st_mtime < cutoff:
                        folder.rmdir()  # only when empty: a live instance's folder is touched every sweep


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def run_listener(
    settings: Settings,
    *,
    ae_title: str = "DXASSIST",
    port: int | None = None,
    host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> None:
    """Blocking entry point of ``dxassist listen``: run :func:`listen` until SIGINT or SIGTERM.

    Args:
        settings: Process settings.
        ae_title: The listener's AE title.
        port: TCP port (``DXASSIST_DIMSE_PORT``, default 11112, when None).
        host: Address to bind; keep loopback unless the PACS is on another machine.
        metrics_port: Port of the listener's ``GET /metrics`` (``DXASSIST_DIMSE_METRICS_PORT`` when None;
            not served when both are unset).
    """
    from inference.observability import configure_logging

    configure_logging(
        level=settings.logs.log_level,
        log_file=settings.log_path(LOG_FILE),
        max_bytes=settings.logs.log_max_bytes,
        backups=settings.logs.log_backups,
    )
    asyncio.run(listen(settings, ae_title=ae_title, port=port, host=host, metrics_port=metrics_port))
