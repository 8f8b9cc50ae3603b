"""The MIMIC-IV-ED adapter on a tiny file written in the MIMIC-IV-ED layout."""

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from training.data import MimicFormatError, load_mimic_ed, load_mimic_ed_dir, to_vital_signs
from training.data._mimic import TRIAGE_COLUMNS

ROWS = [
    # subject_id, stay_id, temperature (°F), heartrate, resprate, o2sat, sbp, dbp, pain, acuity,
    # chiefcomplaint
    ("10000001", "30000001", "98.6", "88", "18", "97", "132", "81", "0", "3", "Abd pain"),
    ("10000002", "30000002", "101.3", "121", "26", "91", "92", "50", "7", "2", "Fever"),
    ("10000003", "30000003", "", "UTA", "", "", "", "", "", "", "Unable"),
    (
        "10000004",
        "30000004",
        "37.2",
        "400",
        "18",
        "199",
        "70",
        "90",
        "4",
        "1",
        "Weak",
    ),  # °C typed, implausible
    ("10000005", "30000005", "97.0", "60", "14", "99", "120", "70", "0", "4", "Rash"),  # no outcome row
]
OUTCOMES = [("30000001", "0"), ("30000002", "1"), ("30000003", "0"), ("30000004", "1")]


def _write(directory: Path, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    triage = directory / ("triage.csv.gz" if gz else "triage.csv")
    lines = [",".join(TRIAGE_COLUMNS)] + [",".join(row) for row in ROWS]
    data = ("\n".join(lines) + "\n").encode()
    triage.write_bytes(gzip.compress(data) if gz else data)
    with (directory / "outcome.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["stay_id", "outcome"])
        writer.writerows(OUTCOMES)
    return directory


@pytest.mark.parametrize("gz", [False, True])
def test_reads_converts_and_cleans(tmp_path: Path, gz: bool) -> None:
    table = load_mimic_ed_dir(_write(tmp_path, gz))
    assert len(table) == 4  # the stay without an outcome is left out
    assert table.label.tolist() == [0, 1, 0, 1]
    assert table.synthetic is False
    np.testing.assert_allclose(table.columns["temperature"][:2], [37.0, 38.5])  # °F → °C, one decimal
    assert table.columns["respiratory_rate"][1] == 26 and table.columns["spo2"][1] == 91
    # empty and non-numeric → missing
    assert np.isnan(table.columns["heart_rate"][2]) and np.isnan(table.columns["temperature"][2])
    # implausible → missing: 37.2 °F, HR 400, SpO2 199; DBP not below SBP
    row = {name: table.columns[name][3] for name in table.columns}
    assert np.isnan(row["temperature"]) and np.isnan(row["heart_rate"]) and np.isnan(row["spo2"])
    assert row["systolic_bp"] == 70 and np.isnan(row["diastolic_bp"])
    # not recorded at ED triage
    assert np.isnan(table.columns["on_oxygen"]).all() and np.isnan(table.columns["consciousness"]).all()
    assert table.group.tolist() == [10000001, 10000002, 10000003, 10000004]
    v = to_vital_signs(table, 1)
    assert (v.heart_rate, v.on_oxygen, v.spo2_scale) == (121.0, None, 1)


def test_missing_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "triage.csv").write_text("subject_id,stay_id,temperature\n1,2,98.6\n")
    (tmp_path / "outcome.csv").write_text("stay_id,outcome\n2,0\n")
    with pytest.raises(MimicFormatError, match="heartrate"):
        load_mimic_ed(tmp_path / "triage.csv", tmp_path / "outcome.csv")


def test_outcome_must_be_binary(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "outcome.csv").write_text("stay_id,outcome\n30000001,yes\n")
    with pytest.raises(MimicFormatError, match="0 or 1"):
        load_mimic_ed_dir(tmp_path)


def test_missing_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(MimicFormatError, match=r"triage\.csv"):
        load_mimic_ed_dir(tmp_path)
