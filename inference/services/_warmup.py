"""Warm-up: a process runs the imaging path once, on a synthetic radiograph, before it takes requests.

The first study a fresh process analyses pays for everything done once per process: importing pydicom's
pixel handlers and the codec plugins (more than half a second), ONNX Runtime's first run of the
session, the first calls into numpy, Pillow and the PNG and JPEG writers. Measured on a 2-core VM, a
fresh server answered its first upload in 760-850 ms and its first heatmap in about 165 ms, against
85-90 and 45 ms for the next ones; every worker of ``dxassist serve --workers N``, and every worker the
supervisor starts again, paid it on a live request. The warm-up pays it at start instead, before the
server listens.

What it runs is the code a request runs, on an image made here (a smooth synthetic chest-like gradient,
no patient data, nothing read from disk): decode (:func:`inference.dicom.read_study`), analysis with the
served imaging model (:func:`inference.analysis.analyse_now`, the session run directly: no batch, no
stage metric, no drift observation), the stored form of its rendering, and the pictures drawn from it.
Nothing is written to the record or the audit trail, nothing is logged but one line with the timing, and
a failure is logged and ignored: a warm-up never stops a server from starting.

It also imports, in one thread, the DICOM libraries the rest of the server imports inside functions (the
SR and capture writers, the senders): two threads importing a package with circular imports (pydicom,
highdicom) for the first time at once can see it half-initialised (``partially initialized module
'pydicom' has no attribute 'dcmwrite'``, seen once in a threaded client); after the warm-up no request
imports them for the first time. :data:`DEFERRED_IMPORTS` lists them; a test keeps the list complete.
"""

from __future__ import annotations

import importlib
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from inference.dicom import Limits
    from inference.runtime import ServedModel
    from inference.services._context import Context

logger = logging.getLogger(__name__)

SIDE: Final = 2048
"""Side of the synthetic radiograph: large enough for every step an uncompressed film takes (the shared
block-mean reduction to the display size needs at least twice its 1024 px)."""
_BITS: Final = 12
_UID_ROOT: Final = "2.25."  # UUID-derived UIDs (PS3.5 B.2): nothing of this image is real
_DX_PRESENTATION: Final = "1.2.840.10008.5.1.4.1.1.1.1"

