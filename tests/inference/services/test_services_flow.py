"""The service functions without HTTP: priority never lowers, STOW grouping, scoping, no FastAPI inside."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import tiny_models

from inference.config import Settings
from inference.dicom import DicomRejected, Limits
from inference.policy import Policy
from inference.record import NotFound, PatientIn, Record
from inference.runtime import ModelHost
from inference.security import Principal
from inference.services import (
    Actor,
    Context,
    Workers,
    analyse_study,
    analyse_vitals,
    get_result,
    store_instances,
)
from inference.triage import VitalsRejected

T = TypeVar("T")
API_TESTS = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API_TESTS))
from _api_dicom import chest_dicom  # noqa: E402

PACS_F1 = Actor(Principal(subject="pacs-1", role="pacs", facility="F1"), client="127.0.0.1")


@asynccontextmanager
async def _context(home: Path) -> AsyncIterator[Context]:
    settings = Settings(home=home, database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0)
    tiny_models.seed_both(settings.model_cache, home / "build")
    record = Record(settings.record_url)
    record.migrate()
    host = ModelHost(settings.runtime, fetch=tiny_models.cache_fetcher(settings.model_cache))
    workers = Workers(1)
    await host.start()
    try:
        limits = Limits.from_settings(settings.limits)
        yield Context(settings, record, host, Policy.load(None), workers, limits)
    finally:
        await host.stop()
        workers.close()
        record.close()


def _run(tmp_path: Path, body: Callable[[Context], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _context(tmp_path) as ctx:
            return await body(ctx)

    return asyncio.run(main())


def _study() -> str:
    return f"2.25.{uuid.uuid4().int}"


def test_a_new_analysis_never_lowers_the_study_priority(tmp_path: Path) -> None:
    study = _study()

    async def body(ctx: Context) -> tuple[str, str, bool, str]:
        first = await analyse_study(
            ctx=ctx,
            actor=PACS_F1,
            blobs=[chest_dicom(study=study, sop=f"{study}.1", blob=True)],
            source="upload",
            accept_language=None,
        )
        # Another image of the same study, clean this time: on its own it would be routine.
        second = await analyse_study(
            ctx=ctx,
            actor=PACS_F1,
            blobs=[chest_dicom(study=study, sop=f"{study}.2", blob=False)],
            source="upload",
            accept_language=None,
        )
        clean = _study()
        alone = await analyse_study(
            ctx=ctx,
            actor=PACS_F1,
            blobs=[chest_dicom(study=clean, sop=f"{clean}.1")],
            source="upload",
            accept_language=None,
        )
        return first.result.priority, second.result.priority, second.created, alone.result.priority

    first, second, created, alone = _run(tmp_path, body)
    assert (first, alone) == ("critical", "routine")
    assert created and second == "critical"


def test_stow_groups_instances_by_study(tmp_path: Path) -> None:
    a, b = _study(), _study()
    parts = [
        ("application/dicom", chest_dicom(study=a, sop=f"{a}.1")),
        ("application/dicom", chest_dicom(study=b, sop=f"{b}.1", blob=True)),
        ("application/dicom", chest_dicom(study=a, sop=f"{a}.2", view="LL")),
        ("text/plain", b"hello"),
    ]

    async def body(ctx: Context):
        return await store_instances(ctx=ctx, actor=PACS_F1, parts=parts, accept_language=None)

    outcome = _run(tmp_path, body)
    by_study = {s.study_instance_uid: s.result_id for s in outcome.stored}
    assert sorted(by_study) == sorted([a, b])
    assert len(outcome.stored) == 3 and len(set(by_study.values())) == 2
    assert [f.code for f in outcome.failed] == ["unsupported_media_type"]


def test_refusals_surface_as_package_errors(tmp_path: Path) -> None:
    async def body(ctx: Context) -> list[type[Exception]]:
        caught: list[type[Exception]] = []
        for attempt in (
            analyse_study(ctx=ctx, actor=PACS_F1, blobs=[], source="upload", accept_language=None),
            analyse_vitals(
                ctx=ctx,
                actor=PACS_F1,
                patient=PatientIn(identifier="S-1"),
                vitals={"temperature": 98.6},
                observed_at=None,
                accept_language=None,
            ),
        ):
            try:
                await attempt
            except (DicomRejected, VitalsRejected) as e:
                caught.append(type(e))
        return caught

    caught = _run(tmp_path, body)
    assert issubclass(caught[0], DicomRejected) and issubclass(caught[1], VitalsRejected)


def test_vitals_patient_takes_the_callers_facility_and_is_scoped(tmp_path: Path) -> None:
    nurse_f1 = Actor(Principal(subject="n1", role="clinician", facility="F1"), client=None)
    doctor_f2 = Actor(Principal(subject="d2", role="clinician", facility="F2"), client=None)

    async def body(ctx: Context) -> tuple[dict, bool]:
        outcome = await analyse_vitals(
            ctx=ctx,
            actor=nurse_f1,
            patient=PatientIn(identifier="S-2"),
            vitals={"heart_rate": 80},
            observed_at=None,
            accept_language="fr",
        )
        rid = outcome.result.result_id
        try:
            await get_result(ctx=ctx, actor=doctor_f2, result_id=rid, accept_language=None)
            refused = False
        except NotFound:  # answered as an unknown result: F2 does not learn that it exists
            refused = True
        events = ctx.record.audit.events(patient_id=outcome.result.patient.id)
        return {"result": outcome.result, "language": outcome.language, "events": events}, refused

    data, refused = _run(tmp_path, body)
    assert refused
    news2 = data["result"].news2
    assert news2["complete"] is False and news2["subscores"] == {"heart_rate": 0}
    assert data["language"] == "fr" and data["result"].rationale["fr"]
    assert {(e["subject"], e["outcome"]) for e in data["events"]} == {("n1", "success"), ("d2", "denied")}


def test_services_do_not_import_fastapi() -> None:
    code = "import sys, inference.services; print('fastapi' in sys.modules or 'starlette' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.stdout.strip() == "False"
