"""Times on the pages cannot be misread: the worklist and the viewer give the month by name (``3/4/26`` is
4 March to a reader in the United States and 3 April to one in the United Kingdom, who both get the
English pages) and say which time zone the clock time is in."""

from __future__ import annotations

import re

import pytest
from _ui_live import Env, TestClient, add_account, send_vitals, sign_in  # noqa: I001

# When the signs were measured, as a sender gives it (10:05 in London in winter, UTC).
OBSERVED = "2026-03-04T10:05:00+00:00"
SHOWN = {"en": ("Mar 4, 2026", "10:05 AM UTC"), "fr": ("4 mars 2026", "10:05 UTC")}


def _row(html: str, result_id: str) -> str:
    return _spaced(html.split(f'data-href="/ui/results/{result_id}"')[1].split("</tr>")[0])


def _spaced(text: str) -> str:
    """The text with the locale's no-break spaces (``10:05\u202fAM``) as plain ones."""
    return text.replace("\u202f", " ").replace("\xa0", " ")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_time_on_the_pages_names_its_month_and_its_zone(client: TestClient, env: Env, lang: str) -> None:
    vitals = send_vitals(client, env, observed_at=OBSERVED, respiratory_rate=28)
    client.cookies.clear()
    client.cookies.set("dxassist_lang", lang)
    assert sign_in(client, add_account(env)).status_code == 303

    row = _row(client.get("/ui/").text, vitals["result_id"])
    date, time = SHOWN[lang]
    assert date in row and time in row, row
    assert not re.search(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", row), row  # no all-digit date

    viewer = _spaced(client.get(f"/ui/results/{vitals['result_id']}").text)
    analysed = re.search(r"<span>[^<]*: ([^<]+)</span>\s*</p>", viewer)
    assert analysed and analysed.group(1).endswith(" UTC"), analysed
    assert not re.search(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", analysed.group(1)), analysed.group(1)


@pytest.mark.parametrize(("lang", "label"), [("en", "Measured"), ("fr", "Heure de mesure")])
def test_the_triage_viewer_says_when_the_signs_were_measured(
    client: TestClient, env: Env, lang: str, label: str
) -> None:
    vitals = send_vitals(client, env, observed_at=OBSERVED, respiratory_rate=28)
    client.cookies.clear()
    client.cookies.set("dxassist_lang", lang)
    assert sign_in(client, add_account(env)).status_code == 303
    viewer = _spaced(client.get(f"/ui/results/{vitals['result_id']}").text)
    date, time = SHOWN[lang]
    shown = f"{label} :" if lang == "fr" else f"{label}:"  # French puts a (no-break) space before a colon
    assert re.search(rf"{shown} <strong>{re.escape(date)}[^<]*{re.escape(time)}</strong>", viewer), viewer
