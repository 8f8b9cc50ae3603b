"""A result's warnings in the reader's language.

Results keep their warnings as English sentences (the API's contract). The viewer showed them as they
were, in English, on French and Arabic pages, though they are what a reader must know before trusting the
output: "NEWS2 is incomplete: these parameters are missing: spo2, temperature", "identity_mismatch: ...",
"Deteriorating over 6 h ...". A sentence made from one of the product's phrases is now written again in
the page's language, the signs and demographics it names in the reader's words; any other stays English
and is marked so.
"""

from __future__ import annotations

import html
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from _ui_live import Env, TestClient, add_account, sign_in  # noqa: I001

from inference.api.ui._views import localised_warning
from inference.record._save import mismatch_warning
from inference.services import _warnings
from inference.vocabulary import WARNING_PHRASES, read_warning


def _every_sentence() -> list[str]:
    # What training() reads of a served model: its name, version and what its metadata says it learnt from.
    served = {"name": "cxr-findings", "version": "3", "synthetic": False}
    return [
        _warnings.training(SimpleNamespace(**served, training_data="ChestX-ray14 (NIH), 2017.")),
        _warnings.training(SimpleNamespace(**served, training_data=None)),
        *(_warnings.lateral_set_aside(n) for n in (1, 2)),
        *(_warnings.not_frontal_set_aside(n) for n in (1, 3)),
        *(_warnings.other_frontals(n) for n in (1, 2)),
        _warnings.reduced_resolution(4),
        _warnings.news2_missing(["spo2", "temperature"]),
        _warnings.triage_missing(["on_oxygen"]),
        _warnings.spo2_withheld("vitals-triage", "2"),
        *(_warnings.deteriorating(4, 6.5, 4, 0.151, raised) for raised in (False, True)),
        *(_warnings.outputs_not_built("E42", dead=dead) for dead in (False, True)),
        mismatch_warning(("birth_date", "sex")),
    ]


def test_every_warning_reads_back_into_one_phrase_and_the_same_sentence() -> None:
    sentences = _every_sentence()
    used = set()
    for sentence in sentences:
        matches = [p for p in WARNING_PHRASES if p.read(sentence) is not None]
        assert len(matches) == 1, sentence
        found = read_warning(sentence)
        assert found is not None
        phrase, values = found
        assert phrase(**values) == sentence
        used.add(phrase.text)
    assert used == {p.text for p in WARNING_PHRASES}  # every phrase is some builder's
    # The English sentences are the API's, unchanged (clients match on them).
    assert sentences[2] == "1 lateral view was set aside; only the frontal view was analysed."
    assert sentences[-4] == (
        "Deteriorating over 6.5 h (4 observations): NEWS2 +4, model risk +15.1 points. The priority was "
        "raised by the site policy."
    )
    assert sentences[-1].startswith("identity_mismatch: the patient's birth date, sex sent with this result")
    assert "(target 88-92 %);" in sentences[-6]


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_each_sentence_has_its_translation_with_the_same_values(language: str) -> None:
    for sentence in _every_sentence():
        shown = localised_warning(sentence, language)
        assert shown["lang"] == language, sentence
        assert shown["text"] != sentence
        text = shown["text"].replace("\u2068", "").replace("\u2069", "")  # Arabic isolates each value
        for kept in ("cxr-findings", "vitals-triage", "E42", "1/4", "dead-letter retry"):
            if kept in sentence:
                assert kept in text, (sentence, text)


def test_a_sentence_no_phrase_made_stays_english_and_says_so() -> None:
    assert localised_warning("A site's own note, in English.", "fr") == {
        "text": "A site's own note, in English.",
        "lang": "en",
    }


def _vitals(client: TestClient, env: Env, patient: dict[str, Any], **signs: Any) -> dict[str, Any]:
    response = client.post("/v1/vitals", json={"patient": patient, **signs}, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("lang", "expected", "english_gone"),
    [
        (
            "fr",
            [
                "Le NEWS2 est incomplet, il manque ces paramètres\u00a0: saturation en oxygène et "
                "température.",
                "Le risque a été estimé sans ces mesures\u00a0: saturation en oxygène et température ;",
                "Dégradation sur 2,5\u00a0h (2 observations)\u00a0: NEWS2 +",
                "Identité divergente\u00a0: ces données du patient envoyées avec ce résultat diffèrent du "
                "dossier\u00a0: date de naissance et sexe ;",
            ],
            True,
        ),
        (
            "ar",
            ["مقياس NEWS2 غير مكتمل", "تدهور خلال \u20682.5\u2069 ساعة", "تاريخ الميلاد و", "الجنس"],
            True,
        ),
        ("en", ["NEWS2 is incomplete: these parameters are missing: spo2, temperature."], False),
    ],
)
def test_the_viewer_shows_the_warnings_of_vital_signs_in_the_page_language(
    client: TestClient, env: Env, lang: str, expected: list[str], english_gone: bool
) -> None:
    patient = {"identifier": f"V-{uuid.uuid4().hex[:8]}", "birth_date": "1950-02-01", "sex": "female"}
    _vitals(
        client, env, patient, observed_at="2026-11-22T06:00:00Z", respiratory_rate=16, spo2=97,
        on_oxygen=False, systolic_bp=125, diastolic_bp=80, heart_rate=72, temperature=37.0, consciousness="A",
    )  # fmt: skip
    # 2.5 h later, worse, two signs not measured, and another birth date and sex than the record's.
    later = _vitals(
        client, env, {**patient, "birth_date": "1951-03-04", "sex": "male"},
        observed_at="2026-11-22T08:30:00Z", respiratory_rate=25, on_oxygen=True, systolic_bp=95,
        diastolic_bp=60, heart_rate=125, consciousness="A",
    )  # fmt: skip
    warnings = later["warnings"]
    assert any(w.startswith("Deteriorating over 2.5 h") for w in warnings), warnings
    assert any(w.startswith("identity_mismatch: ") for w in warnings), warnings
    client.cookies.clear()
    assert sign_in(client, add_account(env)).status_code == 303
    page = html.unescape(client.get(f"/ui/results/{later['result_id']}", params={"lang": lang}).text)
    for text in expected:
        assert text in page, text
    if english_gone:
        assert "NEWS2 is incomplete" not in page and "identity_mismatch" not in page
        assert "Deteriorating over" not in page and 'lang="en"' not in page.split("<main", 1)[-1]
