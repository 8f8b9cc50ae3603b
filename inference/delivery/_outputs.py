"""The DICOM objects of one committed imaging result: the TID 1500 SR and one heatmap capture per finding.

Findings, probabilities, boxes and the creation time come from the committed result (what the record
holds is what the PACS gets). The heat maps behind the captures are not stored in the record (only their
PNG overlays are): the analysis hands its class activation maps and letterbox geometry over in-process,
and they are mapped to the source's full geometry here. Without them (a result enqueued again later) they
are recomputed with the same model version, the same preprocessing and the same CAM mapping as the
analysis; the model is deterministic, so the capture shows the analysed heat either way.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.record._outbox import OutboxObject

if TYPE_CHECKING:
    from inference.dicom import Study
    from inference.preprocess import Geometry
    from inference.runtime import ModelHost, ServedModel

logger = logging.getLogger(__name__)


def _created_at(result: dict[str, Any]) -> dt.datetime:
    text = str(result["created_at"]).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


async def _heatmaps(
    host: ModelHost, served: ServedModel, study: Study, codes: list[str]
) -> dict[str, np.ndarray]:
    """Heat in the source's geometry for ``codes``, from the served model (same path as the analysis)."""
    import asyncio

    from inference.explain import cam_to_heatmap
    from inference.preprocess import prepare

    prepared = await asyncio.to_thread(prepare, study.primary, served.imaging_meta.preprocess)
    [scores] = await host.score_images([prepared.tensor], model=served)
    labels = [code for code, _p, _positive in scores.findings]
    return {
        code: cam_to_heatmap(scores.cam[labels.index(code)], prepared.geometry)
        for code in codes
        if code in labels
    }


def _from_cams(cams: Mapping[str, np.ndarray], geometry: Geometry, codes: list[str]) -> dict[str, np.ndarray]:
    from inference.explain import cam_to_heatmap

    return {code: cam_to_heatmap(cams[code], geometry) for code in codes if code in cams}


async def build_objects(
    *,
    host: ModelHost | None,
    study: Study,
    result: dict[str, Any],
    org_root: str,
    cams: Mapping[str, np.ndarray] | None = None,
    geometry: Geometry | None = None,
) -> list[OutboxObject]:
    """Build the SR and the heatmap captures of a committed imaging result, as Part-10 bytes.

    Args:
        host: The model host. Without ``cams``, its imaging model recomputes the heat maps when it serves
            the result's model version (otherwise the captures are left out and the SR goes alone).
        study: The decoded study the result was made from (``study.primary`` is the analysed image).
        result: The public JSON of the committed result (:meth:`inference.record.Record.get_result`).
        org_root: Organisation root of the new UIDs.
        cams: Class activation maps per finding code, as the analysis that made ``result`` computed them
            (so the model does not run again); with ``geometry``.
        geometry: The letterbox geometry of ``cams`` (:class:`inference.preprocess.Geometry`).

    Returns:
        The SR first, then one capture per finding with a heatmap.
    """
    import asyncio

    from inference import __version__
    from inference.writers import AlgorithmInfo, FindingOutput, build_heatmap_scs, build_sr, write_part10

    model = result["model"]
    served = host.imaging if host is not None else None
    same_model = served is not None and served.name == model["name"] and served.version == model["version"]
    if served is not None and same_model:
        synthetic = served.synthetic
    else:
        synthetic = any("synthetic" in w.lower() for w in result["warnings"])
    algorithm = AlgorithmInfo(
        name=model["name"],
        version=str(model["version"]),
        sha256=model["sha256"],
        software_version=__version__,
        synthetic=synthetic,
    )
    with_heat = [f["code"] for f in result["findings"] if f.get("heatmap")]
    heat: dict[str, np.ndarray] = {}
    if with_heat and cams is not None and geometry is not None:
        heat = await asyncio.to_thread(_from_cams, cams, geometry, with_heat)
    elif with_heat and served is not None and same_model:
        assert host is not None
        heat = await _heatmaps(host, served, study, with_heat)
    elif with_heat:
        logger.warning(
            "The model version of a result is no longer served; its heatmap captures are not sent.",
            extra={"result_id": result["result_id"], "model_version": model["version"]},
        )
    findings = [
        FindingOutput(
            code=f["code"],
            display=f["display"],
            probability=float(f["probability"]),
            positive=bool(f["positive"]),
            threshold=float(f["threshold"]),
            box=tuple(f["box"]) if f.get("box") else None,
            heatmap=heat.get(f["code"]),
        )
        for f in result["findings"]
    ]
    kwargs: dict[str, Any] = {
        "org_root": org_root,
        "result_id": result["result_id"],
        "created_at": _created_at(result),
    }

    def build() -> list[OutboxObject]:
        datasets = [("sr", build_sr(study.primary, findings, algorithm, **kwargs))]
        datasets += [("sc", ds) for ds in build_heatmap_scs(study.primary, findings, algorithm, **kwargs)]
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
