"""What one imaging result costs the record: at most 300 KB with five positive findings.

Measured on the benchmark's 2048 x 2048 12-bit phantom (anatomy, vessels and quantum noise, so the
display rendering has a radiograph's entropy), filed three times as new studies through the server's
path, as the growth of ``record.db`` itself (write-ahead log checkpointed) divided by three.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from _analysis_env import PACS, READER, all_positive_home
from sqlalchemy import text

from benchmarks._files import EXPLICIT_LE, UidTemplate, _dataset, _write, chest_pixels, uid_variants
from inference.record import ImagingResult
from inference.services import analyse_study, get_heatmap, open_context

BUDGET = 300 * 1024
STUDIES = 3


def _size(ctx_record, path: Path) -> int:  # type: ignore[no-untyped-def]
    with ctx_record.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return path.stat().st_size


def test_an_all_positive_result_grows_the_record_by_at_most_300_kb(tmp_path: Path) -> None:
    import tiny_models

    settings = all_positive_home(tmp_path)
    uids = UidTemplate()
    template = _write(_dataset(chest_pixels(2048), uids), EXPLICIT_LE)
    bodies = uid_variants(template, uids, range(1, STUDIES + 1))
    database = tmp_path / "record.db"

    async def main() -> tuple[int, int, list[int]]:
        async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)) as ctx:
            warm = await analyse_study(
                ctx=ctx, actor=PACS, blobs=[template], source="upload", accept_language=None
            )
            assert warm.created
            before = _size(ctx.record, database)
            positives = []
            for body in bodies:
                outcome = await analyse_study(
                    ctx=ctx, actor=PACS, blobs=[body], source="upload", accept_language=None
                )
                assert isinstance(outcome.result, ImagingResult)
                codes = [f.code for f in outcome.result.findings if f.positive and f.heatmap]
                positives.append(len(codes))
                # Looking at every heatmap stores nothing more: overlays are drawn and cached in memory.
                for code in codes:
                    await get_heatmap(ctx=ctx, actor=READER, result_id=outcome.result.result_id, code=code)
            return before, _size(ctx.record, database), positives

    before, after, positives = asyncio.run(main())
    assert positives == [5] * STUDIES
    growth = (after - before) / STUDIES
    assert growth <= BUDGET, f"{growth / 1024:.0f} KB per result"
    assert growth > 20 * 1024, "the display rendering is stored with each result"


def test_display_rendering_budget_holds_even_for_pure_noise() -> None:
    """An image of pure noise (incompressible) is stored at a lower quality, within the same budget."""
    import numpy as np

    from inference.analysis import Rendering
    from inference.analysis._rendering import DISPLAY_BUDGET
    from inference.preprocess import Geometry

    noise = np.random.default_rng(0).integers(0, 256, size=(1024, 1024), dtype=np.uint8)
    rendering = Rendering(display=noise, cams={}, geometry=Geometry.letterbox((2048, 2048), 64))
    stored = rendering.to_stored()
    assert len(stored.display) <= DISPLAY_BUDGET
    back = Rendering.from_stored(stored)
    assert back.shape == (1024, 1024) and back.geometry == rendering.geometry
