"""The viewer's probabilities: a saturated model output is never shown as a certainty."""

from __future__ import annotations

import pytest

from inference.api.ui._i18n import Formats


@pytest.mark.parametrize(
    ("value", "lang", "shown"),
    [
        (0.99955, "en", ">99.9%"),
        (1.0, "en", ">99.9%"),
        (0.99955, "fr", ">99,9%"),
        (0.0002, "en", "<0.1%"),
        (0.0, "en", "<0.1%"),
        (0.873, "en", "87.3%"),
        (0.9994, "en", "99.9%"),
        (None, "en", "–"),
    ],
)
def test_percent_bounds_what_a_model_can_mean(value: float | None, lang: str, shown: str) -> None:
    assert Formats(lang).percent(value) == shown
