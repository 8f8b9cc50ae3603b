"""The DICOM nodes a listener knows: what its association threads share with the analysis loop
(:class:`_Node`: the node registry's checks, the associations that delivered each study), whether a node
may present the certificate it did, and the audit of refused nodes and of nodes accepted over mutual TLS
(:class:`_NodeAudit`)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom import (
    Limits,
    StudyCollector,
)
from inference.dimse._connections import (
    peer_share,
)
from inference.dimse._identity import (
    PeerCertificate,
    audit_client,
)
from inference.record import RecordError
from inference.record.fhir import audit_events

if TYPE_CHECKING:
    from collections.abc import Callable


# Every line of the listener logs under one logger name, whichever module writes it (docs/operations.md).
logger = logging.getLogger("inference.dimse._listener")

# Associations remembered per study for its analysis's log line; a study sent one instance per
# association keeps the first ones only (bounded memory).
_MAX_ASSOCIATIONS: Final = 32
_REMEMBERED_STUDIES: Final = 4096
"""Studies whose delivering associations a listener remembers before it forgets those no longer in its
spool (each is a few dozen bytes)."""


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
