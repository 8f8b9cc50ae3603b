"""The pages in a real browser: Debian's Chromium under Playwright, the API under uvicorn on loopback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from _ui_live import PASSWORD, Env, add_account, browser, live_server, send_study

from inference.api import create_app
from inference.api.ui._i18n import translations
from inference.record import FeedbackVerdict, Record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(env: Env) -> Iterator[str]:
    """The API with its pages, served on a loopback port (the worklist refreshes every 2 s)."""
    ui = env.settings.ui.model_copy(update={"ui_refresh_seconds": 2})
    settings = env.settings.model_copy(update={"ui": ui})
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as instance:
        yield instance


def _sign_in(page: Any, base: str, username: str, language: str = "en") -> None:
    _ = translations(language).gettext
    page.goto(f"{base}/ui/")
    page.get_by_label(_("Username")).fill(username)
    page.get_by_label(_("Password")).fill(PASSWORD)
    page.get_by_role("button", name=_("Sign in")).click()
    page.wait_for_url(f"{base}/ui/")


def _changed_fraction(first: bytes, second: bytes) -> float:
    """The fraction of pixels whose colour differs clearly (more than 24 levels in some channel)."""
    from PIL import Image, ImageChops

    a, b = (Image.open(io.BytesIO(png)).convert("RGB") for png in (first, second))
    if a.size != b.size:
        return 1.0
    difference = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 24 else 0)
    return sum(1 for v in difference.getdata() if v) / (a.size[0] * a.size[1])


def _mean_brightness(png: bytes) -> float:
    from PIL import Image, ImageStat

    return float(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).mean[0])


def _read_one_study(
    page: Any, base: str, critical: dict[str, Any], routine: dict[str, Any], language: str
) -> None:
    """Worklist order, open the critical study, heatmap off and on, agree, mark as read, row gone."""
    _ = translations(language).gettext
    table = page.get_by_role("table")
    for header in ("Priority", "Waiting", "Patient", "Study", "AI status", "Findings", "Model"):
        assert table.get_by_role("columnheader", name=_(header), exact=True).count() == 1
    rows = table.get_by_role("row")
    texts = rows.all_inner_texts()
    critical_id = critical["patient"]["identifier"]
    routine_id = routine["patient"]["identifier"]
    at = {name: next(i for i, text in enumerate(texts) if name in text) for name in (critical_id, routine_id)}
    assert at[critical_id] < at[routine_id], texts

    page.get_by_role("link", name=critical_id).click()
    page.wait_for_url(f"{base}/ui/results/{critical['result_id']}")
    positive = next(f for f in critical["findings"] if f["positive"] and f["heatmap"])
    finding = page.locator(f"#finding-{positive['code']}")
    from inference.api.ui._views import finding_name

    switch = finding.get_by_role("switch", name=finding_name(positive["code"], language))
    layer = page.locator(f"#layer-{positive['code']}")
    stage = page.locator("#stage")
    page.wait_for_function(
        "code => { const img = document.getElementById('layer-' + code);"
        " return img.complete && img.naturalWidth > 0; }",
        arg=positive["code"],
    )
    page.locator("#stage.loaded").wait_for()  # the display rendering is on the canvas
    assert switch.is_checked()
    shown = stage.screenshot()
    switch.click()
    assert not switch.is_checked() and layer.is_hidden()
    hidden = stage.screenshot()
    assert _changed_fraction(shown, hidden) > 0.005, "switching the heatmap off changed nothing on the image"
    switch.click()
    assert switch.is_checked() and layer.is_visible()
    finding.get_by_role("slider", name=_("Opacity")).fill("30")
    assert float(layer.evaluate("el => getComputedStyle(el).opacity")) == pytest.approx(0.3, abs=0.01)
    before = page.locator("#radiograph").screenshot()
    page.get_by_label(_("Level")).fill("40")  # window/level acts on the radiograph, not on the layer
    assert _mean_brightness(page.locator("#radiograph").screenshot()) > _mean_brightness(before) + 5

    # The form posts and the page comes back at the same address: wait for that navigation itself.
    with page.expect_navigation(url=f"**/ui/results/{critical['result_id']}*"):
        finding.get_by_role("button", name=_("Agree"), exact=True).click()
    agree = page.locator(f"#finding-{positive['code']}").get_by_role("button", name=_("Agree"), exact=True)
    assert agree.get_attribute("aria-pressed") == "true"

    page.get_by_role("button", name=_("Mark as read")).click()
    page.wait_for_url(f"{base}/ui/")
    remaining = page.get_by_role("table").get_by_role("row").all_inner_texts()
    assert not any(critical_id in text for text in remaining)
    assert any(routine_id in text for text in remaining)


def test_reader_signs_in_reads_a_critical_study_and_it_leaves_the_worklist(
    site: str, env: Env, chromium: Any
) -> None:
    routine = send_study(site, env, critical=False)
    critical = send_study(site, env, critical=True)
    assert (critical["priority"], routine["priority"]) == ("critical", "routine")
    username = add_account(env)
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    _sign_in(page, site, username)
    assert page.title().startswith("Worklist")
    _read_one_study(page, site, critical, routine, "en")
    context.close()


def test_the_same_in_arabic_right_to_left(site: str, env: Env, chromium: Any) -> None:
    routine = send_study(site, env, critical=False)
    critical = send_study(site, env, critical=True)
    username = add_account(env)
    context = chromium.new_context(locale="ar")
    page = context.new_page()
    _sign_in(page, site, username, language="ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ar"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    _read_one_study(page, site, critical, routine, "ar")
    context.close()


def test_a_reader_of_another_facility_sees_neither_the_row_nor_the_page(
    site: str, env: Env, chromium: Any
) -> None:
    theirs = send_study(site, env, critical=True, facility="F1")
    username = add_account(env, facility="F2")
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    _sign_in(page, site, username)
    rows = page.get_by_role("table").get_by_role("row").all_inner_texts()
    assert not any(theirs["patient"]["identifier"] in text for text in rows)
    response = page.goto(f"{site}/ui/results/{theirs['result_id']}")
    # As for a result that does not exist: the page does not tell that one exists at another facility.
    assert response is not None and response.status == 404
    assert theirs["patient"]["identifier"] not in page.content()
    context.close()


def test_the_worklist_refreshes_itself_and_a_disagreement_asks_for_the_label(
    site: str, env: Env, chromium: Any
) -> None:
    username = add_account(env)
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    _sign_in(page, site, username)
    arriving = send_study(site, env, critical=True)
    page.get_by_role("link", name=arriving["patient"]["identifier"]).wait_for(timeout=20_000)
    assert page.url == f"{site}/ui/"  # the rows came without a reload

    page.get_by_role("link", name=arriving["patient"]["identifier"]).click()
    # Loaded, viewer.js included: a click on Disagree before its handler is attached would post the form.
    page.wait_for_url(f"{site}/ui/results/{arriving['result_id']}")
    negative = next(f for f in arriving["findings"] if not f["positive"])
    finding = page.locator(f"#finding-{negative['code']}")
    picker = finding.get_by_label("Correct label")
    assert picker.is_hidden()
    finding.get_by_role("button", name="Disagree").click()
    assert picker.is_visible() and picker.input_value() == "present"  # preset to the opposite call
    with page.expect_navigation(url=f"**/ui/results/{arriving['result_id']}*"):
        finding.get_by_role("button", name="Disagree").click()
    disagree = page.locator(f"#finding-{negative['code']}").get_by_role("button", name="Disagree")
    assert disagree.get_attribute("aria-pressed") == "true"
    context.close()
    record = Record(env.settings.record_url)
    try:
        verdicts = [
            v for row in record.feedback.for_result(result_id=arriving["result_id"]) for v in row.verdicts
        ]
    finally:
        record.close()
    assert verdicts == [FeedbackVerdict(code=negative["code"], verdict="disagree", correct_label=True)]


def test_a_heatmap_that_cannot_be_drawn_says_so_and_its_switch_is_off(
    site: str, env: Env, chromium: Any
) -> None:
    # One finding's stored map is damaged: the viewer does not silently show no heat (a reader could take
    # that for no evidence). The finding says its heatmap could not be drawn, and its switch and slider
    # are off and disabled; the radiograph and the finding's probability are still shown.
    from _damage import overwrite_rendering, stored_rendering, without_map

    from inference.api.ui._views import finding_name

    study = send_study(site, env, critical=True)
    damaged = next(f for f in study["findings"] if f["positive"] and f["heatmap"])
    url, rid = env.settings.record_url, study["result_id"]
    overwrite_rendering(url, rid, cams=without_map(stored_rendering(url, rid).cams, damaged["code"]))
    username = add_account(env)
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    _sign_in(page, site, username)
    page.goto(f"{site}/ui/results/{study['result_id']}")
    finding = page.locator(f"#finding-{damaged['code']}")
    note = finding.get_by_role("status")
    note.wait_for()
    assert "could not be drawn" in note.inner_text()
    switch = finding.get_by_role("switch", name=finding_name(damaged["code"], "en"))
    assert switch.is_disabled() and not switch.is_checked()
    assert finding.get_by_role("slider", name="Opacity").is_disabled()
    assert page.locator(f"#layer-{damaged['code']}").is_hidden()
    page.locator("#stage.loaded").wait_for()  # the radiograph itself is drawn
    assert "%" in finding.locator(".prob").inner_text()
    context.close()


@pytest.mark.parametrize("language", ["en", "fr"])
def test_each_worklist_line_says_its_suggestion_comes_from_a_synthetic_data_model(
    site: str, env: Env, chromium: Any, language: str
) -> None:
    """The served models were trained on synthetic data only (``model.synthetic``): a reader scanning the
    worklist sees it on every line, in words (not a colour) that a screen reader reads with the line."""
    _ = translations(language).gettext
    study = send_study(site, env, critical=True)
    assert study["model"]["synthetic"] is True
    username = add_account(env)
    context = chromium.new_context(locale="fr-FR" if language == "fr" else "en-GB")
    page = context.new_page()
    _sign_in(page, site, username, language)
    row = page.get_by_role("row").filter(has_text=study["patient"]["identifier"])
    expect_marker = row.get_by_text(_("synthetic-data model"), exact=True)
    assert expect_marker.count() == 1 and expect_marker.is_visible()
    # In the line's cell of the model, beside its name: the accessible cell reads both.
    model_cell = row.get_by_role("cell").last
    assert _("synthetic-data model") in model_cell.inner_text()
    assert study["model"]["name"] in model_cell.inner_text()
    title = expect_marker.get_attribute("title") or ""
    assert _("Trained on synthetic data only; not validated on real patients.") == title
    context.close()


def _send_dated(
    base: str,
    env: Env,
    *,
    patient: str,
    date: str,
    critical: bool,
    facility: str = "F1",
    birth_date: str | None = None,
) -> Any:
    """A study of ``patient`` dated ``date`` (DICOM ``YYYYMMDD``), sent by the facility's PACS (with
    ``birth_date``, DICOM ``YYYYMMDD``, when given)."""
    import httpx
    import pydicom
    from _api_dicom import chest_dicom
    from _ui_live import new_study_uid

    study = new_study_uid()
    dataset = pydicom.dcmread(
        io.BytesIO(chest_dicom(study=study, sop=f"{study}.1", blob=critical, patient_id=patient))
    )
    dataset.StudyDate = date
    if birth_date is not None:
        dataset.PatientBirthDate = birth_date
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    response = httpx.post(
        f"{base}/v1/studies",
        files=[("files", ("a.dcm", out.getvalue(), "application/dicom"))],
        headers=env.headers("pacs", facility=facility),
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_the_viewer_lists_the_patients_prior_studies_in_french_and_audits_each_one(
    site: str, env: Env, chromium: Any
) -> None:
    """A reader compares the film with the patient's earlier ones: the viewer lists the priors of its own
    scope, newest first, with date, triage level, positive findings and their probabilities, model and the
    readers' verdicts, each a link to its viewer; another patient's study and the same patient's study at
    another facility (no sharing consent) are not listed; each prior shown is a read of that result,
    audited in the page's own transaction."""
    import uuid

    import httpx

    from inference.api.ui._i18n import Formats
    from inference.api.ui._views import finding_name

    _ = translations("fr").gettext
    fmt = Formats("fr")
    patient = f"P-{uuid.uuid4().hex[:8]}"
    older = _send_dated(site, env, patient=patient, date="20261001", critical=False)
    newer = _send_dated(site, env, patient=patient, date="20261105", critical=True)
    elsewhere = _send_dated(site, env, patient=patient, date="20261110", critical=True, facility="F2")
    other = send_study(site, env, critical=True)
    current = _send_dated(site, env, patient=patient, date="20261120", critical=True)
    assert newer["patient"]["id"] == current["patient"]["id"] == elsewhere["patient"]["id"]
    agreed = next(f for f in newer["findings"] if f["positive"])
    verdict = httpx.post(
        f"{site}/v1/results/{newer['result_id']}/feedback",
        json={"verdicts": [{"code": agreed["code"], "verdict": "agree"}]},
        headers=env.headers("radiologist", facility="F1"),
        timeout=60,
    )
    assert verdict.status_code == 201, verdict.text

    username = add_account(env)
    context = chromium.new_context(locale="fr-FR")
    page = context.new_page()
    _sign_in(page, site, username, "fr")
    page.goto(f"{site}/ui/results/{current['result_id']}")
    panel = page.get_by_role("region", name=_("Prior studies"))
    for header in ("Date", "Priority", "Findings", "Model", "Reader's verdict"):
        assert panel.get_by_role("columnheader", name=_(header), exact=True).count() == 1
    rows = panel.get_by_role("row").all_inner_texts()[1:]
    assert len(rows) == 2, rows  # neither the other patient's study nor the other facility's
    assert fmt.date("2026-11-05") in rows[0] and fmt.date("2026-10-01") in rows[1]
    for finding in (f for f in newer["findings"] if f["positive"]):
        shown = f"{finding_name(finding['code'], 'fr')} {fmt.percent(finding['probability'])}"
        assert shown in rows[0], (shown, rows[0])
    assert _(newer["priority"]) in rows[0] and _(older["priority"]) in rows[1]
    assert f"{fmt.label(finding_name(agreed['code'], 'fr'))} {_('agree')}" in rows[0]
    assert f"{newer['model']['name']} {newer['model']['version']}" in rows[0]
    if not any(f["positive"] for f in older["findings"]):
        assert _("No positive finding") in rows[1]
    html = page.content()
    for hidden in (elsewhere, other):
        assert hidden["result_id"] not in html
    assert other["patient"]["identifier"] not in html

    # A prior opens its own viewer, whose priors are the studies before it.
    panel.get_by_role("link", name=fmt.date("2026-11-05")).click()
    page.wait_for_url(f"{site}/ui/results/{newer['result_id']}")
    rows = page.get_by_role("region", name=_("Prior studies")).get_by_role("row").all_inner_texts()[1:]
    assert len(rows) == 1 and fmt.date("2026-10-01") in rows[0]
    page.goto(f"{site}/ui/results/{older['result_id']}")
    assert page.get_by_role("region", name=_("Prior studies")).get_by_text(_("No prior studies")).is_visible()
    context.close()

    record = Record(env.settings.record_url)
    try:
        _n, entries = record.audit.search(agent=f"web:{username}")
    finally:
        record.close()
    page_read = next(
        e
        for e in entries
        if (e["action"], e["resource_type"], e["resource_id"])
        == ("results:read", "Result", current["result_id"])
    )
    # The page's read and one entry per prior shown, chained together in its transaction.
    same_read = sorted(
        (e for e in entries if page_read["seq"] <= e["seq"] <= page_read["seq"] + 2), key=lambda e: e["seq"]
    )
    assert [(e["action"], e["resource_type"], e["resource_id"], e["outcome"]) for e in same_read] == [
        ("results:read", "Result", r["result_id"], "success") for r in (current, newer, older)
    ]
    assert {(e["patient_id"], e["request_id"]) for e in same_read} == {
        (current["patient"]["id"], page_read["request_id"])
    }


