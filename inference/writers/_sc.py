"""Heatmap secondary captures: the radiograph with one finding's heatmap and box burned in."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from ._common import (
    check_findings,
    checked_source,
    equipment,
    provenance,
    series_description,
    set_times,
    stamp_equipment,
)
from ._errors import InvalidFinding
from ._uids import ARC_SC_INSTANCE, ARC_SC_SERIES, check_org_root, derive_uid

if TYPE_CHECKING:
    from pydicom import Dataset

    from inference.dicom import Instance

    from ._inputs import AlgorithmInfo, FindingOutput

MAX_SIDE: Final = 2048
"""Longest side of a heatmap capture; larger radiographs are scaled down (a guide, not for measuring)."""

# CID 7202: the source image was the input of an image processing operation.
_SOURCE_PURPOSE: Final = ("121322", "DCM", "Source image for image processing operation")


def build_heatmap_sc(
    source: Instance,
    finding: FindingOutput,
    algorithm: AlgorithmInfo,
    *,
    org_root: str,
    result_id: str,
    created_at: dt.datetime,
    series_number: int = 9002,
    instance_number: int = 1,
) -> Dataset:
    """Build an RGB Secondary Capture of the radiograph with one finding's heatmap and box burned in.

    The radiograph is windowed for display as the source asks (its VOI window or LUT, else a
    percentile window), the heatmap is blended on top in colour where it is warm, and the box around
    the hottest region is outlined; the same rendering as the API's PNG overlay. Geometry is the
    source's, scaled down to at most 2048 pixels a side; no Pixel Spacing is written, because the
    capture is a guide to look at, not an image to measure on.

    Args:
        source: The analysed radiograph.
        finding: The finding; it must have a heatmap.
        algorithm: The model version that made it.
        org_root: Organisation root of the UIDs written.
        result_id: Identifier of the result: the series UID comes from it (one series per result)
            and the instance UID from it and the finding code.
        created_at: When the result was made; every timestamp of the object.
        series_number: Series Number of the heatmap series.
        instance_number: Instance Number of this capture in its series.

    Returns:
        The Secondary Capture dataset (``highdicom.sc.SCImage``) with file meta.

    Raises:
        WriterError: When a UID or the org root is not valid, or the finding has no heatmap.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset as PydicomDataset

    root = check_org_root(org_root)
    header = checked_source(source)
    check_findings([finding], source)
    if finding.heatmap is None:
        raise InvalidFinding(
            f"Finding {finding.code!r} has no heatmap; a heatmap capture is made only for findings with one."
        )
    pixels = render(source, finding.heatmap, finding.box)
    sc = hd.sc.SCImage(
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        study_instance_uid=header.StudyInstanceUID,
        series_instance_uid=derive_uid(root, ARC_SC_SERIES, result_id),
        series_number=series_number,
        sop_instance_uid=derive_uid(root, ARC_SC_INSTANCE, result_id, finding.code),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        patient_id=header.PatientID,
        patient_name=header.PatientName,
        patient_birth_date=header.PatientBirthDate,
        patient_sex=header.PatientSex,
        accession_number=header.AccessionNumber,
        study_id=header.StudyID,
        study_date=header.StudyDate,
        study_time=header.StudyTime,
        referring_physician_name=header.ReferringPhysicianName,
        # highdicom insists on a coded orientation; the source's own value replaces it below.
        patient_orientation=("L", "F"),
        series_description=series_description("heatmap", algorithm),
        contributing_equipment=[equipment(algorithm, org_root=root, created_at=created_at)],
        # The patient's name is copied as it is, so its character set must come along.
        specific_character_set=header.get("SpecificCharacterSet", None),
    )
    sc.copy_patient_and_study_information(header)
    # Type 2: the source's orientation when it has one, else empty (the pixels keep its layout).
    orientation = header.get("PatientOrientation", None)
    sc.PatientOrientation = list(orientation) if orientation else []
    # An unpaired body part makes Laterality (General Series, type 2C) absent rather than empty.
    sc.BodyPartExamined = source.body_part or "CHEST"
    if source.laterality in ("R", "L"):
        sc.Laterality = source.laterality
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "NO"
    sc.DerivationDescription = (
        f"{finding.display}: AI heatmap and hottest-region box burned into the display-windowed radiograph."
    )[:1024]
    reference = PydicomDataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    purpose = PydicomDataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_PURPOSE
    reference.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [reference]
    if str(header.get("LossyImageCompression", "")) == "01":
        # The capture shows a lossy-compressed image: say so, as PS3.3 C.7.6.1.1.5 requires.
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in header:
                setattr(sc, keyword, header[keyword].value)
    else:
        sc.LossyImageCompression = "00"
    sc.ImageComments = _comment(finding, algorithm)
    stamp_equipment(sc, algorithm, org_root=root)
    set_times(sc, created_at, header)
    return sc


def build_heatmap_scs(
    source: Instance,
    findings: Sequence[FindingOutput],
    algorithm: AlgorithmInfo,
    *,
    org_root: str,
    result_id: str,
    created_at: dt.datetime,
    series_number: int = 9002,
) -> list[Dataset]:
    """One heatmap capture per finding that has a heatmap, numbered 1, 2, ... in one series."""
    with_heat = [f for f in findings if f.heatmap is not None]
    return [
        build_heatmap_sc(
            source,
            finding,
            algorithm,
            org_root=org_root,
            result_id=result_id,
            created_at=created_at,
            series_number=series_number,
            instance_number=number,
        )
        for number, finding in enumerate(with_heat, start=1)
    ]


def render(source: Instance, heatmap: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The capture's pixels: uint8 RGB ``[rows, columns, 3]``, at most :data:`MAX_SIDE` a side.

    Args:
        source: The radiograph (decoded pixels, possibly at reduced resolution).
        heatmap: ``[rows, columns]`` heat in [0, 1] in the source's original geometry.
        box: ``(x0, y0, x1, y1)`` to outline, in original pixel coordinates.
    """
    from PIL import Image

    from inference.explain import Box, overlay_png
    from inference.preprocess import to_unit

    base = to_unit(
        source.pixels,
        photometric=source.photometric,
        rescale_slope=source.rescale_slope,
        rescale_intercept=source.rescale_intercept,
        window_centers=source.window_centers,
        window_widths=source.window_widths,
        voi_lut_function=source.voi_lut_function,
        voi_lut=source.voi_lut,
    )
    outline = Box(*(int(v) for v in box)) if box is not None else None
    png = overlay_png(base, np.asarray(heatmap, dtype=np.float32), box=outline, max_side=MAX_SIDE)
    with Image.open(io.BytesIO(png)) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _comment(finding: FindingOutput, algorithm: AlgorithmInfo) -> str:
    verdict = "at or above" if finding.positive else "below"
    return (
        f"{finding.display}: AI probability {finding.probability * 100:.1f}% ({verdict} the operating "
        f"threshold {finding.threshold * 100:.1f}%). Colour shows where the model looked, not the extent "
        f"of disease. {provenance(algorithm)}"
    )
