"""Heatmap secondary captures: the radiograph with one finding's heatmap and box burned in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from inference.vocabulary import SOURCE_FOR_PROCESSING

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
    lossy_method: str | None = None,
) -> Dataset:
    """Build an RGB Secondary Capture of the radiograph with one finding's heatmap and box burned in.

    The pixels are the finding's ``capture``: the display rendering of the radiograph with the heatmap
    blended on top and the hottest-region box outlined, the same picture as the API's PNG overlay
    (``inference.analysis.Rendering.overlay_rgb``). Geometry is the source's, scaled (at most 2048
    pixels a side); no Pixel Spacing is written, because the capture is a guide to look at, not an image
    to measure on.

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
        lossy_method: The lossy compression the capture went through (e.g. ``ISO_10918_1`` when it was
            drawn on a JPEG-stored display rendering), so the capture says it is lossy; None when not.

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
    if finding.capture is None:
        raise InvalidFinding(
            f"Finding {finding.code!r} has no heatmap; a heatmap capture is made only for findings with one."
        )
    pixels = _fit(np.asarray(finding.capture, dtype=np.uint8))
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
    purpose.CodeValue = SOURCE_FOR_PROCESSING.code
    purpose.CodingSchemeDesignator = SOURCE_FOR_PROCESSING.designator
    purpose.CodeMeaning = SOURCE_FOR_PROCESSING.display
    reference.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [reference]
    if lossy_method is not None:
        # Drawn on a lossy-compressed rendering: PS3.3 C.7.6.1.1.5 asks to say so.
        sc.LossyImageCompression = "01"
        sc.LossyImageCompressionMethod = lossy_method
    elif str(header.get("LossyImageCompression", "")) == "01":
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
    lossy_method: str | None = None,
) -> list[Dataset]:
    """One heatmap capture per finding that has one, numbered 1, 2, ... in one series."""
    with_heat = [f for f in findings if f.capture is not None]
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
            lossy_method=lossy_method,
        )
        for number, finding in enumerate(with_heat, start=1)
    ]


def _fit(capture: np.ndarray) -> np.ndarray:
    """The capture's pixels, scaled down to at most :data:`MAX_SIDE` a side (never up)."""
    from PIL import Image

    rows, columns = capture.shape[:2]
    if max(rows, columns) <= MAX_SIDE:
        return np.ascontiguousarray(capture)
    scale = MAX_SIDE / max(rows, columns)
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    resized = Image.fromarray(np.ascontiguousarray(capture)).resize(size, Image.Resampling.BOX)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


def _percent(probability: float) -> str:
    # ">99.9%" and "<0.1%" at the ends: a model's output never means certainty.
    if probability >= 0.9995:
        return ">99.9%"
    return "<0.1%" if probability < 0.0005 else f"{probability * 100:.1f}%"


def _comment(finding: FindingOutput, algorithm: AlgorithmInfo) -> str:
    verdict = "at or above" if finding.positive else "below"
    return (
        f"{finding.display}: AI probability {_percent(finding.probability)} ({verdict} the operating "
        f"threshold {finding.threshold * 100:.1f}%). Colour shows where the model looked, not the extent "
        f"of disease. {provenance(algorithm)}"
    )
