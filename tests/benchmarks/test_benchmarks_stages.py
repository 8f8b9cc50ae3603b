"""The benchmark's stage budget: where an upload's time goes, read from the server's own ``/metrics`` text.

The scrapes are the real exposition of ``inference.observability`` after real ``observe_stage`` and
``observe_request`` calls (what the server records per upload); no time is measured or asserted here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _report, _stages
from inference.analysis import observe_stage
from inference.observability import exposition, observe_request

MODEL = {"model": "stages-test", "version": "1"}


def _scrape() -> str:
    body, _ = exposition()
    return body.decode()


def _upload(decode: float, preprocess: float, inference: float, explain: float, commit: float) -> None:
    for stage, seconds in (
        ("decode", decode),
        ("preprocess", preprocess),
        ("inference", inference),
        ("explain", explain),
        ("record_commit", commit),
    ):
        observe_stage(stage, seconds=seconds, **MODEL)
    observe_request(route="/v1/studies", method="POST", status=201, seconds=decode + preprocess + 0.05)


def test_budget_is_each_stages_mean_per_upload_and_the_rest_outside_them() -> None:
    before = _scrape()
    _upload(0.020, 0.030, 0.010, 0.040, 0.008)
    _upload(0.040, 0.050, 0.030, 0.060, 0.012)
    observe_request(route="/metrics", method="GET", status=200, seconds=0.5)  # another route: not counted
    after = _scrape()

    entry = _stages.from_scrapes([before, after], requests=2, client_mean=0.200, route="/v1/studies")

    assert entry is not None
    assert list(entry["stages_ms"]) == ["decode", "preprocess", "inference", "explain", "record_commit"]
    assert entry["stages_ms"] == {
        "decode": 30.0,
        "preprocess": 40.0,
        "inference": 20.0,
        "explain": 50.0,
        "record_commit": 10.0,
    }
    assert entry["in_stages_ms"] == 150.0
    assert entry["outside_stages_ms"] == 50.0  # 200 ms waited by the client, 150 of it in stages
    assert entry["observations_per_request"] == dict.fromkeys(entry["stages_ms"], 1.0)
    assert entry["server_request_mean_ms"] == 120.0  # (0.10 + 0.14) / 2; the /metrics GET left out
    assert entry["outside_server_ms"] == 80.0
    assert entry["outside_stages_is"] == _stages.UPLOAD_OUTSIDE


def test_a_stage_run_twice_per_request_counts_both_in_its_mean_per_request() -> None:
    before = _stages.parse(_scrape())
    for _ in range(3):
        observe_stage("overlay", seconds=0.010, **MODEL)
        observe_stage("overlay", seconds=0.030, **MODEL)
    after = _stages.parse(_scrape())

    found = _stages.budget(before, after, requests=3, client_mean=0.050)

    assert found is not None
    assert found.stages == {"overlay": pytest.approx(0.040)}
    assert found.per_request == {"overlay": pytest.approx(2.0)}
    assert found.outside_stages == pytest.approx(0.010)
    assert found.server_mean is None


def test_totals_add_up_every_model_version_and_worker_series() -> None:
    """``serve --workers`` adds the workers up in one series; two models are two series: both summed."""
    text = "\n".join(
        [
            "# HELP dxassist_stage_seconds Wall time of one stage.",
            "# TYPE dxassist_stage_seconds histogram",
            'dxassist_stage_seconds_bucket{le="+Inf",model="a",stage="decode",version="1"} 3.0',
            'dxassist_stage_seconds_count{model="a",stage="decode",version="1"} 3.0',
            'dxassist_stage_seconds_sum{model="a",stage="decode",version="1"} 0.3',
            'dxassist_stage_seconds_count{model="a",stage="decode",version="2"} 1.0',
            'dxassist_stage_seconds_sum{model="a",stage="decode",version="2"} 0.5',
            "",
        ]
    )

    stages = _stages.parse(text).stages
    assert list(stages) == ["decode"]
    assert stages["decode"][0] == pytest.approx(0.8)
    assert stages["decode"][1] == 4.0


def test_no_budget_without_two_scrapes_or_without_any_stage_in_between() -> None:
    text = _scrape()

    assert _stages.from_scrapes([text], requests=5, client_mean=0.1) is None
    assert _stages.from_scrapes([text, text], requests=5, client_mean=0.1) is None
    assert _stages.from_scrapes([], requests=0, client_mean=0.0) is None


def _results(stages: dict[str, Any]) -> dict[str, Any]:
    timing = {"n": 10, "median_ms": 20.0, "p95_ms": 30.0, "mean_ms": 21.0}
    syntax = {
        "label": "Explicit VR Little Endian",
        "file_bytes": 8_000_000,
        "reduction": 1,
        "decoded_shape": [2048, 2048],
        "decode": {**timing, "median_ms": 10.0},
        "decode_preprocess": {**timing, "median_ms": 25.0},
        "preprocess": {**timing, "median_ms": 12.0},
        "loop": {**timing, "median_ms": 30.0},
        "explain": {**timing, "median_ms": 8.0, "positives": 5},
        "overlay": {**timing, "median_ms": 6.0},
    }
    return {
        "machine": {
            "cpu_model": "test cpu",
            "cores": 2,
            "cores_usable": 2,
            "ram_gib": 4,
            "os": "Linux",
            "python": "3.11",
            "onnxruntime": "1",
            "torch": "2",
            "pydicom": "3",
            "date": "2026-12-02",
        },
        "run": {
            "quick": True,
            "input_size": 160,
            "architecture": "CxrNet",
            "session": {},
            "seconds_total": 1,
        },
        "models": {"160": {"ort": {**timing, "median_ms": 4.0}}},
        "syntaxes": {"explicit": syntax},
        "missing_encoders": {},
        "decode_problems": {},
        "server": stages,
        "ratios": [],
    }


def _server_with_budget() -> dict[str, Any]:
    before = _scrape()
    _upload(0.020, 0.030, 0.010, 0.040, 0.010)
    upload = _stages.from_scrapes([before, _scrape()], requests=1, client_mean=0.160, route="/v1/studies")
    before = _scrape()
    observe_stage("overlay", seconds=0.070, **MODEL)
    first = _stages.from_scrapes(
        [before, _scrape()], requests=1, client_mean=0.090, outside_is=_stages.PICTURE_OUTSIDE
    )
    gets = {"n": 1, "median_ms": 90.0, "p95_ms": 90.0, "mean_ms": 90.0}
    layer = {**gets, "median_ms": 40.0}
    pictures = {"first": gets, "cached": gets, "image": gets, "layer": layer, "first_stages": first}
    return {"stages": {"explicit": upload}, "latency": {"explicit": gets}, "pictures": pictures}


def test_the_report_sets_each_stage_beside_the_bare_loops_own_figure() -> None:
    results = _results(_server_with_budget())

    rows = dict(_report.stage_rows(results))

    # server mean per upload | bare loop's own figure (decode, preprocess, ORT session.run, explain)
    assert rows["decode"] == [20.0, 10.0]
    assert rows["preprocess"] == [30.0, 12.0]
    assert rows["inference"] == [10.0, 4.0]
    assert rows["explain"] == [40.0, 8.0]
    assert rows["record_commit"][0] == 10.0 and math.isnan(rows["record_commit"][1])
    assert rows["outside the stages"] == [50.0, 4.0]  # 160 - 110; bare: 30 - 10 - 12 - 4
    assert rows["total (client mean; loop median)"] == [160.0, 30.0]
    assert rows["of it in the server's middleware"][0] == 100.0  # as the middleware observed it
    text = _report.text_report(results)
    assert "where the time goes" in text
    assert "first heatmap GET: mean 90.0 ms = overlay stage 70.0 ms + outside the stage 20.0 ms" in text
    assert "heat layer (viewer), first: p50 40.0 ms" in text


def test_the_readme_figures_gain_the_stage_table_and_keep_the_rest(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nkept above\n\n{_report.START}\nold figures\n{_report.END}\n\nkept below\n")

    assert _report.update_readme(_results(_server_with_budget()), readme)

    text = readme.read_text()
    assert text.startswith("# Title\n\nkept above\n") and text.endswith("\n\nkept below\n")
    assert "old figures" not in text
    assert "| stage, ms | Explicit VR Little Endian: server | bare |" in text
    assert "| decode | 20.0 | 10.0 |" in text
    assert "| outside the stages | 50.0 | 4.0 |" in text
    assert "| overlay stage | 70.0 | 6.0 |" in text
    assert "| outside the stage | 20.0 | |" in text
    assert f"Outside the overlay stage: {_stages.PICTURE_OUTSIDE}." in text
    assert (
        "| GET heat layer (`?layer=1`, the viewer's), first (drawn on demand) | | 40.0 | 90.0 | 1 |" in text
    )


def test_results_without_preprocess_alone_take_it_as_decode_preprocess_minus_decode() -> None:
    results = _results(_server_with_budget())
    del results["syntaxes"]["explicit"]["preprocess"]

    rows = dict(_report.stage_rows(results))

    assert rows["preprocess"] == [30.0, 15.0]
    assert rows["outside the stages"] == [50.0, 1.0]


def test_a_run_without_stage_figures_prints_no_stage_table(tmp_path: Path) -> None:
    results = _results({"stages": {"explicit": None}})
    readme = tmp_path / "README.md"
    readme.write_text(f"{_report.START}\n{_report.END}\n")

    assert _report.stage_rows(results) == []
    assert "where the time goes" not in _report.text_report(results)
    _report.update_readme(results, readme)
    assert "stage, ms" not in readme.read_text()
