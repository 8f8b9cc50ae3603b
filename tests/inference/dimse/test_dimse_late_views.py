"""Late instances of a study analysed over DIMSE, judged by the view the analysis actually scored.

The listener runs here in process (its analysis step on received study folders), with a SQLite record and
the tiny imaging model whose OOD threshold lies between the scores of a plain film (about 0.01) and of one
with the bright square (about 0.2): the bright one stands for a lateral film tagged PA, which the guard
refuses, so the analysis falls back on the study's next frontal view.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import tiny_models
from sqlalchemy import text

from inference.config import DimseSettings, Settings
from inference.dicom import Limits
from inference.dicom._stable import StableStudy
from inference.dimse import _listener
from inference.policy import Policy
from inference.record import ImagingResult, Record
from inference.runtime import ModelHost
from inference.security import Principal
from inference.services import Actor, Context, Workers, analyse_study

API_TESTS = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API_TESTS))
from _api_dicom import chest_dicom  # noqa: E402

T = TypeVar("T")
OOD_THRESHOLD = 0.1
"""Above a plain film's OOD score, below that of a film with the bright square (a lateral tagged PA)."""
NODE = "MODALITY1"


@asynccontextmanager
async def _context(home: Path) -> AsyncIterator[Context]:
    settings = Settings(
        home=home,
        database_url=None,
        mlflow_tracking_uri=None,
        model_watch_seconds=0,
        dimse=DimseSettings(dimse_open_facility="F1"),
    )
    build = home / "build"
    imaging = tiny_models.build_imaging_onnx(build / "imaging.onnx", ood_threshold=OOD_THRESHOLD)
    tiny_models.seed_cache(settings.model_cache, tiny_models.IMAGING_NAME, imaging)
    triage = tiny_models.build_triage_onnx(build / "triage.onnx")
    tiny_models.seed_cache(settings.model_cache, tiny_models.TRIAGE_NAME, triage)
    record = Record(settings.record_url)
    record.migrate()
    host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(settings.model_cache))
    workers = Workers(1)
    await host.start()
    try:
        yield Context(
            settings, record, host, Policy.load(None), workers, Limits.from_settings(settings.limits)
        )
    finally:
        await host.stop()
        workers.close()
        record.close()


def _run(tmp_path: Path, body: Callable[[Context], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _context(tmp_path / "home") as ctx:
            return await body(ctx)

    return asyncio.run(main())


def _film(study: str, view: str, *, lateral: bool = False, seed: int = 0, sop: str | None = None) -> bytes:
    """A chest CR tagged ``view``, in a series of its own; ``lateral``: an image the guard refuses."""
    sop = sop or f"{study}.{uuid.uuid4().int % 10**12}"
    return chest_dicom(study=study, sop=sop, series=f"{sop}.1", view=view, blob=lateral, seed=seed)


def _received(folder: Path, films: list[bytes]) -> StableStudy:
    """A study folder as the collector hands it to the analysis once quiet."""
    folder.mkdir(parents=True)
    files = []
    for film in films:
        path = folder / f"{uuid.uuid4().hex}.dcm"
        path.write_bytes(film)
        files.append(path)
    return StableStudy(key=folder.name, folder=folder, files=tuple(files), sender=NODE, snapshot=0.0)


def _results_of(ctx: Context, study: str) -> list[str]:
    with ctx.record.engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT results.id FROM results JOIN studies ON results.study_id = studies.id "
                    "WHERE studies.study_instance_uid = :uid"
                ),
                {"uid": study},
            ).scalars()
        )


def _instances_of(ctx: Context, study: str) -> set[str]:
    with ctx.record.engine.connect() as connection:
        return set(
            connection.execute(
                text(
                    "SELECT instances.sop_instance_uid FROM instances JOIN studies "
                    "ON instances.study_id = studies.id WHERE studies.study_instance_uid = :uid"
                ),
                {"uid": study},
            ).scalars()
        )


def _study_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def test_a_late_lateral_tagged_pa_with_an_ap_leaves_the_result_of_the_real_pa(tmp_path: Path) -> None:
    """The late pair ranks as a PA by its tag, but the analysis scores its AP (the lateral is refused):
    an AP's result must not supersede the result of the study's real PA."""
    study = _study_uid()
    fake_pa, ap = f"{study}.2", f"{study}.3"

    async def body(ctx: Context) -> tuple[str | None, list[str], str | None, set[str]]:
        assert await _listener._analyse(ctx, _received(tmp_path / "first", [_film(study, "PA", seed=1)]))
        first = ctx.record.results.latest_for_study(study_instance_uid=study)
        assert isinstance(first, ImagingResult) and first.assessable
        late = [_film(study, "PA", lateral=True, seed=2, sop=fake_pa), _film(study, "AP", seed=3, sop=ap)]
        assert await _listener._analyse(ctx, _received(tmp_path / "late", late))
        newest = ctx.record.results.latest_for_study(study_instance_uid=study)
        return (
            first.result_id,
            _results_of(ctx, study),
            newest.result_id if newest is not None else None,
            _instances_of(ctx, study),
        )

    first, results, newest, instances = _run(tmp_path, body)
    assert results == [first]
    assert newest == first
    assert {fake_pa, ap} <= instances  # joined the study, as the PACS holds them