def test_the_viewer_header_gives_the_patients_age_at_the_study_and_sex_in_each_language(
    site: str, env: Env, chromium: Any
) -> None:
    """A chest film is read differently at 8 and at 80: the viewer's header shows, beside the study date,
    the patient's age at the study (from the birth date on file and the study's date, not today's age)
    and sex, labelled in the page's language (French puts a no-break space before the colon)."""
    import uuid

    from inference.api.ui._i18n import Formats

    patient = f"P-{uuid.uuid4().hex[:8]}"
    # Born 10 March 1960, filmed on 1 March 2026: 65 at the study (66 by the time anyone reads it).
    study = _send_dated(site, env, patient=patient, date="20260301", critical=False, birth_date="19600310")
    username = add_account(env)
    for language, locale in (("en", "en-GB"), ("fr", "fr-FR"), ("ar", "ar")):
        _ = translations(language).gettext
        fmt = Formats(language)
        context = chromium.new_context(locale=locale)
        page = context.new_page()
        _sign_in(page, site, username, language)
        page.goto(f"{site}/ui/results/{study['result_id']}")
        header = page.locator(".pagehead .meta").inner_text()
        age = _("%(age)s y") % {"age": fmt.number(65)}
        assert f"{fmt.label(_('Age at study'))} {age}" in header, header
        assert f"{fmt.label(_('Sex'))} {_('female')}" in header, header
        assert fmt.date("2026-03-01") in header
        context.close()


