"""Results of uploads and STOW-RS go back to the configured destinations; GET shows each delivery's state.

The destination is a STOW-RS server the test runs on 127.0.0.1: it records every POST and answers 200,
so what dxassist sent can be read back as DICOM.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom, related_body
from _api_env import Env, TestClient, make_settings, new_study_uid
from _stow_destination import Received, stow_destination

from inference.api import create_app

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def stow_server() -> Iterator[tuple[str, Received]]:
    """A DICOMweb STOW-RS endpoint on 127.0.0.1 that stores nothing and answers every POST with 200."""
    with stow_destination() as served:
        yield served


@pytest.fixture(scope="module")
def delivering(
    tmp_path_factory: pytest.TempPathFactory, stow_server: tuple[str, Received]
) -> Iterator[tuple[Env, TestClient]]:
    """A server whose only destination is the test's STOW-RS endpoint."""
    url, _received = stow_server
    home = tmp_path_factory.mktemp("dxassist-delivering")
    destination = {
        "name": "vna",
        "kind": "stowrs",
        "url": url,
        "token": "vna-test-token",
        "timeout_seconds": 5,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        mp.setenv("DXASSIST_DESTINATIONS", json.dumps([destination]))
        mp.setenv("DXASSIST_DELIVERY_POLL_SECONDS", "0.1")
        mp.setenv("DXASSIST_DELIVERY_BACKOFF_SECONDS", "0.2")
        settings = make_settings(home)
        tiny_models.seed_both(settings.model_cache, home / "build")
        env = Env(home=home, settings=settings)
        with TestClient(create_app(settings)) as client:
            yield env, client


def _upload(client: TestClient, env: Env, study: str, *, patient_id: str | None = None) -> dict[str, Any]:
    extra = {"patient_id": patient_id} if patient_id else {}
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, **extra)
    response = client.post(
        "/v1/studies",
        files=[("files", ("pa.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _sent(client: TestClient, env: Env, result_id: str, *, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The result's deliveries once every one is ``sent`` (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        assert response.status_code == 200, response.text
        deliveries = response.json()["deliveries"]
        if deliveries and all(d["state"] == "sent" for d in deliveries):
            return list(deliveries)
        if time.monotonic() > deadline:
            pytest.fail(f"The deliveries of the result were not all sent in {timeout} s: {deliveries}")
        time.sleep(0.1)


def test_an_upload_is_delivered_as_sr_and_heatmap_captures(
    delivering: tuple[Env, TestClient], stow_server: tuple[str, Received]
) -> None:
    env, client = delivering
    _url, received = stow_server
    study = new_study_uid()
    result = _upload(client, env, study)
    positives = [f["code"] for f in result["findings"] if f["heatmap"]]
    assert positives, "the blob image makes the tiny model call findings positive"
    # Answered before anything is built: the upload's response lists the outputs owed to the destination.
    assert [(d["destination"], d["kind"], d["state"]) for d in result["deliveries"]] == [
        ("vna", "outputs", "pending")
    ]

    deliveries = _sent(client, env, result["result_id"])
    assert [d["kind"] for d in deliveries] == ["sr"] + ["sc"] * len(positives)
    assert all(d["destination"] == "vna" and d["attempts"] >= 1 and d["sent_at"] for d in deliveries)
    assert all(d["last_error"] is None for d in deliveries)

    with received.lock:
        paths = {path for path, _type, _body in received.posts}
        types = {content_type for _path, content_type, _body in received.posts}
    assert paths == {"/dicom-web/studies"}
    assert all(t.startswith('multipart/related; type="application/dicom"') for t in types)
    sent = {str(ds.SOPInstanceUID): ds for ds in received.datasets() if ds.StudyInstanceUID == study}
    assert set(sent) == {d["object"] for d in deliveries}
    classes = sorted(str(ds.SOPClassUID) for ds in sent.values())
    assert classes == sorted([SR_CLASS] + [SC_CLASS] * len(positives))
    assert all(ds.Manufacturer == "dxassist" for ds in sent.values())


def test_a_stow_rs_study_is_delivered_too(
    delivering: tuple[Env, TestClient], stow_server: tuple[str, Received]
) -> None:
    env, client = delivering
    _url, received = stow_server
    study = new_study_uid()
    body, content_type = related_body(
        [("application/dicom", chest_dicom(study=study, sop=f"{study}.1", blob=True))]
    )
    headers = {**env.headers("pacs", facility="F1"), "Content-Type": content_type}
    assert client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    result = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist")).json()
    deliveries = _sent(client, env, result["result_id"])
    assert {d["kind"] for d in deliveries} == {"sr", "sc"}
    assert {str(ds.SOPInstanceUID) for ds in received.datasets() if ds.StudyInstanceUID == study} == {
        d["object"] for d in deliveries
    }


def test_a_patient_who_objected_to_sharing_gets_a_result_but_nothing_leaves(
    delivering: tuple[Env, TestClient], stow_server: tuple[str, Received]
) -> None:
    env, client = delivering
    _url, received = stow_server
    identifier = f"IPP-NOSHARE-{uuid.uuid4().hex[:6]}"
    consent = {"patient": {"identifier": identifier}, "ai_processing": "permit", "national_sharing": "deny"}
    recorded = client.post("/v1/consents", json=consent, headers=env.headers("clinician", facility="F1"))
    assert recorded.status_code == 200 and recorded.json()["national_sharing"] == "deny"

    private = new_study_uid()
    result = _upload(client, env, private, patient_id=identifier)
    assert any(f["positive"] for f in result["findings"])  # analysed as usual
    assert result["deliveries"] == []
    again = client.get(f"/v1/results/{result['result_id']}", headers=env.headers("radiologist"))
    assert again.status_code == 200 and again.json()["deliveries"] == []

    # A later study of another patient is delivered; the outbox is in order, so the first would be too.
    later = _upload(client, env, new_study_uid())
    _sent(client, env, later["result_id"])
    assert not [ds for ds in received.datasets() if ds.StudyInstanceUID == private]


def test_a_triage_result_has_no_deliveries(delivering: tuple[Env, TestClient]) -> None:
    env, client = delivering
    vitals = {
        "patient": {"identifier": f"IPP-VIT-{uuid.uuid4().hex[:6]}"},
        "respiratory_rate": 22,
        "spo2": 93,
    }
    created = client.post("/v1/vitals", json=vitals, headers=env.headers("clinician", facility="F1"))
    assert created.status_code == 201, created.text
    read = client.get(f"/v1/results/{created.json()['result_id']}", headers=env.headers("radiologist"))
    assert read.status_code == 200 and "deliveries" not in read.json()
