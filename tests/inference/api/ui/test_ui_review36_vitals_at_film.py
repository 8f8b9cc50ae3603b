"""The viewer's "Recent vital signs" panel is about the film's time: a radiologist reading a film from last
week must not take today's vital signs for the clinical picture of the film. The panel lists the vital
signs measured up to the film, newest first, each with its time relative to the film, and says how many
were measured after it (not shown); the record keeps no acquisition time, so the film's time is its study
date when it was analysed on a later day, else its analysis, and the panel says which."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pydicom
import pytest
from _api_dicom import chest_dicom
from _ui_live import Env, TestClient, add_account, new_study_uid, sign_in  # noqa: I001

from inference.api.ui._i18n import Formats, translations


def _vitals(client: TestClient, env: Env, *, patient: str, at: datetime) -> dict[str, Any]:
    body = {
        "patient": {"identifier": patient}, "observed_at": at.isoformat(),
        "respiratory_rate": 16, "spo2": 98, "on_oxygen": False, "systolic_bp": 120, "diastolic_bp": 80,
        "heart_rate": 70, "temperature": 37.0, "consciousness": "A",
    }  # fmt: skip
    response = client.post("/v1/vitals", json=body, headers=env.headers("clinician"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _film(client: TestClient, env: Env, *, patient: str, date: str | None) -> dict[str, Any]:
    """A chest film of ``patient`` dated ``date`` (DICOM ``YYYYMMDD``; None: sent without a study date)."""
    study = new_study_uid()
    dataset = pydicom.dcmread(io.BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id=patient)))
    if date is None:
        del dataset.StudyDate
    else:
        dataset.StudyDate = date
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", out.getvalue(), "application/dicom"))],
        headers=env.headers("pacs"),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _panel(client: TestClient, env: Env, result_id: str, lang: str) -> str:
    """The vital-signs panel of the viewer of ``result_id`` (no-break spaces as plain ones)."""
    client.cookies.clear()
    client.cookies.set("dxassist_lang", lang)
    assert sign_in(client, add_account(env)).status_code == 303
    page = client.get(f"/ui/results/{result_id}")
    assert page.status_code == 200
    section = page.text.split('<section class="card priors triage-recent"')[1].split("</section>")[0]
    return section.replace("\u202f", " ").replace("\xa0", " ")


def _spaced(text: str) -> str:
    return text.replace("\u202f", " ").replace("\xa0", " ")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_film_of_last_week_lists_the_vital_signs_up_to_its_day_not_todays(
    client: TestClient, env: Env, lang: str
) -> None:
    _ = translations(lang).gettext
    fmt = Formats(lang)
    patient = f"P-{uuid.uuid4().hex[:8]}"
    # Noon UTC: the same local day for any site within 11 hours of UTC (the server's zone is the site's).
    day_before = _vitals(client, env, patient=patient, at=datetime(2026, 11, 19, 12, tzinfo=UTC))
    same_day = _vitals(client, env, patient=patient, at=datetime(2026, 11, 20, 12, tzinfo=UTC))
    days_after = _vitals(client, env, patient=patient, at=datetime(2026, 11, 23, 12, tzinfo=UTC))
    today = _vitals(client, env, patient=patient, at=datetime.now(UTC) - timedelta(minutes=1))
    film = _film(client, env, patient=patient, date="20261120")  # analysed today, filmed on 20 November

    panel = _panel(client, env, film["result_id"], lang)
    assert days_after["result_id"] not in panel and today["result_id"] not in panel, panel
    shown = [r for r in (same_day, day_before) if r["result_id"] in panel]
    assert shown == [same_day, day_before], panel
    assert panel.index(same_day["result_id"]) < panel.index(day_before["result_id"])  # newest first
    rows = panel.split("<tr>")[2:]
    assert _("on the film's day") in rows[0], rows[0]
    assert _spaced(_("%(days)s d before the film") % {"days": fmt.number(1)}) in rows[1], rows[1]
    note = _("Up to the film's study date (%(date)s): the record keeps no acquisition time.")
    assert _spaced(note % {"date": _spaced(fmt.date("20261120"))}) in panel, panel
    later = _("Measured after the film, not shown: %(n)s") % {"n": fmt.number(2)}
    assert _spaced(later) in panel, panel


def test_a_film_without_a_study_date_is_placed_at_its_analysis_and_says_so(
    client: TestClient, env: Env
) -> None:
    _ = translations("en").gettext
    fmt = Formats("en")
    patient = f"P-{uuid.uuid4().hex[:8]}"
    before = _vitals(client, env, patient=patient, at=datetime.now(UTC) - timedelta(hours=3))
    film = _film(client, env, patient=patient, date=None)
    after = _vitals(client, env, patient=patient, at=datetime.now(UTC))  # measured after the analysis
    analysed = datetime.fromisoformat(film["created_at"])

    panel = _panel(client, env, film["result_id"], "en")
    assert before["result_id"] in panel and after["result_id"] not in panel, panel
    waited = (analysed - datetime.fromisoformat(before["observed_at"])).total_seconds() / 60
    # The answer gives times to the millisecond, the record keeps microseconds: either side of a minute.
    since = {
        _("%(span)s before the analysis") % {"span": fmt.waited(w)} for w in (waited - 1e-4, waited + 1e-4)
    }
    assert any(_spaced(s) in panel for s in since), panel
    note = _("Up to the film's analysis (%(time)s): the record keeps no acquisition time.")
    assert _spaced(note % {"time": fmt.datetime(film["created_at"])}) in panel, panel
    assert _("Measured after the film, not shown: %(n)s") % {"n": fmt.number(1)} in panel, panel


def test_a_film_before_any_vital_signs_says_none_were_recorded_up_to_it(client: TestClient, env: Env) -> None:
    _ = translations("en").gettext
    patient = f"P-{uuid.uuid4().hex[:8]}"
    later = _vitals(client, env, patient=patient, at=datetime(2026, 11, 23, 12, tzinfo=UTC))
    film = _film(client, env, patient=patient, date="20261120")

    panel = _panel(client, env, film["result_id"], "en")
    assert later["result_id"] not in panel, panel
    assert _("No vital signs recorded up to the film") in panel, panel
    assert _("Measured after the film, not shown: %(n)s") % {"n": "1"} in panel, panel
