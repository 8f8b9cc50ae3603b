"""Shadow scoring: with a champion and a challenger in the cache, 20 studies and 20 vital-sign requests
are answered by the champion, the challenger's outputs are stored against the same inputs (never as
results), and ``dxassist registry compare`` prints the agreement of the two versions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, make_settings, new_study_uid
from _dxassist_cli import DXASSIST, dxassist_env

from inference.api import create_app
from inference.record import Record, ShadowResults
from inference.vocabulary import FINDINGS

N = 20


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Champion version 1 and challenger version 2 of both models, in the local cache."""
    home = tmp_path_factory.mktemp("shadow-home")
    build = home / "build"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DXASSIST_HOME", str(home))
        settings = make_settings(home, shadow_metrics_seconds=0)
        cache = settings.model_cache
        tiny_models.seed_both(cache, build)
        challenger = tiny_models.build_imaging_onnx(build / "imaging-2.onnx", seed=1, temperature=1.5)
        tiny_models.seed_cache(
            cache, tiny_models.IMAGING_NAME, challenger, version="2", aliases=("challenger",)
        )
        triage = tiny_models.build_triage_onnx(build / "triage-2.onnx", temperature=2.0, threshold=0.5)
        tiny_models.seed_cache(cache, tiny_models.TRIAGE_NAME, triage, version="2", aliases=("challenger",))
        yield Env(home=home, settings=settings)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.settings)) as test_client:
        yield test_client


def _wait_for_shadow(env: Env, model: str, count: int) -> int:
    """Shadow outputs of ``model`` filed so far, once ``count`` are there (or after a generous wait)."""
    record = Record(env.settings.record_url)
    try:
        store = ShadowResults(record.sessions)
        deadline = time.monotonic() + 120
        while True:
            found = sum(v.pairs for v in store.versions(model_name=model))
            if found >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
    finally:
        record.close()


def _cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args], env=dxassist_env(env.home), capture_output=True, text=True, timeout=300
    )


def test_twenty_studies_are_answered_by_the_champion_and_shadow_scored(client: TestClient, env: Env) -> None:
    headers = env.headers("pacs", facility="F1")
    answered: list[dict[str, Any]] = []
    for i in range(N):
        study = new_study_uid()
        blob = chest_dicom(study=study, sop=f"{study}.1", blob=i % 3 == 0, seed=i)
        response = client.post(
            "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
        )
        assert response.status_code == 201, response.text
        answered.append(response.json())
    # Every answer is the champion's; nothing in it comes from the challenger.
    assert {(r["model"]["name"], r["model"]["version"]) for r in answered} == {("cxr-findings", "1")}
    assert _wait_for_shadow(env, "cxr-findings", N) == N

    record = Record(env.settings.record_url)
    try:
        pairs = ShadowResults(record.sessions).pairs(
            model_name="cxr-findings", champion_version="1", challenger_version="2"
        )
        ids = {r["result_id"] for r in answered}
        assert {p.result_id for p in pairs} == ids  # stored against the same inputs
        # The challenger really scored them itself (another model: other probabilities).
        assert any(
            abs(p.champion.probabilities[c] - p.challenger.probabilities[c]) > 1e-3
            for p in pairs
            for c in p.champion.probabilities
        )
    finally:
        record.close()

    # Never a clinical result: not a result, not on the worklist, not in FHIR.
    worklist = client.get("/v1/worklist", params={"limit": 500}, headers=env.headers("radiologist")).json()
    assert all(item["model"]["version"] == "1" for item in worklist["items"] if "model" in item)
    for r in answered[:3]:
        fhir = client.get(
            "/fhir/DiagnosticReport", params={"patient": r["patient"]["id"]}, headers=env.headers("clinician")
        ).json()
        assert '"2"' not in str([e["resource"].get("device") for e in fhir.get("entry", [])])

    done = _cli(env, "registry", "compare", "cxr-findings")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "champion version 1 vs challenger version 2 on 20 input(s)" in out
    for header in ("FINDING", "POS AGREE", "NEG AGREE", "KAPPA", "MEAN |DIFF|", "PSI"):
        assert header in out
    for code in FINDINGS:
        assert code in out
    assert "OOD guard pass rate" in out

    metrics = client.get("/metrics").text
    assert 'dxassist_shadow_pairs{challenger="2",champion="1",model="cxr-findings"} 20.0' in metrics
    assert 'statistic="kappa"' in metrics


