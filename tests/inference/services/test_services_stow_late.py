"""Late instances pushed over STOW-RS (a PACS's second push of a study that grew, as Orthanc's DICOMweb
plugin sends a series that arrived after the study was stable) join the study the record holds a result
of, as they do over DIMSE (docs/pacs.md, "Late instances"): a lateral alone is not refused, a view ranked
below the one analysed leaves the result standing, and a better one is analysed."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text

from inference.services import Actor, Context, StowOutcome, store_instances

T = TypeVar("T")
API_TESTS = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API_TESTS))
from _api_dicom import chest_dicom  # noqa: E402
from test_services_flow import PACS_F1, _context  # noqa: E402


def _run(tmp_path: Path, body: Callable[[Context], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _context(tmp_path) as ctx:
            return await body(ctx)

    return asyncio.run(main())


def _film(study: str, view: str, *, seed: int) -> tuple[str, bytes]:
    sop = f"{study}.{uuid.uuid4().int % 10**12}"
    return sop, chest_dicom(study=study, sop=sop, series=f"{sop}.1", view=view, seed=seed)


async def _stow(ctx: Context, actor: Actor, films: list[bytes]) -> StowOutcome:
    parts = [("application/dicom", film) for film in films]
    return await store_instances(ctx=ctx, actor=actor, parts=parts, accept_language=None)


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


def test_a_late_lateral_pushed_over_stow_joins_its_analysed_study(tmp_path: Path) -> None:
    study = f"2.25.{uuid.uuid4().int}"
    _, pa = _film(study, "PA", seed=1)
    lateral_uid, lateral = _film(study, "LL", seed=2)

    async def body(ctx: Context) -> tuple[StowOutcome, StowOutcome, list[str], set[str]]:
        first = await _stow(ctx, PACS_F1, [pa])
        late = await _stow(ctx, PACS_F1, [lateral])
        return first, late, _results_of(ctx, study), _instances_of(ctx, study)

    first, late, results, instances = _run(tmp_path, body)
    (filed,) = first.stored
    assert late.failed == []
    assert [(s.sop_instance_uid, s.result_id) for s in late.stored] == [(lateral_uid, filed.result_id)]
    assert results == [filed.result_id]
    assert lateral_uid in instances


def test_a_late_ap_pushed_over_stow_leaves_the_result_of_the_pa(tmp_path: Path) -> None:
    study = f"2.25.{uuid.uuid4().int}"
    _, pa = _film(study, "PA", seed=1)
    ap_uid, ap = _film(study, "AP", seed=3)

    async def body(ctx: Context) -> tuple[StowOutcome, StowOutcome, list[str]]:
        first = await _stow(ctx, PACS_F1, [pa])
        late = await _stow(ctx, PACS_F1, [ap])
        return first, late, _results_of(ctx, study)

    first, late, results = _run(tmp_path, body)
    (filed,) = first.stored
    assert [(s.sop_instance_uid, s.result_id) for s in late.stored] == [(ap_uid, filed.result_id)]
    assert results == [filed.result_id]


def test_a_late_pa_pushed_over_stow_after_an_ap_is_analysed(tmp_path: Path) -> None:
    study = f"2.25.{uuid.uuid4().int}"
    _, ap = _film(study, "AP", seed=1)
    _, pa = _film(study, "PA", seed=3)

    async def body(ctx: Context) -> tuple[StowOutcome, StowOutcome, list[str]]:
        first = await _stow(ctx, PACS_F1, [ap])
        late = await _stow(ctx, PACS_F1, [pa])
        return first, late, _results_of(ctx, study)

    first, late, results = _run(tmp_path, body)
    (analysed,) = late.stored
    assert analysed.result_id != first.stored[0].result_id
    assert len(results) == 2


def test_a_late_lateral_tagged_pa_with_an_ap_pushed_over_stow_leaves_the_result_of_the_pa(
    tmp_path: Path,
) -> None:
    """Judged by the view scored (the AP, the lateral refused by the guard), not by the lateral's tag."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dimse"))
    from test_dimse_late_views import _context as _guarded_context

    study = f"2.25.{uuid.uuid4().int}"
    _, pa = _film(study, "PA", seed=1)
    fake_pa_uid = f"{study}.2"
    fake_pa = chest_dicom(study=study, sop=fake_pa_uid, series=f"{study}.2.1", view="PA", blob=True, seed=2)
    ap_uid, ap = _film(study, "AP", seed=3)

    async def main() -> tuple[StowOutcome, StowOutcome, list[str]]:
        async with _guarded_context(tmp_path / "home") as ctx:
            first = await _stow(ctx, PACS_F1, [pa])
            late = await _stow(ctx, PACS_F1, [fake_pa, ap])
            return first, late, _results_of(ctx, study)

    first, late, results = asyncio.run(main())
    (filed,) = first.stored
    assert late.failed == []
    assert {(s.sop_instance_uid, s.result_id) for s in late.stored} == {
        (fake_pa_uid, filed.result_id),
        (ap_uid, filed.result_id),
    }
    assert results == [filed.result_id]


def test_a_late_lateral_tagged_pa_alone_pushed_over_stow_leaves_the_result_of_the_pa(
    tmp_path: Path,
) -> None:
    """Refused by the guard, the late view was not scored: the PA's result stands."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dimse"))
    from test_dimse_late_views import _context as _guarded_context

    study = f"2.25.{uuid.uuid4().int}"
    _, pa = _film(study, "PA", seed=1)
    fake_pa_uid = f"{study}.2"
    fake_pa = chest_dicom(study=study, sop=fake_pa_uid, series=f"{study}.2.1", view="PA", blob=True, seed=2)

    async def main() -> tuple[StowOutcome, StowOutcome, list[str]]:
        async with _guarded_context(tmp_path / "home") as ctx:
            first = await _stow(ctx, PACS_F1, [pa])
            late = await _stow(ctx, PACS_F1, [fake_pa])
            return first, late, _results_of(ctx, study)

    first, late, results = asyncio.run(main())
    (filed,) = first.stored
    assert [(s.sop_instance_uid, s.result_id) for s in late.stored] == [(fake_pa_uid, filed.result_id)]
    assert results == [filed.result_id]


def test_a_late_ap_after_a_not_assessable_result_is_analysed(tmp_path: Path) -> None:
    """A study whose first film the guard refused (a lateral tagged PA) has a "not assessable" result; a
    real AP sent later ranks below that film's tag, but a result the model could not assess must not
    keep a view it can from being analysed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dimse"))
    from test_dimse_late_views import _context as _guarded_context

    study = f"2.25.{uuid.uuid4().int}"
    fake_pa_uid = f"{study}.2"
    fake_pa = chest_dicom(study=study, sop=fake_pa_uid, series=f"{study}.2.1", view="PA", blob=True, seed=2)
    ap_uid, ap = _film(study, "AP", seed=3)

    async def main() -> tuple[StowOutcome, StowOutcome, list[str]]:
        async with _guarded_context(tmp_path / "home") as ctx:
            first = await _stow(ctx, PACS_F1, [fake_pa])
            late = await _stow(ctx, PACS_F1, [ap])
            return first, late, _results_of(ctx, study)

    first, late, results = asyncio.run(main())
    (refused,) = first.stored
    (analysed,) = late.stored
    assert analysed.sop_instance_uid == ap_uid
    assert analysed.result_id != refused.result_id, "the AP joined the not-assessable result unanalysed"
    assert sorted(results) == sorted([refused.result_id, analysed.result_id])
