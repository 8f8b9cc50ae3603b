"""A result whose outputs cannot be built or delivered says so, and the dead letters show in /metrics.

The server's organisation root is one the writers refuse (too long for derived UIDs), so no output can be
built: the result is filed and answered all the same (the outputs are built by the outbox worker, after
the answer), and once the build has failed it says so, with a warning carrying the code and one ``outputs``
entry per destination in ``deliveries`` (never an empty list that hides the failure).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid

from inference.api import create_app

BAD_ORG_ROOT = "1.2.826.0.1.3680043.10.1453.11111111111.22222222222.33333333"


@pytest.fixture(scope="module")
def unbuildable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient]]:
    home = tmp_path_factory.mktemp("dxassist-unbuildable")
    # Nothing listens on port 9: never reached, since nothing can be built.
    destination = {
        "name": "vna",
        "kind": "stowrs",
        "url": "http://127.0.0.1:9/dicom-web",
        "timeout_seconds": 1,
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        mp.setenv("DXASSIST_DESTINATIONS", json.dumps([destination]))
        mp.setenv("DXASSIST_BUILD_MAX_ATTEMPTS", "1")
        settings = make_settings(home, org_root=BAD_ORG_ROOT)
        tiny_models.seed_both(settings.model_cache, home / "build")
        with TestClient(create_app(settings)) as client:
            yield Env(home=home, settings=settings), client


def test_a_result_whose_outputs_cannot_be_built_says_so(unbuildable: tuple[Env, TestClient]) -> None:
    env, client = unbuildable
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        files=[
            ("files", ("pa.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    # Answered before any build: the output owed to the destination, pending, no attempt, no warning.
    filed = response.json()
    assert [(d["destination"], d["kind"], d["state"], d["attempts"]) for d in filed["deliveries"]] == [
        ("vna", "outputs", "pending", 0)
    ]
    assert not any(w.startswith("[output_build_failed]") for w in filed["warnings"])

    def read() -> dict[str, Any]:
        answer = client.get(f"/v1/studies/{study}/result", headers=env.headers("radiologist"))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    deadline = time.monotonic() + 60
    while read()["deliveries"][0]["state"] != "dead":
        assert time.monotonic() < deadline, "the outbox worker did not dead-letter the build"
        time.sleep(0.05)
    for result in (
        read(),
        client.get(f"/v1/results/{filed['result_id']}", headers=env.headers("radiologist")).json(),
    ):
        assert any(w.startswith("[output_build_failed]") for w in result["warnings"]), result["warnings"]
        [entry] = result["deliveries"]
        assert entry["destination"] == "vna" and entry["kind"] == "outputs" and entry["object"] is None
        assert entry["state"] == "dead" and entry["error"] == "output_build_failed"
        assert entry["attempts"] == 1

    # The counter moves once the dead letter is committed (the worker's thread): a moment later.
    counted = 'dxassist_dead_lettered_total{code="output_build_failed",kind="build"}'
    while counted not in (metrics := client.get("/metrics").text):
        assert time.monotonic() < deadline, "the dead letter was not counted"
        time.sleep(0.05)
    assert 'dxassist_dead_letters{kind="build"} 1.0' in metrics


def test_discarded_dead_letters_leave_the_metrics_and_show_in_the_result(
    unbuildable: tuple[Env, TestClient],
) -> None:
    from sqlalchemy import select

    from inference.record import Record
    from inference.record._outbox import OutboxObject, outbox
    from inference.services import discard_dead_letters

    env, client = unbuildable
    study = new_study_uid()
    response = client.post(
        "/v1/studies",
        files=[
            ("files", ("pa.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))
        ],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    result_id = response.json()["result_id"]

    def read() -> dict[str, Any]:
        answer = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def gauges() -> tuple[float, float]:
        lines = client.get("/metrics").text.splitlines()
        values = {
            kind: float(line.rsplit(" ", 1)[1])
            for kind in ("build", "delivery")
            for line in lines
            if line.startswith(f'dxassist_dead_letters{{kind="{kind}"}} ')
        }
        return values["build"], values["delivery"]

    deadline = time.monotonic() + 60
    while read()["deliveries"][0]["state"] != "dead":
        assert time.monotonic() < deadline, "the outbox worker did not dead-letter the build"
        time.sleep(0.05)
    record = Record(env.settings.record_url)
    try:
        [build] = [b for b in record.builds.dead() if b["result_id"] == result_id]
        # A capture refused for good by a destination this server does not deliver to.
        capture = OutboxObject("sc", new_study_uid(), "1.2.840.10008.5.1.4.1.1.7", b"RGB" * 100_000)
        record.outbox.enqueue(result_id=result_id, destinations=["elsewhere"], objects=[capture])
        with record.sessions() as session:
            delivery = int(session.scalar(select(outbox.c.id).where(outbox.c.result_id == result_id)))
        record.outbox.mark_dead(item_id=delivery, error="Refused.", code="destination_refused")
        builds, deliveries = gauges()
        ids = [f"build:{build['id']}", f"delivery:{delivery}"]
        assert (
            discard_dead_letters(
                record=record, home=env.settings.listener_spool, ids=ids, subject="cli:operator"
            )
            == ids
        )
    finally:
        record.close()
    assert gauges() == (builds - 1, deliveries - 1)
    # The result still answers: the discarded capture says so, the outputs are no longer owed.
    result = read()
    assert [(d["destination"], d["kind"], d["state"], d["error"]) for d in result["deliveries"]] == [
        ("elsewhere", "sc", "discarded", "destination_refused")
    ]
    assert not any(w.startswith("[output_build_failed]") for w in result["warnings"]), result["warnings"]