def test_twenty_vital_sign_requests_are_shadow_scored(client: TestClient, env: Env) -> None:
    answered = []
    for i in range(N):
        body = {
            "patient": {"identifier": f"SH-{uuid.uuid4().hex[:10]}"},
            "respiratory_rate": 12 + i,
            "spo2": 99 - i // 2,
            "heart_rate": 60 + 3 * i,
            "temperature": 36.5 + i * 0.1,
            "consciousness": "A",
        }
        response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
        assert response.status_code == 201, response.text
        answered.append(response.json())
    assert {r["model"]["version"] for r in answered} == {"1"}
    assert _wait_for_shadow(env, "vitals-triage", N) == N

    done = _cli(env, "registry", "compare", "vitals-triage")
    assert done.returncode == 0, done.stderr
    assert "champion version 1 vs challenger version 2 on 20 input(s)" in done.stdout
    assert "deterioration" in done.stdout and "KAPPA" in done.stdout

    # Readers' verdicts turn into sensitivity and specificity of both versions, with Wilson intervals.
    for r in answered[:6]:
        verdict = {"verdicts": [{"code": "deterioration", "verdict": "agree"}]}
        reader = env.headers("radiologist", subject="dr-reader")
        response = client.post(f"/v1/results/{r['result_id']}/feedback", json=verdict, headers=reader)
        assert response.status_code == 201, response.text
    done = _cli(env, "registry", "compare", "vitals-triage", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["reader_verdicts"] == 6 and data["pairs"] == N
    [reader] = data["readers"]
    assert reader["verdicts"] == 6
    low, high = reader["champion_specificity"]["interval"] or reader["champion_sensitivity"]["interval"]
    assert 0.0 <= low <= high <= 1.0


def test_a_full_queue_drops_instead_of_waiting(env: Env) -> None:
    import asyncio

    from inference.runtime import ShadowQueue
    from inference.runtime._shadow import SHADOW_DROPPED

    async def scenario() -> tuple[list[bool], int]:
        queue = ShadowQueue(2)
        queue.start()
        gate = asyncio.Event()
        ran = []

        async def job() -> None:
            await gate.wait()
            ran.append(1)

        offered = [queue.offer("drop-test", job) for _ in range(5)]
        gate.set()
        await queue.drain()
        await queue.stop()
        return offered, len(ran)

    before = SHADOW_DROPPED.labels("drop-test")._value.get()
    offered, ran = asyncio.run(scenario())
    # The worker may already hold the first job: two or three accepted, the rest dropped and counted.
    accepted = sum(offered)
    assert 2 <= accepted <= 3 and ran == accepted
    assert SHADOW_DROPPED.labels("drop-test")._value.get() - before == 5 - accepted


def test_cli_compare_without_a_pair_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(DXASSIST), "registry", "compare", "cxr-findings"],
        env=dxassist_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "no champion/challenger pair" in done.stdout
    assert sys.executable  # the console script of this interpreter ran


def _kept(env: Env) -> set[str]:
    from sqlalchemy import select

    from inference.record._training_inputs import TrainingInput

    record = Record(env.settings.record_url)
    try:
        with record.sessions() as session:
            return set(session.scalars(select(TrainingInput.result_id)))
    finally:
        record.close()


def test_model_inputs_are_kept_only_while_consent_allows_and_never_with_burned_in_text(
    client: TestClient, env: Env
) -> None:
    from pydicom import dcmread

    headers = env.headers("pacs", facility="F1")
    patient = f"KEEP-{uuid.uuid4().hex[:8]}"
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", patient_id=patient, seed=3)
    response = client.post(
        "/v1/studies", files=[("files", ("a.dcm", blob, "application/dicom"))], headers=headers
    )
    assert response.status_code == 201, response.text
    kept = response.json()
    assert kept["result_id"] in _kept(env)

    # An image declaring burned-in annotation: analysed, but its pixels are not kept for retraining.
    study = new_study_uid()
    ds = dcmread(io.BytesIO(chest_dicom(study=study, sop=f"{study}.1", seed=4)))
    ds.BurnedInAnnotation = "YES"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    response = client.post(
        "/v1/studies", files=[("files", ("b.dcm", out.getvalue(), "application/dicom"))], headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["result_id"] not in _kept(env)

    # The patient objects to AI processing: what was kept of them is deleted with the objection.
    deny = {"ai_processing": "deny", "national_sharing": "permit"}
    path = f"/v1/patients/{kept['patient']['id']}/consent"
    assert client.put(path, json=deny, headers=env.headers("clinician", facility="F1")).status_code == 200
    assert kept["result_id"] not in _kept(env)


def test_shadow_jobs_wait_while_the_champion_is_scoring() -> None:
    import asyncio
    import math

    from inference.runtime import ShadowQueue

    async def scenario() -> tuple[int, int]:
        busy = {"since": math.inf}  # the champion is scoring
        queue = ShadowQueue(4, quiet=0.05, idle_since=lambda: busy["since"])
        queue.start()
        ran: list[int] = []

        async def job() -> None:
            ran.append(1)

        queue.offer("quiet-test", job)
        await asyncio.sleep(0.3)
        while_busy = len(ran)
        busy["since"] = time.monotonic()  # the champion finished: after the quiet period the job runs
        await asyncio.wait_for(queue.drain(), timeout=60)
        await queue.stop()
        return while_busy, len(ran)

    assert asyncio.run(scenario()) == (0, 1)
