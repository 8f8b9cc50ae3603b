"""After a study result is filed: queue its DICOM outputs for every destination, and show their state.

One place for every channel (upload, STOW-RS, DIMSE): :func:`prepare_outputs` spools the source header
and names the destinations before filing, so the result is committed together with a pending build of
its outputs (:func:`inference.record._builds.add_filed`: a crash after the commit loses no delivery, the
outbox worker takes the build over once the filing process's lease ends); :func:`analyse_decoded` then
calls :func:`queue_outputs` once the result is committed; the SR and heatmap captures are built from what the
record holds (the result, its display rendering and CAMs), so nothing runs the model again.

When building fails, the result is filed all the same and the failure is recorded
(:mod:`inference.record._builds`) with the source's header spooled under ``DXASSIST_HOME/spool/builds``
(the one input of the build the record does not hold);
the outbox worker builds again with backoff (:func:`rebuild_outputs`), then dead-letters it. The result
then says so: a warning with the code, and one ``outputs`` entry per destination in ``deliveries``.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from inference.record import OutputsIn, _builds
from inference.record._types import utcnow
from inference.services import _warnings
from inference.services._context import Context, db
from inference.services._errors import ServiceError

if TYPE_CHECKING:
    from inference.dicom import Instance, Study

logger = logging.getLogger(__name__)

SPOOL_DIR: Final = Path("spool") / "builds"
_SPOOL_FILE: Final = "primary.pickle"


class OutputsUnbuildable(ServiceError, RuntimeError):
    """A failed build cannot be tried again: its result or its spooled image is gone."""

    code = "output_source_missing"


def _spool(home: Path, name: str, primary: Instance) -> str:
    """Keep the analysed instance's header for the next build attempts; return the folder relative to
    ``DXASSIST_HOME``. Its pixels are left out: the captures are drawn from the stored rendering.

    The spool is private to dxassist (written and read only by it, under ``DXASSIST_HOME`` like the
    record). The header goes as a DICOM stream (pydicom's element values do not all pickle), the other
    fields of the instance with :mod:`pickle`.
    """
    import dataclasses
    import warnings
    from io import BytesIO

    from pydicom.filewriter import dcmwrite

    header = BytesIO()
    with warnings.catch_warnings():
        # A source's invalid values (the reason builds fail) make pydicom warn, quoting them: keep quiet.
        warnings.simplefilter("ignore")
        dcmwrite(header, primary.header, enforce_file_format=False)
    fields = {f.name: getattr(primary, f.name) for f in dataclasses.fields(primary) if f.name != "header"}
    fields["pixels"] = np.zeros((0, 0), dtype=primary.pixels.dtype)
    relative = SPOOL_DIR / name
    folder = home / relative
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{_SPOOL_FILE}.tmp"
    with open(tmp, "wb") as handle:
        pickle.dump({"fields": fields, "header": header.getvalue()}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(folder / _SPOOL_FILE)
    return relative.as_posix()


def _load_spool(home: Path, relative: str | None) -> Instance:
    from io import BytesIO

    from pydicom import dcmread

    from inference.dicom import Instance

    if not relative:
        raise OutputsUnbuildable("The analysed image of this result was not kept; send the study again.")
    path = home / relative / _SPOOL_FILE
    if not path.is_file():
        raise OutputsUnbuildable("The analysed image of this result is gone; send the study again.")
    with open(path, "rb") as handle:
        saved = pickle.load(handle)  # noqa: S301 - our own spool under DXASSIST_HOME
    header = dcmread(BytesIO(saved["header"]), force=True)
    return Instance(**saved["fields"], header=header)


async def prepare_outputs(ctx: Context, *, study: Study) -> OutputsIn | None:
    """What a new result of ``study`` owes the destinations, to file with it (None: no destinations).

    The source header is spooled now, before the result is committed, so that the build filed with the
    result can be done by any process, also after this one crashed.
    """
    outbox = ctx.outbox
    if outbox is None or not outbox.destinations:
        return None
    try:
        spool: str | None = await db(
            _spool, ctx.settings.resolved_home, f"filing-{uuid.uuid4().hex}", study.primary
        )
    except Exception:  # the result is filed all the same; only a rebuild in another process lacks its header
        logger.exception("the source header of a result could not be spooled for its output build")
        spool = None
    return OutputsIn(
        destinations=tuple(d.name for d in outbox.destinations),
        spool=spool,
        lease_seconds=outbox.filing_lease_seconds,
    )


async def discard_spool(ctx: Context, spool: str | None) -> None:
    """Delete a spool folder no build row refers to (the result was a resend, or was refused)."""
    if spool:
        await db(shutil.rmtree, ctx.settings.resolved_home / spool, ignore_errors=True)


_ORPHAN_AGE_SECONDS: Final = 3600.0


def sweep_spool(ctx: Context, *, older_than_seconds: float = _ORPHAN_AGE_SECONDS) -> int:
    """Delete the filing spools no build row refers to (blocking); return how many went.

    A process killed between spooling a header and committing its result leaves a folder nothing will
    read; it holds a patient's header, so it does not stay. Only folders older than
    ``older_than_seconds`` go: a younger one may belong to a filing still in progress in another process.
    """
    import time

    root = ctx.settings.resolved_home / SPOOL_DIR
    if not root.is_dir():
        return 0
    removed = 0
    try:
        in_use = ctx.record.builds.spools_in_use()
        cutoff = time.time() - older_than_seconds
        for folder in root.glob("filing-*"):
            relative = (SPOOL_DIR / folder.name).as_posix()
            if relative in in_use or folder.stat().st_mtime > cutoff:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    except Exception:  # the next start sweeps again; serving must not wait for it
        logger.exception("the filing spools could not be swept")
    if removed:
        logger.info("orphaned filing spools deleted", extra={"event": "spool_swept", "count": removed})
    return removed


async def queue_outputs(
    ctx: Context,
    *,
    study: Study,
    result: dict[str, Any],
    spool: str | None = None,
) -> bool:
    """Queue the SR and heatmap captures of a committed imaging result, then wake the outbox worker.

    Nothing is queued for a patient who objected to sharing (see
    :func:`inference.delivery.enqueue_result`). A build failure is recorded for the outbox worker to
    build again with backoff (then dead-lettered), not raised: the result is filed and answerable.

    Args:
        ctx: The process's engines (``ctx.outbox`` None or without destinations: nothing to do).
        study: The decoded study the result was made from (its header goes into the objects).
        result: The committed result as the record returns it.
        spool: The spool of the build filed with the result (:func:`prepare_outputs`), reused when the
            build fails.

    Returns:
        False when the outputs could neither be queued nor their failure recorded.
    """
    from inference.delivery import enqueue_result

    outbox = ctx.outbox
    if outbox is None or not outbox.destinations:
        return True
    try:
        added = await enqueue_result(
            record=ctx.record,
            destinations=outbox.destinations,
            org_root=ctx.settings.record.org_root,
            study=study,
            result=result,
        )
    except Exception as e:  # the result is committed; a writer or database failure must not lose it
        return await _build_failed(ctx, study=study, result=result, error=e, spool=spool)
    try:
        settled = await db(ctx.record.builds.settle_filed, result_id=str(result["result_id"]))
    except Exception:  # the outputs are queued; the build row is closed by the worker's own build
        logger.exception("the build filed with a result could not be closed")
    else:
        await discard_spool(ctx, settled)
    if added:
        outbox.wake()
    return True


async def _build_failed(
    ctx: Context, *, study: Study, result: dict[str, Any], error: Exception, spool: str | None = None
) -> bool:
    """Record a failed first build for the outbox worker to retry; False when even that failed."""
    from inference.delivery._worker import error_code
    from inference.observability import count_dead_lettered, count_retry

    outbox = ctx.outbox
    assert outbox is not None
    result_id = str(result["result_id"])
    code = error_code(error, "output_build_failed")
    dead = outbox.build_max_attempts <= 1
    logger.error(
        "the outputs of a filed result could not be built (%s)",
        type(error).__name__,
        exc_info=(type(error), error, error.__traceback__),
        extra={"event": "build_dead" if dead else "build_retry", "result_id": result_id, "code": code},
    )
    try:
        if spool is None:
            spool = await db(_spool, ctx.settings.resolved_home, result_id, study.primary)
        await db(
            ctx.record.builds.add_failed,
            result_id=result_id,
            destinations=[d.name for d in outbox.destinations],
            code=code,
            error=f"Building the outputs failed ({type(error).__name__}).",
            spool=spool,
            next_attempt_at=utcnow() + timedelta(seconds=outbox.retry_delay(1)),
            dead=dead,
        )
    except Exception:
        logger.exception("the failed build of a result could not be recorded", extra={"result_id": result_id})
        return False
    if dead:
        count_dead_lettered("build", code)
    else:
        count_retry("build", code)
    return True


async def rebuild_outputs(ctx: Context, job: _builds.BuildJob) -> None:
    """Build and queue the outputs of a result whose earlier build failed (the outbox worker calls it).

    The captures are drawn from the result's stored rendering, the header from the spool.

    Raises:
        OutputsUnbuildable: The result or its spooled image is gone.
        Exception: Whatever the writers raise; the worker records it and retries with backoff.
    """
    from inference.delivery import enqueue_result
    from inference.dicom import Study

    outbox = ctx.outbox
    assert outbox is not None
    result = await db(ctx.record.results.get, result_id=job.result_id)
    if result is None:
        raise OutputsUnbuildable("The result of this build is no longer in the record.")
    home = ctx.settings.resolved_home
    primary = await db(_load_spool, home, job.spool)
    study = Study(study_instance_uid=primary.study_instance_uid, instances=(primary,), primary=primary)
    destinations = [d for d in outbox.destinations if d.name in job.destinations]
    await enqueue_result(
        record=ctx.record,
        destinations=destinations,
        org_root=ctx.settings.record.org_root,
        study=study,
        result=result,
    )
    if job.spool:
        await db(shutil.rmtree, home / job.spool, ignore_errors=True)
    outbox.wake()


async def with_deliveries(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``deliveries``: the state of each object queued for a destination (imaging only)."""
    if result.get("kind") != "imaging":
        return result  # triage results are never delivered
    result_id = str(result["result_id"])
    rows = await db(ctx.record.outbox.deliveries, result_id=result_id)
    build = await db(ctx.record.builds.for_result, result_id=result_id)
    if build is None:
        return {**result, "deliveries": rows}
    # The outputs are not built yet: one entry per destination still waiting for them, and a warning.
    waiting = [
        {
            "destination": name,
            "kind": "outputs",
            "object": None,
            "state": build["state"],
            "attempts": build["attempts"],
            "sent_at": None,
            "last_error": build["last_error"],
            "error": build["error_code"],
        }
        for name in build["destinations"]
        if not any(row["destination"] == name for row in rows)
    ]
    if build["state"] == "pending" and build["attempts"] == 0:
        return {**result, "deliveries": rows + waiting}  # filed a moment ago and being built: no failure
    warning = _warnings.outputs_not_built(
        build["error_code"] or "output_build_failed", dead=build["state"] == "dead"
    )
    return {**result, "deliveries": rows + waiting, "warnings": [*result.get("warnings", []), warning]}
