"""The AI result as a Comprehensive SR following TID 1500 (Measurement Report), after IHE AIR.

The document is a Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33): its regions are SCOORD image
coordinates, which every PACS that stores SR takes. Comprehensive 3D SR (88.34) is needed only for
SCOORD3D content, which these reports never hold; many PACS do not accept that SOP class at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inference import vocabulary as v

from . import _coding
from ._common import (
    check_findings,
    checked_source,
    equipment,
    series_description,
    set_times,
    stamp_equipment,
)
from ._errors import WriterError
from ._uids import (
    ARC_SR_INSTANCE,
    ARC_SR_SERIES,
    ARC_TRACKING,
    check_org_root,
    check_uid,
    derive_uid,
    device_uid,
)

if TYPE_CHECKING:
    from highdicom.sr import (
        AlgorithmIdentification,
        Comprehensive3DSR,
        ComprehensiveSR,
        MeasurementsAndQualitativeEvaluations,
        PlanarROIMeasurementsAndQualitativeEvaluations,
    )
    from pydicom import Dataset

    from inference.dicom import Instance

    from ._inputs import AlgorithmInfo, FindingOutput, OodRefusal, PriorReport


def build_sr(
    source: Instance,
    findings: Sequence[FindingOutput],
    algorithm: AlgorithmInfo,
    *,
    org_root: str,
    result_id: str,
    created_at: dt.datetime,
    series_number: int = 9001,
    instance_number: int = 1,
    refused: OodRefusal | None = None,
    replaces: PriorReport | None = None,
) -> Dataset:
    """Build the SR that carries one result's findings back to the PACS.

    The document is a TID 1500 Measurement Report in a Comprehensive SR (a Comprehensive 3D SR only if
    its content held 3D coordinates, which it never does): a Device observer (the model version), the
    procedure reported (LOINC 36554-4), and one measurement group per finding holding the finding
    (SNOMED CT), Present/Absent, the calibrated probability and the operating threshold (in %), the
    algorithm identification (TID 4019), and the source image: a POLYLINE around the hottest region
    on the source image when the finding has a box, else a reference to the image.

    Args:
        source: The analysed radiograph.
        findings: Every finding of the result, positive and negative.
        algorithm: The model version that made them.
        org_root: Organisation root of the UIDs written.
        result_id: Identifier of the result; the series and instance UIDs are derived from it (the
            instance UID from the predecessor's too, when ``replaces`` names one: one UID, one content),
            so building the same result again gives the same object (a re-send replaces it).
        created_at: When the result was made: Content Date/Time and every other timestamp.
        series_number: Series Number of the SR series.
        instance_number: Instance Number of the SR.
        refused: set when the algorithm refused the image as out of its distribution: the report then
            holds one image-level group saying "not assessable" (with the OOD score and threshold)
            instead of one group per finding.
        replaces: The SR of an earlier result of the same study that the PACS received (the study was
            analysed again, e.g. once more instances arrived): named in the Predecessor Documents
            Sequence (0040,A360), so a PACS or viewer shows the new report as the one that supersedes it.
            Destinations that received different earlier SRs get SRs with different instance UIDs.

    Returns:
        The SR dataset (``highdicom.sr.ComprehensiveSR``) with file meta, ready for
        :func:`write_part10`.

    Raises:
        WriterError: When a UID, a finding or the org root is not valid.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    root = check_org_root(org_root)
    header = checked_source(source)
    check_findings(findings, source)
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, manufacturer=algorithm.manufacturer
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(root, algorithm),
            name=f"{algorithm.name} v{algorithm.version}",
            manufacturer_name=algorithm.manufacturer,
            model_name=algorithm.name,
            serial_number=algorithm.sha256,
        ),
    )
    groups: list[MeasurementsAndQualitativeEvaluations | PlanarROIMeasurementsAndQualitativeEvaluations]
    if refused is not None:
        groups = [_not_assessable_group(header, refused, algorithm_id, root, result_id)]
    else:
        groups = [_group(header, finding, algorithm_id, root, result_id) for finding in findings]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_coding.code(v.CHEST_XR_SINGLE_VIEW),
        imaging_measurements=groups,
    )
    document = _document_class(report[0])
    # The predecessor is part of the content: an SR naming another one (for a destination that received
    # another earlier SR) is another instance, never the same UID with different content.
    identity = (result_id,) if replaces is None else (result_id, replaces.sop_instance_uid)
    sr = document(
        evidence=[header],
        content=report[0],
        series_instance_uid=derive_uid(root, ARC_SR_SERIES, result_id),
        series_number=series_number,
        sop_instance_uid=derive_uid(root, ARC_SR_INSTANCE, *identity),
        instance_number=instance_number,
        manufacturer=algorithm.manufacturer,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=series_description("findings", algorithm),
        coding_schemes=[_coding.private_scheme_item()],
        contributing_equipment=[equipment(algorithm, org_root=root, created_at=created_at)],
    )
    stamp_equipment(sr, algorithm, org_root=root)
    set_times(sr, created_at, header)
    if replaces is not None:
        sr.PredecessorDocumentsSequence = [_predecessor(replaces, header)]
    return sr


