"""Over mutual DICOM TLS the audit trail names the certificate a node authenticated with, and a node may
be bound to one certificate by its fingerprint.

Before, every entry of a node said ``dimse:<AE title>`` and the address only: after a key rotation, or a
key reported stolen, a security officer could not tell which certificate had sent a study, and any
certificate of the authorities naming the node could send as it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import tiny_models
from _certificates import certificates
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, NODE_FACILITY, QUIET_SECONDS, TEST_AET, Listener, dcmtk, free_port
from _pacs_harness import wait_until as wait_until

from inference.record import Record

pytestmark = pytest.mark.integration


def _fingerprint(pem: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificate(pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


def _store(port: int, path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            dcmtk("storescu"),
            *options,
            "-aet",
            TEST_AET,
            "-aec",
            LISTENER_AET,
            "127.0.0.1",
            str(port),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_trail_names_the_nodes_certificate_and_a_pinned_node_refuses_another(tmp_path: Path) -> None:
    # The node's certificate, and a second key the same authority certified under the same names (the
    # key before a rotation, or a stolen one re-certified).
    certs = certificates(tmp_path, also=(("other", "client"),))
    current = _fingerprint(certs["client_cert"])
    other = _fingerprint(certs["other_cert"])
    node_tls = ("+tls", str(certs["client_key"]), str(certs["client_cert"]), "+cf", str(certs["ca"]))
    other_tls = ("+tls", str(certs["other_key"]), str(certs["other_cert"]), "+cf", str(certs["ca"]))
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    pinned = ":".join(current[i : i + 2] for i in range(0, 64, 2)).upper()  # as openssl prints it
    listener = Listener(
        home,
        free_port(),
        [],
        extra_env={
            "DXASSIST_DIMSE_TLS_CERTFILE": str(certs["server_cert"]),
            "DXASSIST_DIMSE_TLS_KEYFILE": str(certs["server_key"]),
            "DXASSIST_DIMSE_TLS_CAFILE": str(certs["ca"]),
            "DXASSIST_DIMSE_NODES": json.dumps(
                [{"ae_title": TEST_AET, "facility": NODE_FACILITY, "certificate_sha256": pinned}]
            ),
        },
        echo_args=node_tls,
    )
    listener.start()
    identity = f"certificate sha256:{current} CN=client DNS=client.node.example"
    try:
        refused = new_uid()
        sent = _store(listener.port, write(tmp_path / "a" / "other.dcm", chest_cr(study=refused)), *other_tls)
        assert sent.returncode != 0, sent.stdout + sent.stderr
        study = new_uid()
        sent = _store(listener.port, write(tmp_path / "a" / "node.dcm", chest_cr(study=study)), *node_tls)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        record = Record(listener.record_url)
        try:
            wait_until(
                lambda: record.results.latest_for_study(study_instance_uid=study) is not None,
                timeout=60,
                interval=0.5,
                what="the study filed",
            )
            assert record.results.latest_for_study(study_instance_uid=refused) is None
            entries = record.audit.search(agent=f"dimse:{TEST_AET}", limit=50)[1]
            seen = {(e["action"], e["outcome"], e["resource_id"], e["client"]) for e in entries}
            # The other certificate: refused and audited with its fingerprint, though the authority signed
            # it with the node's own names.
            assert (
                "dimse:associate",
                "denied",
                "tls_certificate_refused",
                f"127.0.0.1 certificate sha256:{other} CN=client DNS=client.node.example",
            ) in seen
            # The node's certificate: the accepted association and the study filed name it.
            assert ("dimse:associate", "success", "accepted", f"127.0.0.1 {identity}") in seen
            (filed,) = [e for e in entries if e["action"] == "studies:submit" and e["outcome"] == "success"]
            assert filed["client"] == f"127.0.0.1 {identity}"
            # As the auditor's FHIR AuditEvent shows it: the address, and the certificate as altId.
            from inference.record.fhir import audit_events

            agent = audit_events.audit_event(filed)["agent"][0]
            assert agent["network"]["address"] == "127.0.0.1"
            assert agent["altId"] == identity
            assert audit_events.audit_event(filed)["agent"][0]["who"]["identifier"]["value"] == "dimse:DXTEST"
        finally:
            record.close()
        # The spool keeps nothing of a filed study (the certificates noted beside it included).
        wait_until(
            lambda: not any((home / "incoming").iterdir()),
            timeout=10 + 5 * QUIET_SECONDS,
            what="the filed study's folder removed",
        )
    finally:
        listener.stop()
    assert (
        "tls_certificate_refused" in listener.log.read_text() + (home / "logs" / "listener.jsonl").read_text()
    )


def test_a_node_fingerprint_must_be_a_sha256_and_needs_the_authorities(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from inference.config import DimseNode, DimseSettings

    with pytest.raises(ValidationError, match="64 hex"):
        DimseNode(ae_title="CR1", facility="F1", certificate_sha256="ab:cd")
    node = DimseNode(ae_title="CR1", facility="F1", certificate_sha256="AB:" * 31 + "AB")
    assert node.certificate_sha256 == "ab" * 32
    with pytest.raises(ValidationError, match="DXASSIST_DIMSE_TLS_CAFILE"):
        DimseSettings(dimse_nodes=[node])
