"""The synthetic vital-signs generator: deterministic, plausible, and a fair test for NEWS2."""

import json
from pathlib import Path

import numpy as np
import pytest

from inference.triage import FEATURES, compute_news2
from training.data import generate_vitals, to_vital_signs
from training.data._vitals import main as vitals_main
from training.evaluate import auroc

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def table():
    return generate_vitals(12_000, 11)


def test_same_seed_same_table_different_seed_different_table() -> None:
    a, b, c = generate_vitals(500, 3), generate_vitals(500, 3), generate_vitals(500, 4)
    for name in FEATURES:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.columns["heart_rate"], c.columns["heart_rate"], equal_nan=True)


def test_prevalence_and_missingness_are_realistic(table) -> None:
    assert 0.09 <= table.label.mean() <= 0.15
    missing = {name: float(np.isnan(table.columns[name]).mean()) for name in FEATURES}
    assert 0.06 <= missing["temperature"] <= 0.14
    assert 0.05 <= missing["diastolic_bp"] <= 0.11
    assert 0.02 <= missing["consciousness"] <= 0.08
    assert all(0.0 < rate < 0.15 for rate in missing.values())


def test_values_are_charted_like_nurses_chart_them(table) -> None:
    for name in ("respiratory_rate", "heart_rate", "spo2", "systolic_bp", "diastolic_bp"):
        column = table.columns[name][~np.isnan(table.columns[name])]
        np.testing.assert_array_equal(column, np.round(column))
    temp = table.columns["temperature"][~np.isnan(table.columns["temperature"])]
    np.testing.assert_allclose(temp, np.round(temp, 1))
    assert set(np.unique(table.spo2_scale)) == {1, 2}


def test_every_row_is_valid_vital_signs(table) -> None:
    for i in range(0, len(table), 7):
        to_vital_signs(table, i)  # raises VitalsRejected if the generator left the plausible ranges


def test_news2_is_a_decent_but_imperfect_baseline(table) -> None:
    totals = table.news2_totals()
    computable = ~np.isnan(totals)
    assert 0.6 < computable.mean() < 0.9
    assert 0.75 <= auroc(table.label[computable], totals[computable]) <= 0.87
    # risk rises with the NEWS2 band, as on real wards
    bands = {"low": [], "medium": [], "high": []}
    for i in np.flatnonzero(computable)[:4000]:
        score = compute_news2(to_vital_signs(table, int(i)))
        if score.band in bands:
            bands[score.band].append(table.label[i])
    rates = [np.mean(bands[b]) for b in ("low", "medium", "high")]
    assert rates[0] < rates[1] < rates[2]


def test_take_keeps_rows_together(table) -> None:
    subset = table.take(np.arange(10, 20))
    assert len(subset) == 10
    assert subset.label.tolist() == table.label[10:20].tolist()
    values, present = subset.arrays()
    assert values.shape == present.shape == (10, len(FEATURES))
    assert np.all(values[present == 0] == 0)


def test_seed_file_is_what_the_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "vitals.json"
    assert vitals_main(["--seed-file", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == json.loads((ROOT / "seeds" / "vitals.json").read_text(encoding="utf-8"))
    assert 8 <= len(written) <= 12
    assert all(r["patient"]["identifier"].startswith("IPP-SYN-") for r in written)
    assert any("temperature" not in r or "on_oxygen" not in r or "respiratory_rate" not in r for r in written)


def test_the_model_learns_from_what_the_server_gives_it(table) -> None:
    """SpO2 on NEWS2 Scale 2 is withheld from the model in training as in serving."""
    from inference.triage import encode_features, model_inputs

    values, present = table.arrays()
    spo2 = FEATURES.index("spo2")
    scale_2 = (table.spo2_scale == 2) & ~np.isnan(table.columns["spo2"])
    assert scale_2.sum() > 100  # the generator charts hypercapnic patients on Scale 2
    assert np.all(present[scale_2, spo2] == 0) and np.all(values[scale_2, spo2] == 0)
    assert np.all(present[(table.spo2_scale == 1) & ~np.isnan(table.columns["spo2"]), spo2] == 1)
    for i in [*np.flatnonzero(scale_2)[:20], *np.flatnonzero(~scale_2)[:20]]:
        served_values, served_present = encode_features(model_inputs(to_vital_signs(table, int(i)))[0])
        np.testing.assert_array_equal(present[i], served_present)
        np.testing.assert_array_equal(values[i], served_values)