def test_a_late_lateral_tagged_pa_with_an_ap_after_an_ap_still_supersedes(tmp_path: Path) -> None:
    """Ranked by the view scored, an AP after an AP is a retake of the same rank: analysed, a new result."""
    study = _study_uid()

    async def body(ctx: Context) -> tuple[str | None, list[str], str | None]:
        assert await _listener._analyse(ctx, _received(tmp_path / "first", [_film(study, "AP", seed=1)]))
        first = ctx.record.results.latest_for_study(study_instance_uid=study)
        late = [_film(study, "PA", lateral=True, seed=2), _film(study, "AP", seed=3)]
        assert await _listener._analyse(ctx, _received(tmp_path / "late", late))
        newest = ctx.record.results.latest_for_study(study_instance_uid=study)
        assert isinstance(newest, ImagingResult) and newest.assessable
        return (
            first.result_id if first is not None else None,
            _results_of(ctx, study),
            newest.result_id,
        )

    first, results, newest = _run(tmp_path, body)
    assert len(results) == 2 and newest != first


async def _analysed_with_late_lateral(tmp_path: Path, ctx: Context, study: str) -> tuple[str, list[bytes]]:
    """``study`` analysed from its PA over DIMSE, then a late lateral that joined it (its result standing):
    the result, and the study's files as the PACS holds them."""
    pa, lateral = _film(study, "PA", seed=1), _film(study, "LL", seed=2)
    assert await _listener._analyse(ctx, _received(tmp_path / "first", [pa]))
    first = ctx.record.results.latest_for_study(study_instance_uid=study)
    assert first is not None
    assert await _listener._analyse(ctx, _received(tmp_path / "late", [lateral]))
    assert _results_of(ctx, study) == [first.result_id]
    assert len(_instances_of(ctx, study)) == 2
    return first.result_id, [pa, lateral]


def test_the_whole_study_sent_again_over_dimse_after_a_late_instance_files_no_second_result(
    tmp_path: Path,
) -> None:
    study = _study_uid()

    async def body(ctx: Context) -> tuple[str, list[str], str | None]:
        first, films = await _analysed_with_late_lateral(tmp_path, ctx, study)
        assert await _listener._analyse(ctx, _received(tmp_path / "again", films))
        newest = ctx.record.results.latest_for_study(study_instance_uid=study)
        return first, _results_of(ctx, study), newest.result_id if newest is not None else None

    first, results, newest = _run(tmp_path, body)
    assert results == [first]
    assert newest == first


def test_the_whole_study_uploaded_again_after_a_late_instance_is_answered_with_its_result(
    tmp_path: Path,
) -> None:
    study = _study_uid()
    pacs = Actor(Principal(subject="pacs-1", role="pacs", facility="F1"), client="127.0.0.1")

    async def body(ctx: Context) -> tuple[str, list[str], str, bool]:
        first, films = await _analysed_with_late_lateral(tmp_path, ctx, study)
        outcome = await analyse_study(ctx=ctx, actor=pacs, blobs=films, source="upload", accept_language=None)
        return first, _results_of(ctx, study), outcome.result.result_id, outcome.created

    first, results, answered, created = _run(tmp_path, body)
    assert results == [first]
    assert (answered, created) == (first, False)


def test_a_late_lateral_tagged_pa_alone_leaves_the_result_of_the_real_pa(tmp_path: Path) -> None:
    """The model refuses the late view and the study's result scored a PA: a "not assessable" result
    would supersede it (and its SR the PA's in the PACS); the PA's result stands, the instance joins."""
    study = _study_uid()
    fake_pa = f"{study}.2"

    async def body(ctx: Context) -> tuple[str, list[str], set[str]]:
        assert await _listener._analyse(ctx, _received(tmp_path / "first", [_film(study, "PA", seed=1)]))
        first = ctx.record.results.latest_for_study(study_instance_uid=study)
        assert first is not None
        late = [_film(study, "PA", lateral=True, seed=2, sop=fake_pa)]
        assert await _listener._analyse(ctx, _received(tmp_path / "late", late))
        return first.result_id, _results_of(ctx, study), _instances_of(ctx, study)

    first, results, instances = _run(tmp_path, body)
    assert results == [first]
    assert fake_pa in instances


def test_a_late_ap_after_a_not_assessable_result_is_analysed(tmp_path: Path) -> None:
    """The study's first film was a lateral tagged PA (the guard refused it: a "not assessable" result);
    a real AP sent later is analysed and its result supersedes it, though its tag ranks below PA."""
    study = _study_uid()

    async def body(ctx: Context) -> tuple[ImagingResult, ImagingResult, list[str]]:
        late_first = [_film(study, "PA", lateral=True, seed=2, sop=f"{study}.2")]
        assert await _listener._analyse(ctx, _received(tmp_path / "first", late_first))
        first = ctx.record.results.latest_for_study(study_instance_uid=study)
        assert await _listener._analyse(ctx, _received(tmp_path / "late", [_film(study, "AP", seed=3)]))
        latest = ctx.record.results.latest_for_study(study_instance_uid=study)
        assert isinstance(first, ImagingResult) and isinstance(latest, ImagingResult)
        return first, latest, _results_of(ctx, study)

    first, latest, results = _run(tmp_path, body)
    assert not first.assessable
    assert latest.result_id != first.result_id and latest.assessable
    assert len(results) == 2
