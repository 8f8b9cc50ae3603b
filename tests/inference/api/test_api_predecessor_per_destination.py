"""A study analysed again: each destination's SR names the report that destination received, not another's,
and the new series are numbered after the earlier analysis's.

The archive "vna" is down while the first result of a study goes out; the PACS receives its SR. When the
study is analysed again (a late instance), the new SR supersedes the first at the PACS; at the archive,
which never received the first, it supersedes nothing. Before, one SR went to both, naming the first SR
everywhere: the archive's viewers were pointed at a report it does not hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from io import BytesIO

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from _loopback import free_port
from _stow_destination import Received, stow_destination
from pydicom import dcmread
from sqlalchemy import text

from inference.api import create_app
from inference.record import Record


@pytest.fixture(scope="module")
def two_destinations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, TestClient, Received]]:
    """A server delivering to a PACS that answers (the test's STOW-RS endpoint) and an archive that is down
    (nothing listens on its port: its objects stay pending)."""
    home = tmp_path_factory.mktemp("dxassist-two-destinations")
    with stow_destination() as (url, received):
        destinations = [
            {"name": "pacs", "kind": "stowrs", "url": url, "token": "pacs-token", "timeout_seconds": 5},
            {
                "name": "vna",
                "kind": "stowrs",
                "url": f"http://127.0.0.1:{free_port()}/dicom-web",
                "token": "vna-token",
                "timeout_seconds": 5,
            },
        ]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DXASSIST_HOME", str(home))
            mp.setenv("DXASSIST_DESTINATIONS", json.dumps(destinations))
            mp.setenv("DXASSIST_DELIVERY_POLL_SECONDS", "0.1")
            mp.setenv("DXASSIST_DELIVERY_BACKOFF_SECONDS", "0.2")
            settings = make_settings(home)
            tiny_models.seed_both(settings.model_cache, home / "build")
            env = Env(home=home, settings=settings)
            with TestClient(create_app(settings)) as client:
                yield env, client, received


def _upload(client: TestClient, env: Env, study: str, number: int, view: str) -> str:
    blob = chest_dicom(study=study, sop=f"{study}.{number}", view=view, blob=True)
    response = client.post(
        "/v1/studies",
        files=[("files", (f"{number}.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility="F1"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["result_id"])


def _sr_sent_to_pacs(client: TestClient, env: Env, result_id: str, timeout: float = 60.0) -> str:
    """The SOP Instance UID of the result's SR once the PACS received it and the archive's copy is queued
    (each destination's objects are built and queued in turn; fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/results/{result_id}", headers=env.headers("radiologist"))
        assert response.status_code == 200, response.text
        deliveries = response.json()["deliveries"]
        sent = [d for d in deliveries if (d["destination"], d["kind"], d["state"]) == ("pacs", "sr", "sent")]
        archived = [d for d in deliveries if (d["destination"], d["kind"]) == ("vna", "sr")]
        if sent and archived:
            return str(sent[0]["object"])
        if time.monotonic() > deadline:
            pytest.fail(f"The SR of the result did not reach the PACS in {timeout} s: {deliveries}")
        time.sleep(0.1)


def _queued(env: Env, result_id: str, kind: str = "sr") -> dict[str, bytes]:
    """The bytes of the result's first object of ``kind`` queued for each destination (an SR keeps them
    while pending and after it was sent, a capture while pending)."""
    record = Record(env.settings.record_url)
    try:
        with record.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT destination, payload FROM outbox WHERE result_id = :id AND kind = :kind "
                    "ORDER BY id DESC"
                ),
                {"id": result_id, "kind": kind},
            ).all()
    finally:
        record.close()
    return {str(row.destination): bytes(row.payload) for row in rows}


def _predecessors(payload: bytes) -> list[str]:
    sr = dcmread(BytesIO(payload))
    return [
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.get("PredecessorDocumentsSequence", [])
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    ]


def test_each_destination_gets_an_sr_naming_the_report_it_received(
    two_destinations: tuple[Env, TestClient, Received],
) -> None:
    env, client, received = two_destinations
    study = new_study_uid()
    first = _upload(client, env, study, 1, "PA")
    first_sr = _sr_sent_to_pacs(client, env, first)
    second = _upload(client, env, study, 2, "AP")
    assert second != first
    second_sr = _sr_sent_to_pacs(client, env, second)

    queued = _queued(env, second)
    assert set(queued) == {"pacs", "vna"}
    assert _predecessors(queued["pacs"]) == [first_sr]
    assert _predecessors(queued["vna"]) == []  # the archive never received the first SR
    # The same report in the same series at both; naming different predecessors, they are two instances
    # (one SOP Instance UID never stands for two contents).
    pacs, vna = (dcmread(BytesIO(queued[name])) for name in ("pacs", "vna"))
    assert pacs.SeriesInstanceUID == vna.SeriesInstanceUID
    assert str(pacs.SOPInstanceUID) == second_sr != str(vna.SOPInstanceUID)
    # What the PACS received is the SR naming the first.
    [delivered] = [ds for ds in received.datasets() if str(ds.SOPInstanceUID) == second_sr]
    assert delivered.PredecessorDocumentsSequence[0].StudyInstanceUID == study


def test_a_study_analysed_again_gets_series_numbers_of_its_own(
    two_destinations: tuple[Env, TestClient, Received],
) -> None:
    # Before, every analysis of a study made an SR series 9001 and a heatmap series 9002: a study analysed
    # twice listed two series of each number in the PACS, which viewers and hanging protocols confuse.
    env, client, _received = two_destinations
    study = new_study_uid()
    results = [_upload(client, env, study, 1, "PA")]
    _sr_sent_to_pacs(client, env, results[0])
    results.append(_upload(client, env, study, 2, "AP"))
    _sr_sent_to_pacs(client, env, results[1])
    numbers = []
    for result_id in results:
        # The archive is down: what is queued for it is still held, captures included.
        sr, sc = (dcmread(BytesIO(_queued(env, result_id, kind)["vna"])) for kind in ("sr", "sc"))
        numbers.append((int(sr.SeriesNumber), int(sc.SeriesNumber)))
    assert numbers == [(9001, 9002), (9003, 9004)]
