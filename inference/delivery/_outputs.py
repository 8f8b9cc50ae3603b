"""The DICOM objects of one committed imaging result: the TID 1500 SR and one heatmap capture per finding.

Everything comes from what the record holds (what the record holds is what the PACS gets): findings,
probabilities, boxes and the creation time from the result, the captures' pixels from its stored display
rendering and class activation maps (:class:`inference.analysis.Rendering`), drawn exactly as the API's
overlays are. Nothing here runs the model or windows the radiograph again; only the source's header is
taken from the decoded study (the SR and captures join its patient and study).
"""

from __future__ import annotations

import asyncio
import logging
from io import BytesIO
from typing import TYPE_CHECKING, Any

from inference.record._outbox import OutboxObject

if TYPE_CHECKING:
    from inference.analysis import Rendering
    from inference.dicom import Study
    from inference.record import ImagingResult, Record
    from inference.writers import PriorReport

logger = logging.getLogger(__name__)

# The first analysis's SR series; its heatmap series is the next number, and each later analysis of the
# study takes the next two (after the acquired series in most viewers' lists).
SR_SERIES_NUMBER = 9001
_JPEG = "ISO_10918_1"  # the stored display rendering is a JPEG (inference.analysis._rendering)


def stored_rendering(record: Record, result_id: str) -> Rendering | None:
    """The display rendering and CAMs of a committed result, or None (filed before they were kept)."""
    from inference.analysis import Rendering, StoredRendering

    data = record.results.rendering(result_id=result_id)
    if data is None:
        return None
    return Rendering.from_stored(
        StoredRendering(display=data.display, cams=data.cams, geometry=data.geometry)
    )


async def build_objects(
    *,
    record: Record,
    study: Study,
    result: ImagingResult,
    org_root: str,
    synthetic: bool | None = None,
    prior: bytes | None = None,
    earlier: int = 0,
) -> list[OutboxObject]:
    """Build the SR and the heatmap captures of a committed imaging result, as Part-10 bytes.

    Args:
        record: The patient record holding the result and its display rendering.
        study: The decoded study the result was made from (``study.primary``'s header is used).
        result: The committed result (``Record.results.get``).
        org_root: Organisation root of the new UIDs.
        synthetic: Whether the model was trained on synthetic data; the result's typed flag
            (``result.model.synthetic``) when None, never the wording of its warnings.
        prior: The Part-10 SR of an earlier result of the study that the destinations these objects go to
            received (:meth:`inference.record.Outbox.prior_report`): the new SR names it in its
            Predecessor Documents Sequence. None: the SR supersedes none.
        earlier: How many earlier results of the study there are
            (:meth:`inference.record.Outbox.earlier_results`): the SR series is numbered 9001 + 2n and
            the heatmap series 9002 + 2n, so a study analysed again shows no two series of one number.

    Returns:
        The SR first, then one capture per finding with a heatmap.
    """
    from inference import __version__
    from inference.writers import (
        AlgorithmInfo,
        FindingOutput,
        OodRefusal,
        build_heatmap_scs,
        build_sr,
        write_part10,
    )

    model = result.model
    if synthetic is None:
        synthetic = result.model.synthetic
    algorithm = AlgorithmInfo(
        name=model.name,
        version=model.version,
        sha256=model.sha256 or "",
        software_version=__version__,
        synthetic=synthetic,
    )
    result_id = result.result_id
    with_heat = [f.code for f in result.findings if f.heatmap]
    rendering = await asyncio.to_thread(stored_rendering, record, result_id) if with_heat else None
    if with_heat and rendering is None:
        logger.warning(
            "A result filed before display renderings were kept has no heatmap captures; its SR goes alone.",
            extra={"result_id": result_id, "model_version": model.version},
        )
    # To the millisecond, as the API and FHIR show it (an object built again carries the same times).
    created_at = result.created_at.replace(microsecond=result.created_at.microsecond // 1000 * 1000)
    kwargs: dict[str, Any] = {"org_root": org_root, "result_id": result_id, "created_at": created_at}
    ood = result.ood
    refused = (
        None
        if result.assessable
        else OodRefusal(
            score=None if ood is None else ood.score, threshold=float("nan") if ood is None else ood.threshold
        )
    )

    def build() -> list[OutboxObject]:
        replaces = None if prior is None else _prior_report(prior)
        findings = [
            FindingOutput(
                code=f.code,
                display=f.display,
                probability=f.probability,
                positive=f.positive,
                threshold=f.threshold,
                box=f.box,
                capture=(
                    rendering.overlay_rgb(f.code)
                    if rendering is not None and f.code in with_heat and f.code in rendering.cams
                    else None
                ),
            )
            for f in result.findings
        ]
        datasets = [
            (
                "sr",
                build_sr(
                    study.primary,
                    findings,
                    algorithm,
                    refused=refused,
                    replaces=replaces,
                    series_number=SR_SERIES_NUMBER + 2 * earlier,
                    **kwargs,
                ),
            )
        ]
        datasets += [
            ("sc", ds)
            for ds in build_heatmap_scs(
                study.primary,
                findings,
                algorithm,
                lossy_method=_JPEG,
                series_number=SR_SERIES_NUMBER + 1 + 2 * earlier,
                **kwargs,
            )
        ]
        return [
            OutboxObject(
                kind=kind,
                object_uid=str(ds.SOPInstanceUID),
                sop_class_uid=str(ds.SOPClassUID),
                payload=write_part10(ds),
            )
            for kind, ds in datasets
        ]

    return await asyncio.to_thread(build)


def _prior_report(payload: bytes) -> PriorReport | None:
    """The UIDs of an SR this process wrote and a destination received (None if it cannot be read)."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from inference.writers import PriorReport

    try:
        ds = dcmread(BytesIO(payload), stop_before_pixels=True)
        return PriorReport(
            study_instance_uid=str(ds.StudyInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
        )
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError):
        logger.warning("The SR of an earlier result could not be read; the new SR names no predecessor.")
        return None
