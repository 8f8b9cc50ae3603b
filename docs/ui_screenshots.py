"""Regenerate the screenshots of docs/ui.md: ``make screenshots`` (or ``python docs/ui_screenshots.py``).

Starts the API on a loopback port with a fresh home (the tests' tiny models by default; ``--home`` takes a
home after ``make run``, whose trained models give realistic heatmaps), files the synthetic seed studies
and vital signs, signs in through the page with Debian's Chromium and writes
``docs/ui/{worklist,viewer,triage}-{en,ar}.png``. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO),
    str(REPO / "tests"),
    *(str(REPO / "tests" / "inference" / "api" / d) for d in ("", "ui")),
]

OUT = REPO / "docs" / "ui"
SEEDS = REPO / "seeds"


def _file_seeds(base: str, env, home: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Send the seed studies and vital signs; return result ids by purpose."""
    import httpx
    from sqlalchemy import update

    from inference.record import Record
    from inference.record._models import Result

    ids: dict[str, str] = {}
    studies = sorted((SEEDS / "studies").glob("*.dcm"))
    by_study: dict[str, list[Path]] = {}
    for path in studies:
        by_study.setdefault(path.name[:2], []).append(path)
    for key, paths in sorted(by_study.items()):
        files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in paths]
        response = httpx.post(
            f"{base}/v1/studies", files=files, headers=env.headers("pacs", facility="F1"), timeout=120
        )
        response.raise_for_status()
        ids[key] = response.json()["result_id"]
    priors = _file_priors(base, env, of=by_study["03"][0])
    vitals = json.loads((SEEDS / "vitals.json").read_text(encoding="utf-8"))
    priors += _file_vitals_of(base, env, of=by_study["03"][0], like=vitals)
    for index, body in enumerate(vitals[:4]):
        response = httpx.post(
            f"{base}/v1/vitals", json=body, headers=env.headers("clinician", facility="F1"), timeout=60
        )
        response.raise_for_status()
        ids[f"v{index}"] = response.json()["result_id"]
    # Spread the filing times so the waiting column reads like a morning's work, and let the normal
    # study wait past the maximum so the starvation guard shows on its row.
    record = Record(env.settings.record_url)
    try:
        now = datetime.now(UTC)
        ages = {"01": 300, "02": 95, "03": 62, "04": 41, "05": 18, "v0": 130, "v1": 75, "v2": 33, "v3": 7}
        with record.sessions() as session, session.begin():
            # The viewer's patient's earlier films were read then: they are not on the worklist.
            session.execute(update(Result).where(Result.id.in_(priors)).values(status="reviewed"))
            for key, minutes in ages.items():
                if key in ids:
                    session.execute(
                        update(Result)
                        .where(Result.id == ids[key])
                        .values(created_at=now - timedelta(minutes=minutes))
                    )
    finally:
        record.close()
    return ids


def _file_vitals_of(base: str, env, *, of: Path, like: list[dict]) -> list[str]:  # type: ignore[no-untyped-def]
    """Two sets of vital signs of the viewer's patient (the seed study ``of``'s), measured the evening
    before and the morning of its study (the values of two seed sets), so that its viewer shows recent
    vital signs; return their result ids (read then, like the priors: not on the worklist)."""
    import httpx
    import pydicom

    header = pydicom.dcmread(of, stop_before_pixels=True)
    day = datetime.strptime(str(header.StudyDate), "%Y%m%d").replace(tzinfo=UTC)
    patient = {"identifier": str(header.PatientID), "issuer": str(header.IssuerOfPatientID)}
    ids = []
    for body, at in ((like[1], day - timedelta(hours=5)), (like[0], day + timedelta(hours=7))):
        sent = {**body, "patient": patient, "observed_at": at.isoformat()}
        response = httpx.post(
            f"{base}/v1/vitals", json=sent, headers=env.headers("clinician", facility="F1"), timeout=60
        )
        response.raise_for_status()
        ids.append(response.json()["result_id"])
    return ids


def _file_priors(base: str, env, *, of: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Two earlier films of the viewer's patient (the seed study ``of`` under new UIDs, taken two weeks and
    three months before it), so that its viewer shows prior studies; return their result ids."""
    import httpx
    import pydicom
    from pydicom.uid import generate_uid

    ids = []
    for days in (14, 98):
        dataset = pydicom.dcmread(of)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        # Days before the seed study's own date: priors are the films taken before the one read.
        taken = datetime.strptime(str(dataset.StudyDate), "%Y%m%d")
        dataset.StudyDate = (taken - timedelta(days=days)).strftime("%Y%m%d")
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        response = httpx.post(
            f"{base}/v1/studies",
            files=[("files", ("prior.dcm", out.getvalue(), "application/dicom"))],
            headers=env.headers("pacs", facility="F1"),
            timeout=120,
        )
        response.raise_for_status()
        ids.append(response.json()["result_id"])
    return ids


def _shoot(home: Path | None, work: Path) -> None:
    """File the seeds in a server on a record in ``work`` (models of ``home``, else the tests' tiny ones)
    and take the pages' screenshots."""
    import os

    import tiny_models
    from _api_env import Env, make_settings
    from _ui_live import PASSWORD, add_account, browser, live_server

    from inference.api import create_app

    if home is not None:
        os.environ["DXASSIST_HOME"] = str(home)
        settings = make_settings(home, database_url=f"sqlite:///{work / 'record.db'}")
    else:
        os.environ["DXASSIST_HOME"] = str(work)
        settings = make_settings(work)
        tiny_models.seed_both(settings.model_cache, work / "build")
    env = Env(home=work, settings=settings)
    OUT.mkdir(parents=True, exist_ok=True)
    with live_server(create_app(settings)) as base, browser() as chromium:
        ids = _file_seeds(base, env, work)
        username = add_account(env, facility="F1")
        for language in ("en", "ar"):
            context = chromium.new_context(
                locale=language, viewport={"width": 1440, "height": 900}, device_scale_factor=1
            )
            page = context.new_page()
            page.goto(f"{base}/ui/signin?lang={language}")
            page.locator("#username").fill(username)
            page.locator("#password").fill(PASSWORD)
            page.locator("form[action='/ui/signin'] button[type=submit]").click()
            page.wait_for_url(f"{base}/ui/")
            page.screenshot(path=str(OUT / f"worklist-{language}.png"), full_page=True)
            page.goto(f"{base}/ui/results/{ids['03']}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / f"viewer-{language}.png"), full_page=True)
            page.goto(f"{base}/ui/results/{ids['v3']}")
            page.screenshot(path=str(OUT / f"triage-{language}.png"), full_page=True)
            context.close()


def main() -> int:
    """Write the screenshots; return 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="a DXASSIST_HOME with trained models")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dxassist-shots-"))
    try:  # the record it files (synthetic patients, audit trail) never outlives the run
        _shoot(args.home, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(f"screenshots written to {OUT.relative_to(REPO)}/\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
