"""A certificate's names cannot add a second sender to the audit entry of a study filed over DICOM TLS.

The entry of a filed study lists the identities that delivered it, ``; ``-separated (address, then the
certificate's fingerprint and names). The names are the certificate holder's choice: a common name
``client; 10.6.6.6 certificate sha256:abab...`` read as a second identity, another address and another
certificate, in the trail a security officer searches after a key is reported stolen.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny_models
from _certificates import certificates
from _pacs_dicom import chest_cr, new_uid, write
from _pacs_harness import LISTENER_AET, NODE_FACILITY, TEST_AET, Listener, dcmtk, free_port, wait_until

from inference.record import Record

pytestmark = pytest.mark.integration

FORGED = "client; 10.6.6.6 certificate sha256:" + "ab" * 14  # 64 characters, the most a CN may have


def test_a_semicolon_in_a_certificates_name_does_not_list_another_sender(tmp_path: Path) -> None:
    import subprocess

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certs = certificates(tmp_path, also=(("forged", FORGED),))
    fingerprint = x509.load_pem_x509_certificate(certs["forged_cert"].read_bytes()).fingerprint(
        hashes.SHA256()
    )
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    tls = ("+tls", str(certs["forged_key"]), str(certs["forged_cert"]), "+cf", str(certs["ca"]))
    listener = Listener(
        home,
        free_port(),
        [],
        extra_env={
            "DXASSIST_DIMSE_TLS_CERTFILE": str(certs["server_cert"]),
            "DXASSIST_DIMSE_TLS_KEYFILE": str(certs["server_key"]),
            "DXASSIST_DIMSE_TLS_CAFILE": str(certs["ca"]),
            "DXASSIST_DIMSE_NODES": json.dumps([{"ae_title": TEST_AET, "facility": NODE_FACILITY}]),
        },
        echo_args=tls,
    )
    listener.start()
    try:
        study = new_uid()
        path = write(tmp_path / "a" / "node.dcm", chest_cr(study=study))
        sent = subprocess.run(
            [dcmtk("storescu"), *tls, "-aet", TEST_AET, "-aec", LISTENER_AET, "127.0.0.1", str(listener.port)]
            + [str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        record = Record(listener.record_url)
        try:
            wait_until(
                lambda: record.results.latest_for_study(study_instance_uid=study) is not None,
                timeout=60,
                interval=0.5,
                what="the study filed",
            )
            entries = record.audit.search(agent=f"dimse:{TEST_AET}", limit=50)[1]
        finally:
            record.close()
    finally:
        listener.stop()
    (filed,) = [e for e in entries if e["action"] == "studies:submit" and e["outcome"] == "success"]
    # One association, one certificate: one identity, its own fingerprint first.
    identities = filed["client"].split("; ")
    assert len(identities) == 1, filed["client"]
    assert identities[0].startswith(f"127.0.0.1 certificate sha256:{fingerprint.hex()} CN=client")