def _predecessor(prior: PriorReport, header: Dataset) -> Dataset:
    """One item of the Predecessor Documents Sequence (SR Document General module, Hierarchical SOP
    Instance Reference macro): the earlier SR's study, series and instance."""
    from pydicom import Dataset

    study_uid = check_uid(prior.study_instance_uid, "predecessor StudyInstanceUID")
    series_uid = check_uid(prior.series_instance_uid, "predecessor SeriesInstanceUID")
    class_uid = check_uid(prior.sop_class_uid, "predecessor SOPClassUID")
    instance_uid = check_uid(prior.sop_instance_uid, "predecessor SOPInstanceUID")
    if study_uid != header.StudyInstanceUID:
        raise WriterError("A predecessor SR must belong to the study of the new SR.")
    instance = Dataset()
    instance.ReferencedSOPClassUID = class_uid
    instance.ReferencedSOPInstanceUID = instance_uid
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ReferencedSOPSequence = [instance]
    study = Dataset()
    study.StudyInstanceUID = study_uid
    study.ReferencedSeriesSequence = [series]
    return study


def _document_class(content: Dataset) -> type[ComprehensiveSR] | type[Comprehensive3DSR]:
    """Comprehensive SR, unless the content holds SCOORD3D items, which only Comprehensive 3D SR allows.

    The least demanding SOP class that holds the content is the one most PACS accept: a PACS that
    stores Comprehensive SR but not Comprehensive 3D SR rejects the association's only presentation
    context, and the report would never arrive.
    """
    import highdicom as hd
    from highdicom.sr.enum import ValueTypeValues
    from highdicom.sr.utils import find_content_items

    if find_content_items(content, value_type=ValueTypeValues.SCOORD3D, recursive=True):
        return hd.sr.Comprehensive3DSR
    return hd.sr.ComprehensiveSR


def _group(
    source: Dataset,
    finding: FindingOutput,
    algorithm_id: AlgorithmIdentification,
    org_root: str,
    result_id: str,
) -> MeasurementsAndQualitativeEvaluations | PlanarROIMeasurementsAndQualitativeEvaluations:
    """One TID 1501 / TID 1410 measurement group for one finding."""
    import highdicom as hd

    concept = _coding.finding_code(finding.code, finding.display)
    tracking = hd.sr.TrackingIdentifier(
        uid=derive_uid(org_root, ARC_TRACKING, result_id, finding.code),
        identifier=f"{finding.code} ({result_id})"[:64],
    )
    measurements = [
        hd.sr.Measurement(
            name=_coding.code(v.PROBABILITY),
            value=_percent(finding.probability),
            unit=_coding.code(v.PERCENT),
        ),
        hd.sr.Measurement(
            name=_coding.code(v.THRESHOLD),
            value=_percent(finding.threshold),
            unit=_coding.code(v.PERCENT),
        ),
    ]
    evaluation = hd.sr.QualitativeEvaluation(
        name=concept,
        value=_coding.code(v.PRESENT if finding.positive else v.ABSENT),
    )
    if finding.box is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            finding_type=concept,
            algorithm_id=algorithm_id,
            measurements=measurements,
            qualitative_evaluations=[evaluation],
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        )
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=box_polyline(finding.box),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_region=region,
        finding_type=concept,
        algorithm_id=algorithm_id,
        measurements=measurements,
        qualitative_evaluations=[evaluation],
    )


def _not_assessable_group(
    source: Dataset,
    refused: OodRefusal,
    algorithm_id: AlgorithmIdentification,
    org_root: str,
    result_id: str,
) -> MeasurementsAndQualitativeEvaluations:
    """The one TID 1501 group of a refused image: "not assessable", the OOD score and its threshold."""
    import math

    import highdicom as hd

    concept = _coding.code(v.NOT_ASSESSABLE_SR)
    measurements = [
        hd.sr.Measurement(
            name=_coding.code(v.OOD_THRESHOLD),
            value=float(refused.threshold),
            unit=_coding.code(v.NO_UNITS),
        )
    ]
    if refused.score is not None and math.isfinite(refused.score):
        measurements.insert(
            0,
            hd.sr.Measurement(
                name=_coding.code(v.OOD_SCORE),
                value=float(refused.score),
                unit=_coding.code(v.NO_UNITS),
            ),
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derive_uid(org_root, ARC_TRACKING, result_id, "not_assessable"),
            identifier=f"not assessable ({result_id})"[:64],
        ),
        finding_type=concept,
        algorithm_id=algorithm_id,
        measurements=measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=_coding.code(v.ASSESSABILITY), value=concept)
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def _percent(probability: float) -> float:
    # Four decimals of a percent: well below calibration error, and DS keeps it exactly.
    return round(float(probability) * 100.0, 4)


def box_polyline(box: tuple[int, int, int, int]) -> np.ndarray:
    """Closed POLYLINE (column, row) around a half-open pixel box, in SCOORD image coordinates.

    SCOORD puts 0.0\\0.0 at the top-left corner of the top-left pixel (PS3.3 C.18.6.1.2), so the
    pixel-edge coordinates of a half-open box are its corners as they are.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)