def _send_vitals_of(base: str, env: Env, *, patient: str, at: str, facility: str = "F1", **signs: Any) -> Any:
    """Vital signs of ``patient`` measured ``at``, sent by a clinician of the facility."""
    import httpx

    body = {
        "patient": {"identifier": patient}, "observed_at": at,
        "respiratory_rate": 16, "spo2": 98, "on_oxygen": False, "systolic_bp": 120, "diastolic_bp": 80,
        "heart_rate": 70, "temperature": 37.0, "consciousness": "A", **signs,
    }  # fmt: skip
    response = httpx.post(
        f"{base}/v1/vitals", json=body, headers=env.headers("clinician", facility=facility), timeout=60
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_the_viewer_lists_the_patients_recent_vital_signs_beside_the_film_and_audits_each_one(
    site: str, env: Env, chromium: Any
) -> None:
    """Beside the film, the reader sees the patient's latest vital-signs triage results of the reader's
    scope measured up to the film, newest measurement first, with the time measured, triage level and
    NEWS2, each a link to its viewer; another facility's (no sharing consent) is not listed, one measured
    after the film is only counted; each one shown is a read of that result, audited in the page's own
    transaction."""
    import uuid

    from inference.api.ui._i18n import Formats
    from inference.api.ui._views import band_name

    _ = translations("en").gettext
    fmt = Formats("en")
    patient = f"P-{uuid.uuid4().hex[:8]}"
    calm = _send_vitals_of(site, env, patient=patient, at="2026-11-19T06:00:00Z")
    unwell = _send_vitals_of(
        site, env, patient=patient, at="2026-11-20T06:00:00Z",
        respiratory_rate=28, spo2=90, heart_rate=125, temperature=39.2, systolic_bp=95,
    )  # fmt: skip
    elsewhere = _send_vitals_of(site, env, patient=patient, at="2026-11-20T07:00:00Z", facility="F2")
    later = _send_vitals_of(site, env, patient=patient, at="2026-11-22T12:00:00Z")  # after the film's day
    study = _send_dated(site, env, patient=patient, date="20261120", critical=True)
    assert calm["patient"]["id"] == study["patient"]["id"] == elsewhere["patient"]["id"]

    username = add_account(env)
    context = chromium.new_context(locale="en-GB")
    page = context.new_page()
    _sign_in(page, site, username, "en")
    page.goto(f"{site}/ui/results/{study['result_id']}")
    panel = page.get_by_role("region", name=_("Recent vital signs"))
    for header in ("Measured", "Priority", "NEWS2"):
        assert panel.get_by_role("columnheader", name=_(header), exact=True).count() == 1
    rows = panel.get_by_role("row").all_inner_texts()[1:]
    assert len(rows) == 2, rows  # not the other facility's
    for row, sent in zip(rows, (unwell, calm), strict=True):
        assert fmt.datetime(sent["observed_at"]) in row, (sent["observed_at"], row)
        assert _(sent["priority"]) in row
        band = band_name(sent["news2"]["band"], "en")
        assert (
            _("NEWS2 %(total)s, %(band)s") % {"total": fmt.number(sent["news2"]["total"]), "band": band}
            in row
        )
    assert elsewhere["result_id"] not in page.content()
    assert later["result_id"] not in page.content()  # the film's vital signs, not those measured since
    assert panel.get_by_text(
        _("Measured after the film, not shown: %(n)s") % {"n": fmt.number(1)}
    ).is_visible()
    panel.get_by_role("link", name=fmt.datetime(unwell["observed_at"])).click()
    page.wait_for_url(f"{site}/ui/results/{unwell['result_id']}")
    context.close()

    record = Record(env.settings.record_url)
    try:
        _n, entries = record.audit.search(agent=f"web:{username}")
    finally:
        record.close()
    page_read = next(
        e
        for e in entries
        if (e["action"], e["resource_type"], e["resource_id"])
        == ("results:read", "Result", study["result_id"])
    )
    same_read = sorted(
        (e for e in entries if page_read["seq"] <= e["seq"] <= page_read["seq"] + 2), key=lambda e: e["seq"]
    )
    assert [(e["resource_id"], e["outcome"]) for e in same_read] == [
        (study["result_id"], "success"), (unwell["result_id"], "success"), (calm["result_id"], "success")
    ]  # fmt: skip
