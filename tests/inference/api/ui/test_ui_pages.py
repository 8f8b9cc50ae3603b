"""The pages without a browser: worklist order with the starvation guard, filters, vitals rows, the
viewer's contents, languages and their catalogues, and ``dxassist user``."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _ui_live import PASSWORD, Env, TestClient, add_account, send_study, send_vitals, sign_in
from sqlalchemy import update

from inference.api.ui._catalogue import missing
from inference.api.ui._i18n import choose, from_accept_language
from inference.record import Record
from inference.record._models import Result


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-href="/ui/results/([0-9a-f-]+)"', html)


def _backdate(env: Env, result_id: str, minutes: int) -> None:
    record = Record(env.settings.record_url)
    try:
        with record.sessions() as session, session.begin():
            session.execute(
                update(Result)
                .where(Result.id == result_id)
                .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes))
            )
    finally:
        record.close()


def test_a_routine_study_that_waited_too_long_moves_up_and_says_so(client: TestClient, env: Env) -> None:
    routine_old = send_study(client, env, critical=False)
    routine_new = send_study(client, env, critical=False)
    urgent = send_vitals(client, env, consciousness="C")
    critical = send_study(client, env, critical=True)
    assert urgent["priority"] == "urgent"
    _backdate(env, routine_old["result_id"], env.settings.ui.worklist_max_wait_minutes + 5)
    client.cookies.clear()
    sign_in(client, add_account(env, role="admin", facility=None))
    page = client.get("/ui/").text
    order = [
        rid
        for rid in _rows(page)
        if rid in {r["result_id"] for r in (routine_old, routine_new, urgent, critical)}
    ]
    assert order == [
        critical["result_id"],
        routine_old["result_id"],
        urgent["result_id"],
        routine_new["result_id"],
    ]
    row = page.split(f'data-href="/ui/results/{routine_old["result_id"]}"')[1].split("</tr>")[0]
    assert "moved up: waited too long" in row
    assert (
        "moved up"
        not in page.split(f'data-href="/ui/results/{routine_new["result_id"]}"')[1].split("</tr>")[0]
    )
    # The API's worklist applies no guard of its own but reports the same order through the record.
    items = client.get("/v1/worklist", params={"limit": 500}, headers=env.headers("admin")).json()["items"]
    assert all(not item.get("escalated") for item in items)


def test_filters_and_vitals_rows(client: TestClient, env: Env) -> None:
    high = send_vitals(client, env, respiratory_rate=30, spo2=85, heart_rate=140)
    study = send_study(client, env, critical=True)
    client.cookies.clear()
    sign_in(client, add_account(env, role="admin", facility=None))
    page = client.get("/ui/").text
    row = page.split(f'data-href="/ui/results/{high["result_id"]}"')[1].split("</tr>")[0]
    assert "NEWS2" in row and "high" in row
    routine_only = client.get("/ui/", params={"priority": "routine"}).text
    assert high["result_id"] not in routine_only and study["result_id"] not in routine_only
    critical_only = client.get("/ui/worklist/rows", params={"priority": "critical"}).text
    assert high["result_id"] in critical_only and study["result_id"] in critical_only
    assert client.get("/ui/", params={"priority": "whatever"}).status_code == 400


def test_viewer_shows_probabilities_thresholds_model_and_the_synthetic_banner(
    client: TestClient, env: Env
) -> None:
    result = send_study(client, env, critical=True)
    client.cookies.clear()
    sign_in(client, add_account(env))
    page = client.get(f"/ui/results/{result['result_id']}").text
    assert f"{result['model']['name']} {result['model']['version']}" in page
    assert "Preview, not for diagnosis" in page
    for finding in result["findings"]:
        assert f'id="finding-{finding["code"]}"' in page
        if finding["positive"]:
            assert f'aria-controls="layer-{finding["code"]}" data-layer-switch' in page
    assert page.count('role="switch"') == sum(1 for f in result["findings"] if f["positive"] and f["heatmap"])
    assert re.search(r"Probability [\d.]+% — threshold [\d.]+%", page)
    if any("synthetic" in w for w in result["warnings"]):
        assert "trained on synthetic data only" in page
    assert client.get("/ui/results/not-a-result-id").status_code == 400
    assert client.get("/ui/results/5b0c9a52-7c3e-4a57-9b7e-3f1d2b0c4e11").status_code == 404
    assert client.get(f"/ui/results/{result['result_id']}/heatmaps/No%20Such.png").status_code == 400


def test_triage_viewer_shows_news2_subscores_and_contributions(client: TestClient, env: Env) -> None:
    result = send_vitals(client, env, respiratory_rate=26, spo2=91)
    client.cookies.clear()
    sign_in(client, add_account(env, role="admin", facility=None))
    page = client.get(f"/ui/results/{result['result_id']}").text
    assert "NEWS2" in page and "Subscore" in page
    assert page.count('class="bar ') == len(result["contributions"])
    assert "26 /min" in page and "91 %" in page  # the measured signs, in their units


def test_language_from_the_browser_then_the_switch(client: TestClient, env: Env) -> None:
    client.cookies.clear()
    page = client.get("/ui/signin", headers={"accept-language": "fr-FR,fr;q=0.9,en;q=0.5"})
    assert '<html lang="fr" dir="ltr">' in page.text and "Mot de passe" in page.text
    page = client.get("/ui/signin", params={"lang": "ar"})
    assert '<html lang="ar" dir="rtl">' in page.text and "كلمة المرور" in page.text
    page = client.get("/ui/signin", headers={"accept-language": "fr"})  # the switch is remembered
    assert '<html lang="ar" dir="rtl">' in page.text
    client.cookies.clear()
    assert choose(None, None, "de-DE, en;q=0.1") == "en"
    assert from_accept_language("ar;q=0.2, fr;q=0.8") == "fr"


def test_numbers_and_dates_follow_the_locale(client: TestClient, env: Env) -> None:
    result = send_study(client, env, critical=True)
    client.cookies.clear()
    sign_in(client, add_account(env))
    fr = client.get(f"/ui/results/{result['result_id']}", params={"lang": "fr"}).text
    assert re.search(r"Probabilité [\d,\u202f ]+\u00a0?% — seuil", fr), "French percentages use a comma"
    assert "Patient\u00a0: <strong>" in fr and "Modèle\u00a0: <strong>" in fr  # a space before a colon
    en = client.get(f"/ui/results/{result['result_id']}", params={"lang": "en"}).text
    assert "Patient: <strong>" in en and "Model: <strong>" in en
    # The film's own date, to read it against its priors' (the analysis time is another day).
    assert "Study date: <strong>Jan 5, 2026</strong>" in en
    assert "Date de l\u2019examen\u00a0: <strong>5 janv. 2026</strong>" in fr
    worklist = client.get("/ui/", params={"lang": "fr"}).text
    assert "5 janv. 2026" in worklist  # the test studies' StudyDate 20260105
    client.get("/ui/", params={"lang": "en"})


def test_every_label_is_translated() -> None:
    assert missing("fr") == []
    assert missing("ar") == []


def test_user_commands(env: Env) -> None:
    from _dxassist_cli import DXASSIST, dxassist_env

    run_env = dxassist_env(env.home)
    add = subprocess.run(
        [str(DXASSIST), "user", "add", "--username", "dr.cli", "--role", "radiologist", "--facility", "F9",
         "--password-stdin"],
        input=PASSWORD + "\n", env=run_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    again = subprocess.run(
        [str(DXASSIST), "user", "add", "--username", "dr.cli", "--role", "radiologist", "--password-stdin"],
        input=PASSWORD + "\n", env=run_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "already exists" in again.stderr
    weak = subprocess.run(
        [str(DXASSIST), "user", "add", "--username", "dr.weak", "--role", "radiologist", "--password-stdin"],
        input="short\n", env=run_env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    listed = subprocess.run(
        [str(DXASSIST), "user", "list"], env=run_env, capture_output=True, text=True, timeout=120, check=False
    )
    line = next(x for x in listed.stdout.splitlines() if x.startswith("dr.cli "))
    assert line.split()[:4] == ["dr.cli", "radiologist", "F9", "active"]
    assert "scrypt" not in listed.stdout
    disabled = subprocess.run(
        [str(DXASSIST), "user", "disable", "dr.cli"], env=run_env, capture_output=True, text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert disabled.returncode == 0
    listed = subprocess.run(
        [str(DXASSIST), "user", "list"], env=run_env, capture_output=True, text=True, timeout=120, check=False
    )
    assert next(x for x in listed.stdout.splitlines() if x.startswith("dr.cli ")).split()[3] == "disabled"


def test_a_result_the_model_cannot_assess_says_so_in_the_worklist_and_the_viewer() -> None:
    from inference.api.ui._i18n import Formats
    from inference.api.ui._render import environment
    from inference.api.ui._views import viewer_model, worklist_rows
    from inference.record import (
        FindingResult,
        ImagingResult,
        ModelInfo,
        OodScore,
        PatientRef,
        WorklistItem,
        WorklistPatient,
    )

    rid, now = "5b0c9a52-7c3e-4a57-9b7e-3f1d2b0c4e11", datetime.now(UTC)
    model = ModelInfo(name="cxr-findings", version="3")
    item = WorklistItem(
        result_id=rid, kind="imaging", priority="routine", status="open", created_at=now, escalated=False,
        patient=WorklistPatient(id="p", identifier="OOD-1", age=60, sex="female"), model=model, warnings=(),
        positive_findings=(), assessable=False,
    )  # fmt: skip
    result = ImagingResult(
        result_id=rid, patient=PatientRef(id="p", identifier="OOD-1"), model=model, priority="routine",
        status="open", warnings=(), created_at=now, rationale={"en": "Not assessable."},
        study_instance_uid="1.2",
        findings=(FindingResult("nodule", "Nodule", 0.7, False, 0.5, None, False),), assessable=False,
        ood=OodScore(score=0.93, threshold=0.5),
    )  # fmt: skip
    rows = worklist_rows([item], language="en", priority=None, status="not_assessable")
    assert [row["ai_status"] for row in rows] == ["not_assessable"]
    assert worklist_rows([item], language="en", priority=None, status="analysed") == []
    view = viewer_model(result, language="en", verdicts={})
    html = (
        environment("en")
        .get_template("viewer.html")
        .render(
            r=view, lang="en", dir="ltr", languages={}, fmt=Formats("en"), version="t", path="/", csrf="c"
        )
    )
    assert "Not assessable" in html and "0.93" in html
    assert 'role="switch"' not in html  # nothing positive, no heat layer to show


def test_a_worsening_series_shows_on_the_row_and_in_the_viewer(client: TestClient, env: Env) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    patient = {"identifier": f"T-{now.timestamp():.0f}"}
    earlier = (now - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    send_vitals(client, env, patient=patient, observed_at=earlier)
    later = send_vitals(
        client, env, patient=patient, observed_at=now.isoformat().replace("+00:00", "Z"),
        respiratory_rate=25, heart_rate=120,
    )  # fmt: skip
    assert later["trend"] and later["trend"]["deteriorating"], later["trend"]
    client.cookies.clear()
    sign_in(client, add_account(env, role="admin", facility=None))
    page = client.get("/ui/").text
    row = page.split(f'data-href="/ui/results/{later["result_id"]}"')[1].split("</tr>")[0]
    assert "worsening trend" in row
    viewer = client.get(f"/ui/results/{later['result_id']}").text
    assert re.search(r"Trend over 3(\.0)? h \(2 observations\): NEWS2 \+\d", viewer), viewer[-3000:]


def test_a_study_the_model_refuses_is_not_assessable_on_the_row_and_in_the_viewer(tmp_path: Path) -> None:
    import tiny_models
    from _api_env import make_settings

    from inference.api import create_app

    settings = make_settings(tmp_path)
    build = tmp_path / "build"
    imaging = tiny_models.build_imaging_onnx(build / "imaging.onnx", input_size=64, ood_threshold=1e-9)
    tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging)
    tiny_models.seed_cache(
        settings.model_cache, tiny_models.TRIAGE_NAME, tiny_models.build_triage_onnx(build / "t.onnx")
    )
    env = Env(home=tmp_path, settings=settings)
    with TestClient(create_app(settings)) as client:
        result = send_study(client, env, critical=True)
        assert result["assessable"] is False and not any(f["positive"] for f in result["findings"])
        sign_in(client, add_account(env))
        page = client.get("/ui/", params={"status": "not_assessable"}).text
        row = page.split(f'data-href="/ui/results/{result["result_id"]}"')[1].split("</tr>")[0]
        assert "not assessable" in row
        assert result["result_id"] not in client.get("/ui/", params={"status": "analysed"}).text
        viewer = client.get(f"/ui/results/{result['result_id']}").text
        assert "Not assessable" in viewer and 'role="switch"' not in viewer
        arabic = client.get(f"/ui/results/{result['result_id']}", params={"lang": "ar"}).text
        assert "غير قابلة للتقييم" in arabic


def test_the_prior_studies_panel_says_not_assessable_instead_of_a_score_and_how_many_it_left() -> None:
    from markupsafe import escape

    from inference.api.ui._i18n import Formats, translations
    from inference.api.ui._render import environment
    from inference.api.ui._views import priors_model, viewer_model
    from inference.record import (
        FeedbackVerdict,
        FindingResult,
        ImagingResult,
        ModelInfo,
        PatientRef,
        PriorStudies,
        PriorStudy,
    )

    now = datetime.now(UTC)
    model = ModelInfo(name="cxr-findings", version="3")
    result = ImagingResult(
        result_id="5b0c9a52-7c3e-4a57-9b7e-3f1d2b0c4e12", patient=PatientRef(id="p", identifier="PRIOR-1"),
        model=model, priority="urgent", status="open", warnings=(), created_at=now, rationale={},
        study_instance_uid="1.2", findings=(), assessable=True, ood=None,
    )  # fmt: skip
    effusion = FindingResult("pleural_effusion", "Pleural effusion", 0.9996, True, 0.5, None, True)
    scored = PriorStudy(
        result_id="11111111-1111-4111-8111-111111111111", study_date="2026-11-05", created_at=now,
        priority="critical", status="reviewed", model=model, assessable=True, findings=(effusion,),
        verdicts={"pleural_effusion": FeedbackVerdict("pleural_effusion", "disagree", False)},
    )  # fmt: skip
    refused = PriorStudy(
        result_id="22222222-2222-4222-8222-222222222222", study_date=None,
        created_at=datetime(2026, 10, 1, 9, 30, tzinfo=UTC), priority="routine", status="open",
        model=ModelInfo(name="cxr-findings", version="2"), assessable=False,
        findings=(FindingResult("nodule", "Nodule", 0.7, False, 0.5, None, False),), verdicts={},
    )  # fmt: skip

    def panel(priors: PriorStudies, language: str) -> str:
        html = (
            environment(language)
            .get_template("viewer.html")
            .render(
                r=viewer_model(result, language=language, verdicts={}),
                lang=language,
                dir="rtl" if language == "ar" else "ltr",
                languages={},
                fmt=Formats(language),
                version="t",
                path="/",
                csrf="c",
                priors=priors_model(priors, language=language),
            )  # fmt: skip
        )
        return html.split('<section class="card priors"')[1].split("</section>")[0]

    for language in ("en", "ar"):
        _ = translations(language).gettext
        fmt = Formats(language)
        html = panel(PriorStudies(studies=(scored, refused), older=4), language)
        first, second = html.split("<tbody>")[1].split("</tr>")[:2]
        assert escape(fmt.percent(0.9996)) in first and fmt.percent(0.9996).startswith(">")  # never 100 %
        assert f"{_('disagree')} ({_('absent')})" in first and _("marked as read") in first
        assert fmt.date("2026-10-01") in second  # dated by its filing when the study had no date
        assert _("not assessable") in second and "%" not in second  # no score of a refused image
        assert 'href="/ui/results/22222222-2222-4222-8222-222222222222"' in second
        assert _("Older studies not shown: %(n)s") % {"n": fmt.number(4)} in html
        assert _("No prior studies") in panel(PriorStudies(studies=(), older=0), language)
