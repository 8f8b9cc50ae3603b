"""A FHIR Device (one model version) changes visibly, or not at all, when its model is promoted or replaced.

A hospital's interface engine caches Devices by their ``ETag`` (``meta.versionId``) and revalidates with a
conditional read. A Device filed before migration 0022, whose results never said what its model was
trained on, said it only while its version was served (read from the model file at each read, version 1
throughout): once a promotion replaced the model, the Device silently lost it, and the engine, told that
version 1 was unchanged, kept a copy the server no longer served; it never saw the Device gain it either.

The record now completes such a Device when its version is put into service (version 2, its
``meta.lastUpdated`` then), and it keeps saying it after the version leaves service. Checked with
``fhirpy`` against a live server, as the engine's client sees it, across a promotion.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import tiny_models
from _api_env import Env, TestClient, fhir_reads, make_settings
from fhir.resources.R4B.device import Device
from fhirpy import SyncFHIRClient

from inference.api import create_app
from inference.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402

_DEVICES = sa.table("devices", sa.column("id", sa.String), sa.column("training"), sa.column("training_data"))


def _fhirpy(env: Env, base_url: str, subject: str) -> SyncFHIRClient:
    token = env.headers("clinician", facility="F1", subject=subject)["Authorization"]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=token)


def _unvalidated_read(record: Record, device_id: str) -> dict[str, Any]:
    device = record.fhir.read(resource_type="Device", resource_id=device_id)
    assert device is not None
    return device


def test_a_device_keeps_what_it_says_across_a_promotion_and_its_version_says_when_it_changed(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    tiny_models.seed_both(settings.model_cache, build)
    env = Env(home=tmp_path, settings=settings)
    with TestClient(create_app(settings)) as client:
        body = {"patient": {"identifier": f"DVV-{uuid.uuid4().hex[:8]}"}, "respiratory_rate": 24}
        filed = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
        assert filed.status_code == 201, filed.text
        result_id = str(filed.json()["result_id"])
    record = Record(settings.record_url)
    try:
        assessment = record.fhir.read(resource_type="RiskAssessment", resource_id=result_id)
        assert assessment is not None
        device_id = str(assessment["performer"]["reference"]).removeprefix("Device/")
        # As migration 0022 leaves the Device of a version whose results never said its training data.
        with record.engine.begin() as connection:
            connection.execute(_DEVICES.update().values(training=None, training_data=None))
        # What the engine held before the upgrade: version 1, saying nothing of its training.
        held = _unvalidated_read(record, device_id)
        assert held["meta"]["versionId"] == "1" and "note" not in held
    finally:
        record.close()

    engine = f"engine-{uuid.uuid4().hex[:8]}"
    # Version 1 in service: the Device says what the model was trained on, so it is a new version.
    with live_server(create_app(settings)) as base_url:
        fhir = _fhirpy(env, base_url, engine)
        served = fhir.reference("Device", device_id).to_resource()
        Device.model_validate(served.serialize())
        assert "synthetic data only" in served["note"][0]["text"]
        assert served["meta"]["versionId"] != held["meta"]["versionId"]
        assert served["meta"]["lastUpdated"] > held["meta"]["lastUpdated"]
        cached = served.serialize()
        # A client syncing Devices by _lastUpdated from the moment it last looked finds it.
        changed = fhir.resources("Device").search(_lastUpdated=f"gt{held['meta']['lastUpdated']}").fetch_all()
        assert device_id in {d["id"] for d in changed}

    # Promotion: version 2 replaces version 1 in service.
    newer = tiny_models.build_triage_onnx(build / "triage-2.onnx", threshold=0.5)
    tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, newer, version="2")
    with live_server(create_app(settings)) as base_url:
        fhir = _fhirpy(env, base_url, engine)
        etag = f'W/"{cached["meta"]["versionId"]}"'
        # The engine revalidates its copy: unchanged (304, no body), and truly so.
        answer = fhir._do_request(
            "get", f"Device/{device_id}", extra_headers={"If-None-Match": etag}, returning_status=True
        )
        assert answer == (None, 304)
        assert fhir.reference("Device", device_id).to_resource().serialize() == cached
        served_now = requests.get(
            f"{base_url}/v1/models", headers={"Authorization": fhir.authorization}, timeout=30
        ).json()["models"]
        assert {m["name"]: m["version"] for m in served_now}[tiny_models.TRIAGE_NAME] == "2"

    # Each read, the 304 included, is on the trail, as is the search (a Device is about no patient).
    read = ("Device", device_id, None, "success")
    assert fhir_reads(env, engine) == [read, ("Device", None, None, "success"), read, read]
