"""The life of a DICOM association: its correlation id, the checks once it is established (registered
host, certificate), the count of the bytes of the message it is sending, its log lines, and the listener's
TLS (a context whose handshake runs in the association's own thread, and one line per connection that
failed below DICOM)."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dimse._connections import (
    PduStalled,
    PduTooLarge,
    framed_ssl_socket_class,
)
from inference.dimse._identity import (
    peer_certificate,
)
from inference.dimse._nodes import _CERTIFICATE_REFUSALS, _certificate_refusal, _Node
from inference.errors import InferenceError
from inference.observability import (
    bind_request_id,
    correlated,
    new_correlation_id,
)

if TYPE_CHECKING:
    from inference.config import DimseSettings


# Every line of the listener logs under one logger name, whichever module writes it (docs/operations.md).
logger = logging.getLogger("inference.dimse._listener")

# PDU headers and the command set ride along with the dataset's bytes.
_FRAMING_SLACK: Final = 1 << 20
_ASSOC_ID: Final = "_dxassist_correlation_id"
_RECEIVED: Final = "_dxassist_bytes_received"  # bytes of the message in progress, on its association
_MAX_PROPOSED: Final = 32  # presentation contexts named in a log line (a peer may propose 128)


def _association_id(assoc: Any) -> str:
    """The correlation id of an association, made at its first event (``assoc-<hex>``)."""
    found = getattr(assoc, _ASSOC_ID, None)
    if isinstance(found, str):
        return found
    made = new_correlation_id("assoc")
    # pynetdicom's Association is a plain object: the id lives and dies with it.
    setattr(assoc, _ASSOC_ID, made)
    return made


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
    """Bind the association's id for the rest of its thread's life (A-ASSOCIATE-RQ, its first event), and
    refuse a request pynetdicom cannot negotiate.

    pynetdicom runs each association in a thread of its own, which dies with it, so the binding is never
    undone: lines logged outside our handlers (pynetdicom's own warnings) carry the id too.

    A presentation context item without its abstract syntax or without any transfer syntax (PS3.8 9.3.2.2
    requires one, and one or more) makes pynetdicom's negotiation raise: its thread died without an answer
    and the connection stayed open, holding its slot (:mod:`._connections`) past every timeout. Such a
    request is refused here (A-ASSOCIATE-RJ, permanent, ACSE: no reason given), as pynetdicom refuses one.
    """
    from pynetdicom import evt

    bind_request_id(_association_id(event.assoc))
    contexts = event.assoc.requestor.primitive.presentation_context_definition_list
    if all(cx.abstract_syntax is not None and cx.transfer_syntax for cx in contexts):
        return
    logger.warning(
        "association refused: a presentation context names no abstract syntax or no transfer syntax",
        extra={"code": "malformed_association_request"},
    )
    event.assoc.acse.send_reject(0x01, 0x02, 0x01)
    evt.trigger(event.assoc, evt.EVT_REJECTED, {})
    event.assoc.kill()


def _on_lifecycle(event: Any, what: str) -> None:
    """Log an association's acceptance, refusal, release or abort under its id."""
    level, message = _LIFECYCLE[what]
    with correlated(_association_id(event.assoc)):
        logger.log(level, message, extra={"event": f"association_{what}"})


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
