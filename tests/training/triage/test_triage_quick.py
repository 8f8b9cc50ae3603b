"""The quick profile (what `dxassist bootstrap` trains) beats NEWS2 on the same test rows."""

import pytest

from training.pipeline import TriageConfig, train_triage


@pytest.mark.slow
def test_quick_profile_beats_news2_on_the_same_rows(tmp_path) -> None:
    outcome = train_triage(TriageConfig.from_profile("quick", out_dir=tmp_path, progress=False))
    m = outcome.metrics
    assert m["test_news2_n"] > 5000
    assert 0.75 <= m["test_news2_auroc"] <= 0.87
    assert m["test_auroc_news2_subset"] > m["test_news2_auroc"] + 0.005
    assert m["val_auroc"] > 0.8
    # With signs missing at random, beside NEWS2's known part on the same rows.
    assert m["test_masked_auroc"] > m["test_masked_news2_auroc"]
    assert m["test_masked_ece"] < 0.05
    assert m["shape_monotonicity_violation"] <= 1e-5 and m["missing_contribution_max"] == 0.0
    assert outcome.parity_passed
