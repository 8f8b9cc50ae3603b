"""How the pages write numbers and lists: a saturated model output is never shown as a certainty, and a
list of findings reads in the page's language."""

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


@pytest.mark.parametrize(
    ("lang", "shown"),
    [
        ("en", "pleural effusion and cardiomegaly"),
        ("fr", "épanchement pleural et cardiomégalie"),
        ("ar", "انصباب جنبي وتضخّم القلب"),
    ],
)
def test_a_list_of_findings_reads_in_the_page_language(lang: str, shown: str) -> None:
    # The worklist joined findings with a Latin comma in every language ("انصباب جنبي, تضخّم القلب").
    names = {
        "en": ["pleural effusion", "cardiomegaly"],
        "fr": ["épanchement pleural", "cardiomégalie"],
        "ar": ["انصباب جنبي", "تضخّم القلب"],
    }[lang]
    assert Formats(lang).items(names) == shown
    assert Formats(lang).items([]) == ""
