"""``open_context``: the engines the API and the listener share; big radiographs keep their geometry."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import tiny_models
from PIL import Image

from inference.config import Settings
from inference.record import Delivery, ImagingResult, Record
from inference.security import Principal
from inference.services import (
    Actor,
    analyse_study,
    get_heat_layer,
    get_heatmap,
    get_result_image,
    open_context,
)

API_TESTS = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API_TESTS))
from _api_dicom import chest_dicom  # noqa: E402

PACS_F1 = Actor(Principal(subject="pacs-1", role="pacs", facility="F1"), client="127.0.0.1")
READER_F1 = Actor(Principal(subject="reader-1", role="radiologist", facility="F1"), client="127.0.0.1")


def _settings(home: Path) -> Settings:
    settings = Settings(home=home, database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0)
    tiny_models.seed_both(settings.model_cache, home / "build")
    return settings


def test_a_big_radiograph_gets_its_box_in_original_pixels_and_a_display_sized_overlay(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    size = 1600  # the blob covers rows and columns 400..999; the overlay is 1024 px a side
    study = f"2.25.{uuid.uuid4().int}"

    async def main() -> tuple[ImagingResult, dict[str, bytes], dict[str, bytes], bytes]:
        async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)) as ctx:
            outcome = await analyse_study(
                ctx=ctx,
                actor=PACS_F1,
                blobs=[chest_dicom(study=study, sop=f"{study}.1", blob=True, size=size)],
                source="upload",
                accept_language=None,
            )
            assert isinstance(outcome.result, ImagingResult)
            rid = outcome.result.result_id
            codes = [f.code for f in outcome.result.findings if f.heatmap]
            pngs = {c: await get_heatmap(ctx=ctx, actor=READER_F1, result_id=rid, code=c) for c in codes}
            layers = {c: await get_heat_layer(ctx=ctx, actor=READER_F1, result_id=rid, code=c) for c in codes}
            image = await get_result_image(ctx=ctx, actor=READER_F1, result_id=rid)
            return outcome.result, pngs, layers, image

    result, pngs, layers, image = asyncio.run(main())
    boxes = [f.box for f in result.findings if f.positive and f.box is not None]
    assert boxes and pngs
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert x0 <= 700 < x1 and y0 <= 700 < y1  # the blob's centre, in original pixels
        # The blob ends at 1000 in original pixels, at 640 in the overlay's: these are original ones.
        assert x1 >= 900 and y1 >= 900
    for png in pngs.values():
        with Image.open(io.BytesIO(png)) as overlay:
            assert overlay.format == "PNG" and overlay.size == (1024, 1024) and overlay.mode == "RGB"
    for png in layers.values():
        with Image.open(io.BytesIO(png)) as layer:
            assert layer.format == "PNG" and layer.size == (1024, 1024) and layer.mode == "RGBA"
    with Image.open(io.BytesIO(image)) as display:
        assert display.format == "PNG" and display.size == (1024, 1024) and display.mode == "L"
    assert result.deliveries == () and result.build is None  # no destination configured


def test_results_are_queued_for_the_destinations_by_the_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on the destination: the objects stay pending, in the outbox, for later.
    destination = {"name": "pacs", "kind": "dimse", "host": "127.0.0.1", "port": 9, "ae_title": "NOWHERE"}
    monkeypatch.setenv("DXASSIST_DESTINATIONS", json.dumps([destination]))
    monkeypatch.setenv("DXASSIST_DELIVERY_BACKOFF_SECONDS", "60")
    settings = _settings(tmp_path)
    study = f"2.25.{uuid.uuid4().int}"
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    # Headers a crashed filing spooled but never committed: an old one is swept at start, a young one
    # (perhaps a filing of another process still in progress) is kept.
    spool = tmp_path / "spool" / "builds"
    for name in ("filing-orphan", "filing-young"):
        (spool / name).mkdir(parents=True)
        (spool / name / "primary.pickle").write_bytes(b"header")
    os.utime(spool / "filing-orphan", (time.time() - 7200, time.time() - 7200))

    async def main() -> tuple[ImagingResult, ImagingResult, tuple[Delivery, ...]]:
        async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)) as ctx:
            assert ctx.outbox is not None and [d.name for d in ctx.outbox.destinations] == ["pacs"]
            first = await analyse_study(
                ctx=ctx, actor=PACS_F1, blobs=[blob], source="upload", accept_language=None
            )
            assert isinstance(first.result, ImagingResult)
            rid = first.result.result_id
            # The outbox worker builds the outputs after the request has answered.
            for _ in range(600):
                if ctx.record.builds.for_result(result_id=rid) is None:
                    break
                await asyncio.sleep(0.05)
            again = await analyse_study(
                ctx=ctx, actor=PACS_F1, blobs=[blob], source="upload", accept_language=None
            )
            assert isinstance(again.result, ImagingResult)
            rows = ctx.record.outbox.deliveries(result_id=rid)
            return first.result, again.result, rows

    first, again, rows = asyncio.run(main())
    # The request built nothing: it answered with the outputs owed, one entry per destination.
    assert [(d.destination, d.kind, d.state, d.attempts) for d in first.deliveries] == [
        ("pacs", "outputs", "pending", 0)
    ]
    positives = [f for f in first.findings if f.heatmap]
    assert [r.kind for r in rows] == ["sr"] + ["sc"] * len(positives)
    assert {r.destination for r in rows} == {"pacs"}
    assert all(r.state == "pending" for r in rows)
    # A resend is answered from the record and queues nothing twice.
    assert again.result_id == first.result_id
    assert [d.object for d in again.deliveries] == [r.object for r in rows]
    # The build filed with the result was done by the outbox worker, its spooled header deleted.
    record = Record(settings.record_url)
    try:
        assert record.builds.for_result(result_id=first.result_id) is None
        assert record.builds.spools_in_use() == set()
    finally:
        record.close()
    assert sorted(p.name for p in spool.iterdir()) == ["filing-young"]
