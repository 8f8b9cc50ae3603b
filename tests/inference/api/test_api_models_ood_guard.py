"""What the imaging model's out-of-distribution guard refuses, where operators and ML engineers look:
``GET /v1/models`` and the server's log when it starts serving a version.

Champion ``cxr-findings`` version 1 is the tiny model exported without the lateral contrast term (as every
model exported before it was, and a model retrained on a data set without lateral films is), with the single
older ``contrast`` object (the lateral term, no mirrored neighbour), or with the list of ``neighbours``
training writes today (lateral and mirrored frontal films, each with its weight).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app
from inference.runtime import read_metadata, write_metadata


def _with_contrast(path: Path) -> Path:
    """The tiny imaging model whose guard metadata says it carries the lateral contrast term."""
    model = onnx.load(str(path))
    meta = read_metadata(model)
    ood = json.loads(meta["dxassist.ood"])
    ood["contrast"] = {"neighbour": "lateral chest phantoms tagged frontal", "fitted_on": 160, "weight": 10.0}
    write_metadata(model, meta | {"dxassist.ood": json.dumps(ood)})
    onnx.save(model, str(path))
    return path


def _with_neighbours(path: Path) -> Path:
    """The tiny imaging model whose guard metadata lists both neighbours, as training writes it today."""
    model = onnx.load(str(path))
    meta = read_metadata(model)
    ood = json.loads(meta["dxassist.ood"])
    lateral = {"neighbour": "lateral chest phantoms tagged frontal", "fitted_on": 160, "weight": 10.0}
    mirrored = {"neighbour": "training frontal films flipped left-right", "fitted_on": 9, "weight": 40.0}
    ood["contrast"] = lateral
    ood["neighbours"] = [{"name": "lateral", **lateral}, {"name": "mirrored", **mirrored}]
    write_metadata(model, meta | {"dxassist.ood": json.dumps(ood)})
    onnx.save(model, str(path))
    return path


def _home(root: Path, *, guard: str) -> Env:
    build = root / "build"
    settings = make_settings(root)
    imaging = tiny_models.build_imaging_onnx(build / "imaging.onnx")
    with_guard = {"contrast": _with_contrast, "neighbours": _with_neighbours}
    tiny_models.seed_cache(
        settings.model_cache,
        tiny_models.IMAGING_NAME,
        imaging if guard == "none" else with_guard[guard](imaging),
    )
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
    )
    return Env(home=root, settings=settings)


def _guard_warnings(
    caplog: pytest.LogCaptureFixture, event: str = "model_guard_without_lateral_contrast"
) -> list[logging.LogRecord]:
    """The guard warnings logged while the server started (the fixture's set-up) and since."""
    records = caplog.get_records("setup") + caplog.get_records("call")
    return [r for r in records if getattr(r, "event", None) == event]


@pytest.fixture
def served(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple]:
    env = _home(tmp_path, guard=request.param)
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO):
        mp.setenv("DXASSIST_HOME", str(tmp_path))
        with TestClient(create_app(env.settings)) as client:
            yield env, client, caplog


@pytest.mark.parametrize("served", ["none"], indirect=True)
def test_a_guard_without_lateral_contrast_is_listed_and_logged(served: tuple) -> None:
    env, client, caplog = served
    response = client.get("/v1/models", headers=env.headers("ml_engineer"))

    assert response.status_code == 200, response.text
    models = {m["name"]: m for m in response.json()["models"]}
    guard = models["cxr-findings"]["ood_guard"]
    assert guard["lateral_contrast"] is False
    assert guard["neighbours"] == [] and len(guard["warnings"]) == 2
    assert guard["method"] == "mahalanobis-pooled-tiny" and guard["threshold"] > 0
    assert models["vitals-triage"]["ood_guard"] is None
    warnings = _guard_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "lateral film whose header says frontal may be scored" in warnings[0].getMessage()


@pytest.mark.parametrize("served", ["contrast"], indirect=True)
def test_a_guard_with_lateral_contrast_says_so_and_logs_no_warning(served: tuple) -> None:
    env, client, caplog = served
    response = client.get("/v1/models", headers=env.headers("radiologist"))

    assert response.status_code == 200, response.text
    models = {m["name"]: m for m in response.json()["models"]}
    assert models["cxr-findings"]["ood_guard"]["lateral_contrast"] is True
    assert not _guard_warnings(caplog)


@pytest.mark.parametrize("served", ["neighbours"], indirect=True)
def test_every_neighbour_the_guard_refuses_is_listed_with_its_weight(served: tuple) -> None:
    env, client, caplog = served
    response = client.get("/v1/models", headers=env.headers("ml_engineer"))

    assert response.status_code == 200, response.text
    guard = {m["name"]: m for m in response.json()["models"]}["cxr-findings"]["ood_guard"]
    assert guard["neighbours"] == [{"kind": "lateral", "weight": 10.0}, {"kind": "mirrored", "weight": 40.0}]
    assert guard["lateral_contrast"] is True
    assert guard["method"] == "mahalanobis-pooled-tiny" and guard["threshold"] > 0
    assert guard["warnings"] == []
    assert not _guard_warnings(caplog) and not _guard_warnings(caplog, "model_guard_without_mirrored")


@pytest.mark.parametrize("served", ["contrast"], indirect=True)
def test_a_guard_with_only_the_older_contrast_says_mirrored_films_are_not_refused(served: tuple) -> None:
    env, client, caplog = served
    response = client.get("/v1/models", headers=env.headers("ml_engineer"))

    assert response.status_code == 200, response.text
    guard = {m["name"]: m for m in response.json()["models"]}["cxr-findings"]["ood_guard"]
    assert guard["neighbours"] == [{"kind": "lateral", "weight": 10.0}]
    [warning] = guard["warnings"]
    assert "mirrored" in warning and "not refused" in warning
    logged = _guard_warnings(caplog, "model_guard_without_mirrored")
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    message = logged[0].getMessage()
    assert "cxr-findings version 1" in message and "mirrored" in message and "will not be refused" in message
