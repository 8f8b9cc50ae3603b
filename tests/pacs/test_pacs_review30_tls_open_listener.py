"""An open DICOM TLS listener (any calling AE title, ``DXASSIST_DIMSE_OPEN_FACILITY``) audits each
certificate at its first accepted association, not only the first certificate seen from an address.

With no node registered, the certificate is the sender's identity. The accepted-association entries are
kept to one an hour per sender, and the certificate was left out of that key for unregistered titles: a
second key (a stolen one, used from the same gateway) left no ``dimse:associate`` entry for an hour.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
from _certificates import certificates
from _pacs_harness import NODE_FACILITY, TEST_AET, Listener, echo, free_port
from _pacs_harness import wait_until as wait_until

from inference.record import Record

pytestmark = pytest.mark.integration


def _fingerprint(pem: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificate(pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


def test_each_certificate_is_audited_at_its_first_association_on_an_open_listener(tmp_path: Path) -> None:
    certs = certificates(tmp_path, also=(("other", "other"),))
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    first = ("+tls", str(certs["client_key"]), str(certs["client_cert"]), "+cf", str(certs["ca"]))
    second = ("+tls", str(certs["other_key"]), str(certs["other_cert"]), "+cf", str(certs["ca"]))
    listener = Listener(
        home,
        free_port(),
        [],
        extra_env={
            "DXASSIST_DIMSE_TLS_CERTFILE": str(certs["server_cert"]),
            "DXASSIST_DIMSE_TLS_KEYFILE": str(certs["server_key"]),
            "DXASSIST_DIMSE_TLS_CAFILE": str(certs["ca"]),
            "DXASSIST_DIMSE_NODES": "[]",
            "DXASSIST_DIMSE_OPEN_FACILITY": NODE_FACILITY,
        },
        echo_args=first,  # the listener's start is checked with the first certificate
    )
    listener.start()
    try:
        answered = echo(listener.port, timeout=10, options=second)
        assert answered.returncode == 0, answered.stdout + answered.stderr
    finally:
        listener.stop()
    record = Record(listener.record_url)
    try:
        entries = record.audit.search(agent=f"dimse:{TEST_AET}", limit=50)[1]
    finally:
        record.close()
    accepted = {e["client"] for e in entries if (e["action"], e["outcome"]) == ("dimse:associate", "success")}
    for pem in (certs["client_cert"], certs["other_cert"]):
        assert any(f"certificate sha256:{_fingerprint(pem)}" in client for client in accepted), accepted