DEFERRED_IMPORTS: Final = (
    "PIL.Image",
    "highdicom",
    "highdicom.coding_schemes",
    "highdicom.enum",
    "highdicom.sr",
    "highdicom.sr.enum",
    "highdicom.sr.utils",
    "httpx",
    "isal",
    "pydicom",
    "pydicom.charset",
    "pydicom.datadict",
    "pydicom.dataset",
    "pydicom.encaps",
    "pydicom.errors",
    "pydicom.filereader",
    "pydicom.filewriter",
    "pydicom.multival",
    "pydicom.pixels.decoders.base",
    "pydicom.sequence",
    "pydicom.sr.codedict",
    "pydicom.sr.coding",
    "pydicom.uid",
    "pydicom.valuerep",
    "pynetdicom",
    "pynetdicom.status",
    "pynetdicom.transport",
    "simplejpeg",
    "inference.delivery",
    "inference.writers",
)
"""Modules the server imports inside functions that run on several threads at once, imported by the
warm-up first, in one thread."""


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up did.

    Attributes:
        seconds: Wall time it took.
        imaging: Whether a served imaging model analysed the synthetic image (False: no imaging model
            was loaded yet; the decoder and the drawing were still warmed).
    """

    seconds: float
    imaging: bool


def synthetic_radiograph(side: int = SIDE) -> bytes:
    """A Part-10 DX file of a synthetic frontal chest-like image, uncompressed, 12-bit.

    No patient data: the identifiers say what it is, and the UIDs are random.
    """
    import uuid

    from pydicom.dataset import Dataset

    from inference.writers import write_part10

    # Made at an eighth of the side and enlarged by repeating pixels: a few milliseconds, where the same
    # shapes computed at full size took a fifth of a second.
    coarse = max(1, side // 8)
    yy, xx = np.mgrid[0:coarse, 0:coarse].astype(np.float32) / np.float32(coarse)
    # Two darker lung fields on a brighter mediastinum and a vertical gradient: not flat, so every
    # plausibility check and the windowing see an ordinary image.
    lungs = np.exp(-(((xx - 0.3) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2)) + np.exp(
        -(((xx - 0.7) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2)
    )
    top = (1 << _BITS) - 1
    small = np.clip(np.rint((0.75 - 0.45 * lungs + 0.15 * yy) * top), 0, top).astype("<u2")
    pixels = np.repeat(np.repeat(small, side // coarse, axis=0), side // coarse, axis=1)

    def uid() -> str:
        return _UID_ROOT + str(uuid.uuid4().int)

    ds = Dataset()
    ds.SOPClassUID = _DX_PRESENTATION
    ds.SOPInstanceUID = uid()
    ds.StudyInstanceUID = uid()
    ds.SeriesInstanceUID = uid()
    ds.Modality = "DX"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Manufacturer = "DXASSIST WARM-UP (SYNTHETIC)"
    ds.PatientID = "WARM-UP"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = _BITS
    ds.HighBit = _BITS - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = round(0.5 * top, 1)
    ds.WindowWidth = round(0.9 * top, 1)
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    return write_part10(ds)


def run_imaging_path(data: bytes, *, limits: Limits, served: ServedModel | None) -> bool:
    """Decode ``data``, analyse it with ``served`` (when given) and draw its pictures, in this thread.

    Returns:
        Whether the image was analysed (a model was given).
    """
    from inference.analysis import Rendering, analyse_now
    from inference.dicom import read_study
    from inference.preprocess import Geometry

    study = read_study([data], limits=limits, target_size=served.imaging_meta.input_size if served else None)
    instance = study.primary
    if served is not None:
        rendering = analyse_now(instance, served).rendering
        size = served.imaging_meta.input_size
    else:
        from inference.analysis import render_display
        from inference.preprocess import PreprocessParams

        size = 64
        display = render_display(instance, PreprocessParams(input_size=size))
        rendering = Rendering(
            display=display, cams={}, geometry=Geometry.letterbox((instance.rows, instance.columns), size)
        )
    if rendering.cams:
        code = next(iter(rendering.cams))
        rendering = Rendering(
            display=rendering.display, cams={code: rendering.cams[code]}, geometry=rendering.geometry
        )
    else:
        # Nothing positive on a synthetic image (the usual case): a made-up map, so that the pictures
        # a positive finding gets are drawn once too.
        h = w = max(1, size // 16)
        cam = np.zeros((h, w), dtype=np.float32)
        cam[h // 2, w // 2] = 1.0
        rendering = Rendering(display=rendering.display, cams={"warm-up": cam}, geometry=rendering.geometry)
    # One picture of each kind, from the stored form as a first request reads it.
    kept = Rendering.from_stored(rendering.to_stored())
    [code] = kept.cams
    kept.overlay_png(code, None)
    kept.heat_layer_png(code, None)
    kept.display_png()
    return served is not None


def import_deferred() -> None:
    """Import :data:`DEFERRED_IMPORTS` in this thread."""
    for name in DEFERRED_IMPORTS:
        importlib.import_module(name)


def warm_codecs() -> None:
    """Load the Pillow codecs a compressed film is decoded with (JPEG 2000, baseline JPEG) by encoding
    and decoding a small image with each."""
    from PIL import Image

    gradient = np.linspace(0, 4095, 64 * 64, dtype=np.float32).reshape(64, 64)
    for picture, kind in (
        (Image.fromarray(gradient.astype(np.uint16)), "JPEG2000"),
        (Image.fromarray((gradient / 16).astype(np.uint8)), "JPEG"),
    ):
        buffer = io.BytesIO()
        picture.save(buffer, format=kind)
        with Image.open(io.BytesIO(buffer.getvalue()), formats=[kind]) as decoded:
            decoded.load()


async def warm_up(ctx: Context) -> WarmUp | None:
    """Run the imaging path once on a synthetic radiograph (on the worker pool), before requests come.

    Returns:
        What it did, or None when it failed (logged; the process starts all the same).
    """
    start = time.perf_counter()
    from inference.runtime import ModelUnavailable

    try:
        served: ServedModel | None = ctx.host.imaging
    except ModelUnavailable:  # not loaded yet (the watcher keeps trying): warm the rest
        served = None
    try:
        await ctx.workers.run(import_deferred)
        data = await ctx.workers.run(synthetic_radiograph)
        imaging = await ctx.workers.run(run_imaging_path, data, limits=ctx.limits, served=served)
        await ctx.workers.run(warm_codecs)
    except Exception as e:  # never stop a start for it; the first request will pay what was not warmed
        logger.warning(
            "warm-up failed; the first requests may be slower",
            extra={"event": "warm_up", "outcome": "failure", "error": type(e).__name__},
        )
        return None
    done = WarmUp(seconds=time.perf_counter() - start, imaging=imaging)
    logger.info(
        "warm-up done",
        extra={
            "event": "warm_up",
            "outcome": "success",
            "duration_ms": round(done.seconds * 1000, 1),
            "model": served.name if served is not None else None,
            "model_version": served.version if served is not None else None,
        },
    )
    return done
