"""`dxassist audit verify` and `dxassist export-training-set` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.cli import main
from inference.config import get_settings
from inference.record import Record

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "studies"


def test_audit_verify_reports_an_intact_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path))
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("audit trail intact:")


def test_export_training_set_writes_deidentified_copies_of_the_seed_studies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pydicom

    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path / "home"))
    out = tmp_path / "export"
    assert main(["export-training-set", "--source", str(SEEDS), "--out", str(out)]) == 0
    files = sorted((out / "dicom").rglob("*.dcm"))
    assert len(files) == len(list(SEEDS.glob("*.dcm")))
    originals = {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in SEEDS.glob("*.dcm")}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID not in originals
        assert "SYNTHETIC" not in str(ds.PatientName)
    # a second export into the same, now non-empty, folder is refused rather than mixed
    assert main(["export-training-set", "--source", str(SEEDS), "--out", str(out)]) == 2
    # the export is audited under an id of its own, as its log lines are
    assert main(["export-training-set", "--source", str(SEEDS), "--out", str(tmp_path / "again")]) == 0
    record = Record(get_settings().record_url)
    try:
        entries = [e for e in record.audit.events(limit=500) if e["action"] == "export:training-set"]
    finally:
        record.close()
    ids = [e["request_id"] for e in entries]
    assert len(ids) == 2 and all(str(i).startswith("export-") for i in ids) and ids[0] != ids[1]
