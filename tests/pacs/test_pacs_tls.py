"""DICOM TLS (PS3.15 Annex B) both ways, with dcmtk at the other end: a listener configured with a
certificate, a key and the authorities of the sending nodes accepts a study only over TLS from a node
holding a certificate of those authorities, and delivers its SR and captures over TLS to a PACS that
requires dxassist's own certificate."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import tiny_models
from _certificates import certificates
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import (
    LISTENER_AET,
    NODE_FACILITY,
    QUIET_SECONDS,
    TEST_AET,
    Listener,
    all_sent,
    dcmtk,
    echo,
    free_port,
    require_tools,
    wait_until,
)
from _storescp import COMPREHENSIVE_SR, SECONDARY_CAPTURE, storescp

from inference.record import Record

pytestmark = pytest.mark.integration


def _store(port: int, path: Path, *options: str, calling: str = TEST_AET) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            dcmtk("storescu"),
            *options,
            "-aet",
            calling,
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


def test_studies_arrive_and_results_leave_over_tls_only(tmp_path: Path) -> None:
    require_tools()
    certs = certificates(tmp_path)
    node_tls = ("+tls", str(certs["client_key"]), str(certs["client_cert"]), "+cf", str(certs["ca"]))
    # The PACS: its server certificate (the same authority's), and dxassist must show one of its own.
    pacs_tls = ("+tls", str(certs["server_key"]), str(certs["server_cert"]), "+cf", str(certs["ca"]))
    with storescp(tmp_path / "pacs", (COMPREHENSIVE_SR, SECONDARY_CAPTURE), tls=pacs_tls) as pacs:
        destination = pacs.destination("secure-pacs") | {
            "tls": True,
            "tls_cafile": str(certs["ca"]),
            "tls_certfile": str(certs["client_cert"]),
            "tls_keyfile": str(certs["client_key"]),
        }
        home = tmp_path / "home"
        home.mkdir()
        tiny_models.seed_both(home / "models", tmp_path / "build")
        listener = Listener(
            home,
            free_port(),
            [destination],
            extra_env={
                "DXASSIST_DIMSE_TLS_CERTFILE": str(certs["server_cert"]),
                "DXASSIST_DIMSE_TLS_KEYFILE": str(certs["server_key"]),
                "DXASSIST_DIMSE_TLS_CAFILE": str(certs["ca"]),
                # Each node bound to its certificate: the same authority's "client" cannot send as another.
                "DXASSIST_DIMSE_NODES": json.dumps(
                    [
                        # Bound by its DNS alternative name (its common name, "client", would do too).
                        {
                            "ae_title": TEST_AET,
                            "facility": NODE_FACILITY,
                            "certificate_cn": "client.node.example",
                        },
                        {"ae_title": "OTHERNODE", "facility": "F-OTHER", "certificate_cn": "other-node"},
                    ]
                ),
            },
            echo_args=node_tls,
        )
        listener.start()
        try:
            # A connection that never starts its handshake does not stop other nodes from associating.
            with socket.create_connection(("127.0.0.1", listener.port)):
                assert echo(listener.port, timeout=10, options=node_tls).returncode == 0
            # Without TLS, or over TLS without a certificate of the authority: no association at all.
            refused = {}
            for how, options in (("plain", ()), ("anonymous TLS", ("+tla", "+cf", str(certs["ca"])))):
                study = new_uid()
                sent = _store(
                    listener.port, write(tmp_path / "a" / f"{how}.dcm", chest_cr(study=study)), *options
                )
                assert sent.returncode != 0, how
                refused[how] = study
            # A certified node calling itself another facility's node: aborted, nothing stored.
            study = new_uid()
            path = write(tmp_path / "a" / "impostor.dcm", chest_cr(study=study))
            for _attempt in range(2):  # a sender retrying: audited once a minute, logged every time
                sent = _store(listener.port, path, *node_tls, calling="OTHERNODE")
                assert sent.returncode != 0, sent.stdout + sent.stderr
            refused["another node's AE title"] = study
            # A title no node is registered under: A-ASSOCIATE-RJ.
            assert _store(listener.port, path, *node_tls, calling="STRANGER").returncode != 0
            # Over TLS with the node's certificate: stored, analysed, its outputs delivered over TLS.
            study = new_uid()
            sent = _store(listener.port, write(tmp_path / "a" / "tls.dcm", chest_cr(study=study)), *node_tls)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            result, deliveries = wait_until(
                lambda: all_sent(listener, study), timeout=60, interval=0.5, what="the deliveries over TLS"
            )
            stored = pacs.stored()
            assert {d.object for d in deliveries} <= {str(ds.SOPInstanceUID) for ds in stored}
            assert {str(ds.StudyInstanceUID) for ds in stored} == {study}
            assert any(str(ds.Modality) == "SR" for ds in stored)
            time.sleep(3 * QUIET_SECONDS)  # what was refused was never received, so never analysed
            record = Record(listener.record_url)
            try:
                for how, uid in refused.items():
                    assert record.results.latest_for_study(study_instance_uid=uid) is None, how

                # Each node-authentication failure is on the audit trail, under the facility of the node
                # whose title was claimed (its auditor sees who tried to send as its node).
                def attempts(subject: str) -> list[tuple[object, ...]]:
                    entries = record.audit.search(agent=subject, limit=50)[1]
                    return [
                        (e["action"], e["outcome"], e["resource_id"], e["facility"], e["client"])
                        for e in entries
                    ]

                # With the certificate the peer presented (the node's own "client" here).
                from cryptography import x509
                from cryptography.hazmat.primitives import hashes

                fingerprint = (
                    x509.load_pem_x509_certificate(certs["client_cert"].read_bytes())
                    .fingerprint(hashes.SHA256())
                    .hex()
                )
                peer = f"127.0.0.1 certificate sha256:{fingerprint} CN=client DNS=client.node.example"
                assert attempts("dimse:OTHERNODE") == [
                    ("dimse:associate", "denied", "certificate_mismatch", "F-OTHER", peer)
                ]
                assert attempts("dimse:STRANGER") == [
                    ("dimse:associate", "denied", "unknown_node", None, peer)
                ]
                # So is each failed handshake (no AE title yet): a plain client, or TLS without a certificate
                # of the authorities (the silent connection above counts as a failed handshake too).
                assert set(attempts("dimse:unknown")) == {
                    ("dimse:associate", "denied", "tls_handshake_failed", None, "127.0.0.1"),
                    ("dimse:associate", "denied", "tls_certificate_refused", None, "127.0.0.1"),
                }
                # As FHIR: an IHE ATNA Security Alert (DICOM 110113), action E.
                from inference.record.fhir import audit_events

                (entry,) = record.audit.search(agent="dimse:OTHERNODE", limit=5)[1]
                alert = audit_events.audit_event(entry)
                assert (alert["type"]["code"], alert["action"]) == ("110113", "E")
            finally:
                record.close()
            log = listener.log.read_text() + (home / "logs" / "listener.jsonl").read_text()
            assert "TLS only" in log and "certificate_mismatch" in log
            # The refused handshakes are one warning each, not pynetdicom's errors with a traceback.
            assert "tls_handshake_failed" in log
            lines = [json.loads(line) for line in (home / "logs" / "listener.jsonl").read_text().splitlines()]
            assert not [
                line for line in lines if line["logger"].startswith("pynetdicom") and line["level"] == "ERROR"
            ]
        finally:
            listener.stop()


def test_a_destination_names_its_tls_files_only_with_tls() -> None:
    from pydantic import ValidationError

    from inference.config import Destination

    base = {"name": "p", "kind": "dimse", "host": "127.0.0.1", "port": 104, "ae_title": "PACS"}
    with pytest.raises(ValidationError, match="without"):
        Destination.model_validate(base | {"tls_cafile": "/etc/ca.pem"})
    with pytest.raises(ValidationError, match="go together"):
        Destination.model_validate(base | {"tls": True, "tls_certfile": "/etc/c.pem"})
    stow = {"name": "w", "kind": "stowrs", "url": "https://pacs.example/dicom-web", "tls": True}
    with pytest.raises(ValidationError, match="https"):
        Destination.model_validate(stow)
    with pytest.raises(ValidationError, match="not https"):
        Destination.model_validate(
            stow | {"tls": False, "url": "http://vna/dicom-web", "tls_cafile": "/ca.pem"}
        )
    assert Destination.model_validate(base | {"tls": True}).tls
    assert json.loads(Destination.model_validate(base).model_dump_json())["tls"] is False


def test_a_tls_file_that_cannot_be_loaded_is_refused_for_good_not_retried(tmp_path: Path) -> None:
    from inference.config import Destination
    from inference.delivery._senders import DeliveryFailed, send

    destination = Destination.model_validate(
        {"name": "p", "kind": "dimse", "host": "127.0.0.1", "port": free_port(), "ae_title": "PACS"}
        | {"tls": True, "tls_cafile": str(tmp_path / "missing.pem")}
    )
    with pytest.raises(DeliveryFailed) as refused:
        send(destination, chest_cr(study=new_uid()), "1.2.840.10008.5.1.4.1.1.1")
    assert (refused.value.code, refused.value.retryable) == ("destination_tls", False)
    assert "TLS files of p cannot be loaded" in str(refused.value)


def test_a_node_bound_to_a_certificate_needs_verified_certificates() -> None:
    from pydantic import ValidationError

    from inference.config import DimseSettings

    node = {"ae_title": "CR1", "facility": "F1", "certificate_cn": "cr1.hospital.example"}
    with pytest.raises(ValidationError, match="DXASSIST_DIMSE_TLS_CAFILE"):
        DimseSettings(dimse_nodes=[node])
    settings = DimseSettings(
        dimse_nodes=[node, {"ae_title": "CR2", "facility": "F1"}],
        dimse_tls_certfile="/etc/dx/cert.pem",
        dimse_tls_keyfile="/etc/dx/key.pem",
        dimse_tls_cafile="/etc/dx/ca.pem",
    )
    assert settings.node_certified("CR1", {"cr1", "cr1.hospital.example"})
    assert not settings.node_certified("CR1", {"cr2.hospital.example"})
    assert not settings.node_certified("CR1", frozenset())
    assert settings.node_certified("CR2", {"anything"})  # not bound: its AE title and host decide


def test_stow_rs_reaches_an_https_destination_certified_by_the_hospital_s_own_authority(
    tmp_path: Path,
) -> None:
    """A VNA behind the hospital's own certificate authority: trusted through ``tls_cafile`` only."""
    from _stow_destination import stow_destination

    from inference.config import Destination
    from inference.delivery._senders import DeliveryFailed, send

    certs = certificates(tmp_path)
    payload = chest_cr(study=new_uid())
    with stow_destination(tls=(certs["server_cert"], certs["server_key"])) as (url, received):
        assert url.startswith("https://")
        plain = Destination.model_validate(
            {"name": "vna", "kind": "stowrs", "url": url, "timeout_seconds": 5}
        )
        with pytest.raises(DeliveryFailed) as untrusted:  # the system's authorities do not know it
            send(plain, payload, "1.2.840.10008.5.1.4.1.1.1")
        assert untrusted.value.retryable and received.datasets() == []
        trusted = Destination.model_validate(
            {
                "name": "vna",
                "kind": "stowrs",
                "url": url,
                "tls_cafile": str(certs["ca"]),
                "timeout_seconds": 5,
            }
        )
        send(trusted, payload, "1.2.840.10008.5.1.4.1.1.1")
        (stored,) = received.datasets()
        assert stored.Modality == "CR"
