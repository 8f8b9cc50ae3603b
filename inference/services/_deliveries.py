"""After a study result is filed: its DICOM outputs are owed to every destination, built off the request path.

One place for every channel (upload, STOW-RS, DIMSE): :func:`prepare_outputs` serialises the source header
(:func:`serialise_source`) and names the destinations before filing, so the result is committed together
with a pending build of its outputs (:func:`inference.record._builds.add_filed`, in the result's
transaction, the header in the build row). The request then only wakes the outbox worker
(:func:`outputs_owed`); the worker (of this process, or of any replica on any host after a crash) claims
the build and calls :func:`build_outputs`, which makes the SR and heatmap captures from what the record
holds (the result, its display rendering and CAMs, the source header), so nothing runs the model again
and nothing is built on the request path.

When building fails, the worker tries again with backoff, then dead-letters it
(:mod:`inference.record._builds`). The result then says so: a warning with the code
(:func:`with_build_warning`), and one ``outputs`` entry per destination in ``deliveries``.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from inference.record import AnyResult, ImagingResult, OutputsIn, _builds
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


def serialise_source(primary: Instance) -> bytes:
    """The analysed instance without its pixels, for a later build on any host (kept in the record).

    An ``npz`` read back with ``allow_pickle=False``: the DICOM header as a byte stream (pydicom's element
    values do not all serialise otherwise), the VOI LUT table as an array, the other fields as JSON. The
    captures are drawn from the stored rendering, so no pixels are kept. Nothing here is ever unpickled:
    a row of the record cannot make a server run code.
    """
    import dataclasses
    import json
    import warnings
    from io import BytesIO

    from pydicom.filewriter import dcmwrite

    header = BytesIO()
    with warnings.catch_warnings():
        # A source's invalid values (the reason builds fail) make pydicom warn, quoting them: keep quiet.
        warnings.simplefilter("ignore")
        dcmwrite(header, primary.header, enforce_file_format=False)
    skip = {"header", "pixels", "voi_lut", "patient"}
    fields: dict[str, Any] = {
        f.name: getattr(primary, f.name) for f in dataclasses.fields(primary) if f.name not in skip
    }
    fields["patient"] = dataclasses.asdict(primary.patient)
    fields["pixels_dtype"] = primary.pixels.dtype.str
    arrays = {"header": np.frombuffer(header.getvalue(), dtype=np.uint8)}
    fields["voi_lut"] = None
    if primary.voi_lut is not None:
        first, bits, table = primary.voi_lut
        fields["voi_lut"] = [int(first), int(bits)]
        arrays["voi_lut"] = np.asarray(table)
    text = json.dumps(
        fields, default=lambda value: value.item() if isinstance(value, np.generic) else list(value)
    )
    arrays["fields"] = np.frombuffer(text.encode(), dtype=np.uint8)
    out = BytesIO()
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def _deserialise_source(blob: bytes) -> Instance:
    import json
    from io import BytesIO

    from pydicom import dcmread

    from inference.dicom import Instance, PatientInfo

    with np.load(BytesIO(blob), allow_pickle=False) as data:
        fields = json.loads(data["fields"].tobytes())
        header_bytes = data["header"].tobytes()
        table = np.array(data["voi_lut"]) if "voi_lut" in data.files else None
    lut = fields.pop("voi_lut")
    patient = PatientInfo(**fields.pop("patient"))
    dtype = np.dtype(fields.pop("pixels_dtype"))
    for name in ("window_centers", "window_widths", "pixel_spacing"):
        if fields.get(name) is not None:
            fields[name] = tuple(fields[name])
    return Instance(
        **fields,
        patient=patient,
        pixels=np.zeros((0, 0), dtype=dtype),
        voi_lut=(lut[0], lut[1], table) if lut is not None and table is not None else None,
        header=dcmread(BytesIO(header_bytes), force=True),
    )


def _load_spool(home: Path, relative: str | None, source: bytes | None = None) -> Instance:
    """The source of a build: from the record (``source``), else from a spool folder of this host."""
    from io import BytesIO

    if source is not None:
        return _deserialise_source(source)
    if not relative:
        raise OutputsUnbuildable("The analysed image of this result was not kept; send the study again.")
    path = home / relative / _SPOOL_FILE
    if not path.is_file():
        raise OutputsUnbuildable(
            "The analysed image of this result is gone (kept on the disk of the process that filed it); "
            "send the study again."
        )
    data = path.read_bytes()
    if not data.startswith(b"PK"):
        # A spool written by a version before the source moved into the record: our own pickle, on this
        # host's disk under DXASSIST_HOME (never from the database).
        from pydicom import dcmread

        from inference.dicom import Instance

        saved = pickle.loads(data)  # noqa: S301
        return Instance(**saved["fields"], header=dcmread(BytesIO(saved["header"]), force=True))
    return _deserialise_source(data)


async def prepare_outputs(ctx: Context, *, study: Study) -> OutputsIn | None:
    """What a new result of ``study`` owes the destinations, to file with it (None: no destinations).

    The source header goes into the build row filed with the result, so that the outbox worker of any
    process on any host can build the outputs, also after this one crashed.
    """
    outbox = ctx.outbox
    if outbox is None or not outbox.destinations:
        return None
    try:
        source: bytes | None = await db(serialise_source, study.primary)
    except Exception:  # the result is filed all the same; only a rebuild in another process lacks its header
        logger.exception("the source header of a result could not be kept for its output build")
        source = None
    return OutputsIn(
        destinations=tuple(d.name for d in outbox.destinations),
        spool=None,
        source=source,
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


def outputs_owed(ctx: Context) -> None:
    """Wake the outbox worker: a result was filed with a pending build of its outputs."""
    if ctx.outbox is not None:
        ctx.outbox.wake()


async def build_outputs(ctx: Context, job: _builds.BuildJob) -> None:
    """Build and queue the outputs of a filed result (the outbox worker calls it, off the request path).

    The captures are drawn from the result's stored rendering, the header from the build row (or the
    spool folder of a filing made before the header moved into the record).

    Raises:
        OutputsUnbuildable: The result or its spooled image is gone.
        Exception: Whatever the writers raise; the worker records it and retries with backoff.
    """
    from inference.delivery import enqueue_result
    from inference.dicom import Study

    outbox = ctx.outbox
    assert outbox is not None
    result = await db(ctx.record.results.get, result_id=job.result_id)
    if not isinstance(result, ImagingResult):
        raise OutputsUnbuildable("The result of this build is no longer in the record.")
    home = ctx.settings.resolved_home
    primary = await db(_load_spool, home, job.spool, job.source)
    study = Study(study_instance_uid=primary.study_instance_uid, instances=(primary,), primary=primary)
    destinations = [d for d in outbox.destinations if d.name in job.destinations]
    await enqueue_result(
        record=ctx.record,
        destinations=destinations,
        org_root=ctx.settings.record.org_root,
        study=study,
        result=result,
        build_id=job.id,
    )
    if job.spool:
        await db(shutil.rmtree, home / job.spool, ignore_errors=True)
    outbox.wake()


def with_build_warning(result: AnyResult) -> AnyResult:
    """``result`` with a warning when the outputs it owes its destinations failed to build.

    A build filed a moment ago that no attempt has failed yet is no failure: its ``outputs`` entries
    in ``deliveries`` say it is pending.
    """
    if not isinstance(result, ImagingResult) or result.build is None:
        return result
    build = result.build
    if build.state == "pending" and build.attempts == 0:
        return result
    warning = _warnings.outputs_not_built(
        build.error_code or "output_build_failed", dead=build.state == "dead"
    )
    return replace(result, warnings=(*result.warnings, warning))
