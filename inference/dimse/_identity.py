"""Which certificate a sending node authenticated with over DICOM TLS, for the audit trail.

With mutual TLS (``dimse_tls_cafile``) each association's peer presented a certificate the authorities
signed. The audit entries of the association (accepted or refused) and of each study it delivered then
say which one, in their ``client`` column after the peer's address::

    10.1.2.3 certificate sha256:<64 hex digits of the DER certificate> CN=<subject common name> DNS=<a>,<b>

so a security officer can tell which key a node used (after a rotation, or when one is reported stolen)
and look for every study filed under it. The FHIR AuditEvent shows the address as the agent's
``network.address`` and the rest as its ``altId`` (:data:`inference.record.fhir.audit_events.CERTIFICATE`).
Without TLS, or without a certificate asked for, ``client`` stays the address alone.

Each study folder of the spool keeps the identities of the associations that delivered its instances in
:data:`PEERS_FILE` (appended by the association threads, read when the study is filed), so they survive a
restart and reach whichever listener instance analyses the study.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

PEERS_FILE: Final = "tls-peers.txt"
"""In a study's spool folder: one line per certificate identity that delivered its instances."""
_MAX_PEERS: Final = 4  # identities kept per study: a study normally comes from one node, one key
_MAX_NAME: Final = 64
_MAX_DNS: Final = 4
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x3a\x3c-\x7e]")  # ";" separates the identities


@dataclass(frozen=True)
class PeerCertificate:
    """The certificate a peer presented: its SHA-256 fingerprint and the names it is known by.

    Attributes:
        sha256: Lower-case hex digest of the DER certificate (as ``openssl x509 -fingerprint -sha256``
            prints it, without the colons).
        common_name: The subject's common name, if any.
        dns: Its DNS subject alternative names.
    """

    sha256: str
    common_name: str | None
    dns: tuple[str, ...]

    @property
    def names(self) -> frozenset[str]:
        """The common name and the DNS names (what a node's ``certificate_cn`` is compared with)."""
        return frozenset((*(() if self.common_name is None else (self.common_name,)), *self.dns))

    def described(self) -> str:
        """``sha256:<hex> CN=<name> DNS=<a>,<b>``: one line, printable ASCII without ``;`` (which separates
        the identities of a study's entry: :func:`delivered_by`), bounded (names are cut)."""
        parts = [f"sha256:{self.sha256}"]
        if self.common_name is not None:
            parts.append(f"CN={_printable(self.common_name)}")
        if self.dns:
            parts.append("DNS=" + ",".join(_printable(name) for name in self.dns[:_MAX_DNS]))
        return " ".join(parts)


def _printable(name: str) -> str:
    # A certificate's names are the issuer's choice: printable ASCII only, never a line break, nor the
    # "; " between identities (a name "x; 10.6.6.6 certificate ..." would list another sender).
    return _UNPRINTABLE.sub("?", name)[:_MAX_NAME]


def peer_certificate(assoc: Any) -> PeerCertificate | None:
    """The certificate the peer of ``assoc`` presented over TLS; None without TLS or a certificate."""
    connection = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if not isinstance(connection, ssl.SSLSocket):
        return None
    try:
        der = connection.getpeercert(binary_form=True)
        decoded: dict[str, Any] = dict(connection.getpeercert() or {})
    except (ValueError, OSError):  # the connection is gone, or the handshake never completed
        return None
    if not der:
        return None
    common = [
        str(pair[1]) for entry in decoded.get("subject", ()) for pair in entry if pair[0] == "commonName"
    ]
    dns = tuple(str(value) for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS")
    return PeerCertificate(
        sha256=hashlib.sha256(der).hexdigest(), common_name=common[0] if common else None, dns=dns
    )


def audit_client(address: str | None, certificate: PeerCertificate | None) -> str | None:
    """The ``client`` of an audit entry: the peer's address, then its certificate when it presented one."""
    if certificate is None:
        return address
    # audit_events.CERTIFICATE separates the two, for the FHIR AuditEvent.
    return f"{address or 'unknown'} certificate {certificate.described()}"


def remember(folder: Path, client: str) -> None:
    """Add ``client`` (:func:`audit_client`) to the identities that delivered the study in ``folder``.

    A line is appended (``O_APPEND``: the lines of concurrent associations do not interleave) unless it
    is there already or :data:`_MAX_PEERS` are; best effort: the instance is kept either way.
    """
    path = folder / PEERS_FILE
    with contextlib.suppress(OSError):
        known = path.read_text("ascii", "replace").splitlines() if path.exists() else []
        if client in known or len(known) >= _MAX_PEERS:
            return
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(descriptor, f"{client}\n".encode("ascii", "replace"))
        finally:
            os.close(descriptor)


def delivered_by(folder: Path) -> str | None:
    """The identities that delivered the study in ``folder``, ``; ``-separated; None when none is known
    (no TLS, or a folder from before)."""
    path = folder / PEERS_FILE
    try:
        lines = path.read_text("ascii", "replace").splitlines() if path.exists() else []
    except OSError:
        return None
    seen = list(dict.fromkeys(line.strip() for line in lines if line.strip()))[:_MAX_PEERS]
    return "; ".join(seen) or None


def forget(folder: Path) -> None:
    """Remove :data:`PEERS_FILE` and the folder once it holds no instance (the study was filed).

    An instance of the study may arrive at any moment (a late one, on another association or another
    listener instance): it is moved in first, then its identity is added (:func:`remember`), which finds
    the file and adds nothing when the same certificate delivered the filed instances. So the file is
    first taken away under a name of its own, and only then is the folder looked at: an instance found
    there gets the identities back; one moved in later finds no file and writes its own.
    """
    if not folder.is_dir():
        return
    aside = folder / f".{PEERS_FILE}.{uuid.uuid4().hex}.tmp"
    taken: Path | None = aside
    try:
        os.rename(folder / PEERS_FILE, aside)
    except FileNotFoundError:
        taken = None  # no certificate was presented, or its identities went with an earlier filing
    except OSError:
        return  # left as it is: the next filing of the study forgets it
    if any(folder.glob("*.dcm")):
        if taken is not None:
            _give_back(taken, folder / PEERS_FILE)
        return
    with contextlib.suppress(OSError):
        if taken is not None:
            taken.unlink()
        folder.rmdir()  # only when empty: an instance being moved in right now keeps it


def _give_back(taken: Path, path: Path) -> None:
    """Append the identities in ``taken`` to ``path`` (an instance may have started it meanwhile)."""
    with contextlib.suppress(OSError):
        lines = taken.read_text("ascii", "replace").splitlines()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(
                descriptor, "".join(f"{line}\n" for line in lines if line.strip()).encode("ascii", "replace")
            )
        finally:
            os.close(descriptor)
        taken.unlink()
