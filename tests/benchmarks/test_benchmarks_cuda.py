"""The CUDA check (``python -m benchmarks.cuda``) run as a trial on this machine's CPU (``--provider cpu``).

The check compares the server's analyses on two providers; with the CPU on both sides everything it
compares must agree exactly, every node must be placed, and a missing model must be refused before any
work. Its CUDA side needs ``onnxruntime-gpu`` and a GPU (benchmarks/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import build_imaging_onnx, build_triage_onnx

from benchmarks import cuda


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("cuda-check")
    return build_imaging_onnx(work / "imaging.onnx"), build_triage_onnx(work / "triage.onnx")


def test_the_trial_on_the_cpu_agrees_with_itself_and_reports_every_part(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imaging, triage = models
    out = tmp_path / "report.json"
    code = cuda.main(
        [
            "--imaging",
            str(imaging),
            "--triage",
            str(triage),
            "--provider",
            "cpu",
            "--count",
            "3",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert code == 0 and report["ok"] is True
    assert report["images"] == 3 and all(min(shape) >= 64 for shape in report["shapes"])
    agreement = report["agreement"]
    assert agreement["max_probability_difference"] == 0.0
    assert agreement["max_box_shift_pixels"] == 0.0
    assert agreement["verdicts_differing"] == [] and agreement["assessable_differing"] == 0
    assert report["triage_agreement"]["max_logit_difference"] == 0.0
    # The profile saw the imaging graph's nodes, all on the CPU here.
    assert list(report["placements"]["imaging"]) == ["CPUExecutionProvider"]
    assert sum(report["placements"]["imaging"]["CPUExecutionProvider"].values()) > 5
    assert {f"session_run_batch_{n}" for n in cuda.BATCHES} <= set(report["seconds_median"])
    assert json.loads(capsys.readouterr().out) == report


def test_a_missing_model_file_is_refused_before_any_work(
    models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, triage = models
    code = cuda.main(
        ["--imaging", str(tmp_path / "absent.onnx"), "--triage", str(triage), "--provider", "cpu"]
    )
    assert code == 2
    assert "absent.onnx" in capsys.readouterr().err
