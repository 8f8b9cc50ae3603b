"""``dxassist drift``: the served imaging version's drift report from the record, exit 1 while in alert."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import tiny_models

from inference.cli import main
from inference.config import Settings
from inference.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "record"))
from _record_data import CXR_MODEL, imaging  # noqa: E402

_BINS = {"edges": [0.5, 1.0], "fractions": [0.4, 0.3, 0.3]}
REFERENCE = {
    "method": "psi-quantile-bins",
    "bins": 3,
    "n": 200,
    "signals": {"ood": _BINS, "p_pleural_effusion": {"edges": [0.2, 0.6], "fractions": [0.5, 0.3, 0.2]}},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    monkeypatch.setenv("DXASSIST_DRIFT_MIN_OBSERVATIONS", "5")
    settings = Settings(home=home)
    path = tiny_models.build_imaging_onnx(tmp_path / "cxr.onnx", reference=REFERENCE)
    tiny_models.seed_cache(settings.model_cache, "cxr-findings", path, version=CXR_MODEL.version)
    return home


def _file(home: Path, n: int, score: float, effusion: float = 0.91) -> None:
    record = Record(Settings(home=home).record_url)
    try:
        record.migrate()
        for _ in range(n):
            data = imaging()
            findings = (dataclasses.replace(data.findings[0], probability=effusion), *data.findings[1:])
            record.results.save_imaging(
                data=dataclasses.replace(
                    data, findings=findings, assessable=True, ood_score=score, ood_threshold=5.0
                )
            )
    finally:
        record.close()


def test_no_drift_on_reference_like_results(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Spread over the bins as the validation images were: 40/30/30 for the score, 50/30/20 for effusion.
    for n, score, effusion in ((4, 0.2, 0.1), (1, 0.7, 0.1), (2, 0.7, 0.4), (1, 2.0, 0.4), (2, 2.0, 0.8)):
        _file(home, n, score, effusion)
    assert main(["drift", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "cxr-findings" and report["version"] == CXR_MODEL.version
    assert report["observations"] == 10 and report["reference_n"] == 200
    assert (
        report["alert"] is False
        and report["psi"]["ood"] < 0.01
        and report["psi"]["p_pleural_effusion"] < 0.01
    )


def test_shifted_results_put_the_report_in_alert_and_exit_1(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _file(home, 6, 40.0)  # far above every validation score
    assert main(["drift"]) == 1
    out = capsys.readouterr().out
    assert "ALERT" in out and "ood" in out and "DRIFT" in out
