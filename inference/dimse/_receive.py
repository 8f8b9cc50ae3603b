"""Receiving instances: a C-STORE is validated and decoded on arrival, written durably into its study's
folder under ``incoming/`` before the success status goes out, or refused with a DIMSE failure status
that names the reason; and the ``receiving/`` folder pynetdicom writes each dataset to as it arrives,
swept of transfers that stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom import (
    TOO_LARGE,
    UNSUPPORTED_CONTENT,
    DicomRejected,
    StudyCollector,
    read_instance,
)
from inference.dimse._association import (
    _RECEIVED,
    CannotListen,
    _association_id,
)
from inference.dimse._identity import (
    audit_client,
    peer_certificate,
    remember,
)
from inference.dimse._nodes import _CERTIFICATE_REFUSALS, _certificate_refusal, _Node
from inference.observability import (
    correlated,
    current_request_id,
)

if TYPE_CHECKING:
    from pydicom import Dataset


# Every line of the listener logs under one logger name, whichever module writes it (docs/operations.md).
logger = logging.getLogger("inference.dimse._listener")

# PS3.4 C-STORE failure statuses.
OUT_OF_RESOURCES: Final = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS: Final = 0xA900
CANNOT_UNDERSTAND: Final = 0xC000
RECEIVING_DIR: Final = "receiving"
NOT_AUTHORIZED: Final = 0x0124  # PS3.7 C.4.2 "Refused: Not Authorized"


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
        status, code = _validate_and_keep(path, size, node, calling, peer, claimed=_claimed(event))
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


def _claimed(event: Any) -> tuple[str, str] | None:
    """The SOP Class and SOP Instance UIDs the C-STORE request names (Affected SOP Class UID, Affected
    SOP Instance UID), else None (an event without its request, as some tests build)."""
    request: Any = getattr(event, "request", None)
    sop_class = getattr(request, "AffectedSOPClassUID", None)
    sop_instance = getattr(request, "AffectedSOPInstanceUID", None)
    return None if sop_class is None or sop_instance is None else (str(sop_class), str(sop_instance))


def _validate_and_keep(
    path: Path,
    size: int,
    node: _Node,
    calling: str,
    peer: str | None = None,
    *,
    claimed: tuple[str, str] | None = None,
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
    if claimed is not None and claimed != (instance.sop_class_uid, sop):
        # The response names the request's UIDs: answered success, the PACS would believe it stored the
        # instance the command named while another was filed (PS3.4 B.2.3: 0xA900 for another SOP class).
        status, code = (
            (DATASET_DOES_NOT_MATCH_SOP_CLASS, "sop_class_mismatch")
            if claimed[0] != instance.sop_class_uid
            else (CANNOT_UNDERSTAND, "sop_instance_mismatch")
        )
        logger.warning(
            "C-STORE refused (%s), answered 0x%04X: the data set's UIDs are not those the request names",
            code,
            status,
            extra={"event": "dimse_refused", "code": code},
        )
        return status, code
    del instance  # the decoded pixels are not needed any more: the file is what is kept
    limit = node.limits.max_instances
    if node.collector.full(study_instance_uid=study, sop_instance_uid=sop, sender=calling, limit=limit):
        # Kept, it would make the study one that is refused whole when it is read (too_many_instances),
        # after every instance was answered as stored. Refused now, the sender may send it again: once the
        # study is analysed, it is taken as a late instance of it.
        logger.warning(
            "C-STORE refused (too_many_instances), answered 0x%04X: its study holds %d instances already",
            OUT_OF_RESOURCES,
            limit,
            extra={"event": "dimse_refused", "code": "too_many_instances"},
        )
        return OUT_OF_RESOURCES, "too_many_instances"
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
