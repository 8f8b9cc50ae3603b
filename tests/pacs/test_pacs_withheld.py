"""A result queued for a PACS before its patient objected to sharing never reaches the PACS, and shows.

``dxassist serve`` runs in a subprocess with one DIMSE destination, dcmtk's ``storescp``, which is not
listening yet: a study is filed, its SR and heatmap captures are built and queued, and their delivery
fails and waits for its retry. The patient then objects to national sharing (``POST /v1/consents``), a
study of another patient is filed, and the PACS comes up. The real delivery worker withholds the first
result's objects (the outbox reads the consent again when it hands them out) and delivers the second
result's behind them: the PACS holds the second study's objects only, the first result's deliveries are
``withheld`` with error ``consent_withdrawn``, the dead-letter queue stays empty (withheld is the intended
outcome, not a failure an operator must retry), and ``/metrics`` counts the withheld objects under
``dxassist_deliveries_total{state="withheld"}`` for that destination, so an operator sees them.
"""

from __future__ import annotations

import json
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiny_models
from _pacs_dicom import chest_cr, new_uid
from _pacs_harness import Serve, dxassist, free_port, require_tools, start_serve, wait_until
from _storescp import COMPREHENSIVE_SR, SECONDARY_CAPTURE, StoreScp, storescp
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

DESTINATION = "ward-pacs"
FACILITY = "F1"


def _study(study: str, identifier: str, *, seed: int) -> bytes:
    """A chest CR the tiny model calls positive (heatmap captures to deliver), of patient ``identifier``."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(chest_cr(study=study, sop=f"{study}.1", blob=True, seed=seed)))
    ds.PatientID = identifier
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _upload(client: httpx.Client, serve: Serve, data: bytes) -> str:
    response = client.post(
        "/v1/studies",
        files=[("files", ("pa.dcm", data, "application/dicom"))],
        headers={"Authorization": f"Bearer {serve.token('pacs', FACILITY)}"},
    )
    assert response.status_code == 201, response.text
    assert any(f["positive"] for f in response.json()["findings"])
    return str(response.json()["result_id"])


def _deliveries(client: httpx.Client, serve: Serve, result_id: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/results/{result_id}",
        headers={"Authorization": f"Bearer {serve.token('radiologist', FACILITY)}"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def _sample(metrics: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of the sample ``name{labels}`` of a /metrics text, or None when it is not there."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_a_delivery_queued_before_the_patient_objected_is_withheld_not_sent_and_counted(
    tmp_path: Path,
) -> None:
    require_tools()
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    port = free_port()  # the PACS listens here only later: until then its destination is unreachable
    destination = StoreScp(port=port, out=tmp_path / "pacs" / "out").destination(DESTINATION)
    env = {
        "DXASSIST_DESTINATIONS": json.dumps([destination]),
        "DXASSIST_DELIVERY_BACKOFF_SECONDS": "0.3",
        "DXASSIST_DELIVERY_BACKOFF_CAP_SECONDS": "1.0",
        "DXASSIST_DELIVERY_POLL_SECONDS": "0.2",
    }
    serve = start_serve(home, env, subject="withheld", stdout=tmp_path / "serve.log")
    objecting = f"IPP-WITHHELD-{uuid.uuid4().hex[:8]}"
    private_study, later_study = new_uid(), new_uid()
    try:
        with httpx.Client(base_url=serve.url, timeout=60, trust_env=False) as client:
            private = _upload(client, serve, _study(private_study, objecting, seed=1))

            def queued_and_failing() -> list[dict[str, Any]] | None:
                rows = _deliveries(client, serve, private)
                built = rows and all(d["kind"] in ("sr", "sc") for d in rows)
                return rows if built and rows[0]["error"] == "destination_unreachable" else None

            # Built and queued while the PACS is down: the head of the queue failed and waits for its retry.
            queued = wait_until(
                queued_and_failing, timeout=90, interval=0.3, what="the outputs queued, the PACS unreachable"
            )
            assert all(d["state"] == "pending" for d in queued)

            objection = {
                "patient": {"identifier": objecting},
                "ai_processing": "permit",
                "national_sharing": "deny",
            }
            recorded = client.post(
                "/v1/consents",
                json=objection,
                headers={"Authorization": f"Bearer {serve.token('clinician', FACILITY)}"},
            )
            assert recorded.status_code == 200, recorded.text
            assert recorded.json()["national_sharing"] == "deny"
            # Another patient's result, queued behind the withdrawn one: it reaching the PACS shows that
            # the worker went past the first result's objects.
            later = _upload(client, serve, _study(later_study, f"IPP-SHARING-{uuid.uuid4().hex[:8]}", seed=2))

            with storescp(tmp_path / "pacs", (COMPREHENSIVE_SR, SECONDARY_CAPTURE), port=port) as pacs:

                def later_sent() -> list[dict[str, Any]] | None:
                    rows = _deliveries(client, serve, later)
                    built = rows and all(d["kind"] in ("sr", "sc") for d in rows)
                    return rows if built and all(d["state"] == "sent" for d in rows) else None

                sent = wait_until(later_sent, timeout=90, interval=0.3, what="the later result delivered")
                stored = pacs.stored()

            withheld = _deliveries(client, serve, private)
            metrics = client.get("/metrics").text
    finally:
        serve.stop()

    # The PACS received the later result's objects, and nothing of the study of the patient who objected.
    assert sorted(str(ds.SOPInstanceUID) for ds in stored) == sorted(d["object"] for d in sent)
    assert {str(ds.StudyInstanceUID) for ds in stored} == {later_study}
    # Every object of the withdrawn result: withheld, never sent, with the reason an integrator can act on.
    assert [d["object"] for d in withheld] == [d["object"] for d in queued]
    assert [(d["destination"], d["state"], d["error"], d["sent_at"]) for d in withheld] == [
        (DESTINATION, "withheld", "consent_withdrawn", None)
    ] * len(queued)
    # Not a dead letter: nothing for an operator to retry.
    listed = dxassist(home, "dead-letter", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert _sample(metrics, "dxassist_dead_letters", {"kind": "delivery"}) == 0
    # The operator watching /metrics sees the withheld objects of that destination.
    labels = {"destination": DESTINATION, "state": "withheld"}
    assert _sample(metrics, "dxassist_deliveries_total", labels) == len(queued)
