"""The AI result SR: what a PACS and a radiologist's viewer read back from it."""

from __future__ import annotations

import io
from collections.abc import Iterator

import highdicom as hd
import pydicom
import pytest
from _writers_data import (
    ALGORITHM,
    BOX,
    CREATED_AT,
    ORG_ROOT,
    PATIENT_ID,
    RESULT_ID,
    SOP_UID,
    STUDY_UID,
    algorithm,
    findings,
    source,
)
from pydicom.dataset import Dataset

from inference.dicom import Instance
from inference.writers import (
    FindingOutput,
    InvalidFinding,
    WriterError,
    build_sr,
    device_uid,
    write_part10,
)


@pytest.fixture(scope="module")
def instance() -> Instance:
    return source()


@pytest.fixture(scope="module")
def sr_bytes(instance: Instance) -> bytes:
    ds = build_sr(
        instance, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    return write_part10(ds)


@pytest.fixture(scope="module")
def sr(sr_bytes: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(sr_bytes))


def _items(items: pydicom.Sequence) -> Iterator[Dataset]:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _items(item.ContentSequence)


def _name(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def _groups(sr: Dataset) -> list[Dataset]:
    return [item for item in _items(sr.ContentSequence) if _name(item) == "Measurement Group"]


def _finding(group: Dataset) -> str:
    (item,) = [i for i in group.ContentSequence if _name(i) == "Finding"]
    return str(item.ConceptCodeSequence[0].CodeValue)


def test_sr_is_a_tid1500_comprehensive_sr_highdicom_reads(sr_bytes: bytes, sr: Dataset) -> None:
    # Comprehensive SR, not Comprehensive 3D SR: the regions are 2D image coordinates, and many PACS
    # store Comprehensive SR but reject the 3D SOP class.
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
    assert sr.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert sr_bytes[128:132] == b"DICM"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    document = hd.sr.srread(io.BytesIO(sr_bytes))
    assert isinstance(document, hd.sr.ComprehensiveSR)
    assert len(document.content.get_planar_roi_measurement_groups()) == 1
    assert len(document.content.get_image_measurement_groups()) == 2


def test_sr_joins_the_source_study_and_patient_in_a_new_series(sr: Dataset, instance: Instance) -> None:
    assert sr.StudyInstanceUID == STUDY_UID
    assert sr.PatientID == PATIENT_ID
    assert str(sr.PatientName) == str(instance.header.PatientName)
    assert (sr.PatientBirthDate, sr.PatientSex, sr.IssuerOfPatientID) == ("19500201", "F", "HOSPITAL-A")
    assert sr.AccessionNumber == "ACC-2026-0001"
    assert sr.SeriesInstanceUID != instance.series_instance_uid
    assert sr.SOPInstanceUID != SOP_UID
    assert sr.SeriesInstanceUID.startswith(ORG_ROOT + ".") and sr.SOPInstanceUID.startswith(ORG_ROOT + ".")
    assert (sr.SeriesNumber, sr.InstanceNumber, sr.Modality) == (9001, 1, "SR")
    description = sr.SeriesDescription
    assert "AI" in description and "cxr-findings v3" in description and "not for diagnosis" in description


def test_sr_evidence_references_the_source_instance(sr: Dataset) -> None:
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == STUDY_UID
    (series,) = study.ReferencedSeriesSequence
    (ref,) = series.ReferencedSOPSequence
    assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID) == (
        SOP_UID,
        pydicom.uid.ComputedRadiographyImageStorage,
    )


def test_sr_holds_one_group_per_finding_with_probability_and_presence(sr: Dataset) -> None:
    groups = _groups(sr)
    assert sorted(_finding(g) for g in groups) == sorted(["36118008", "60046008", "786838002"])
    expected = {f.code: f for f in findings()}
    by_snomed = {"36118008": "pneumothorax", "60046008": "pleural_effusion", "786838002": "nodule"}
    for group in groups:
        finding = expected[by_snomed[_finding(group)]]
        nums = {_name(i): i.MeasuredValueSequence[0] for i in group.ContentSequence if i.ValueType == "NUM"}
        assert float(nums["Probability of finding"].NumericValue) == pytest.approx(finding.probability * 100)
        assert nums["Probability of finding"].MeasurementUnitsCodeSequence[0].CodeValue == "%"
        assert float(nums["Operating threshold"].NumericValue) == pytest.approx(finding.threshold * 100)
        (presence,) = [
            i for i in group.ContentSequence if i.ValueType == "CODE" and _name(i) not in ("Finding",)
        ]
        assert presence.ConceptNameCodeSequence[0].CodeValue == _finding(group)
        assert presence.ConceptCodeSequence[0].CodeMeaning == ("Present" if finding.positive else "Absent")


def test_sr_names_the_algorithm_in_every_group_and_as_device_observer(sr: Dataset) -> None:
    for group in _groups(sr):
        texts = {_name(i): i.TextValue for i in group.ContentSequence if i.ValueType == "TEXT"}
        assert texts["Algorithm Name"] == "cxr-findings"
        assert texts["Algorithm Version"] == "3"
        assert texts["Algorithm Manufacturer"] == "dxassist"
    context = {_name(i): i for i in sr.ContentSequence if i.RelationshipType == "HAS OBS CONTEXT"}
    assert context["Observer Type"].ConceptCodeSequence[0].CodeMeaning == "Device"
    assert context["Device Observer UID"].UID == device_uid(ORG_ROOT, ALGORITHM)
    assert context["Device Observer Model Name"].TextValue == "cxr-findings"
    assert context["Device Observer Manufacturer"].TextValue == "dxassist"
    (procedure,) = [i for i in sr.ContentSequence if _name(i) == "Procedure reported"]
    assert procedure.ConceptCodeSequence[0].CodeValue == "36554-4"


def test_sr_boxed_finding_has_a_polyline_on_the_source_image(sr_bytes: bytes) -> None:
    document = hd.sr.srread(io.BytesIO(sr_bytes))
    (group,) = document.content.get_planar_roi_measurement_groups()
    assert group.finding_type.value == "36118008"
    region = group.roi
    assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    x0, y0, x1, y1 = BOX
    assert region.value.tolist() == [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    assert region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == SOP_UID
    for other in document.content.get_image_measurement_groups():
        assert [s.referenced_sop_instance_uid for s in other.source_images] == [SOP_UID]


def test_sr_contributing_equipment_names_the_model_version(sr: Dataset) -> None:
    (ours,) = [e for e in sr.ContributingEquipmentSequence if e.Manufacturer == "dxassist"]
    purpose = ours.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "109102",
        "DCM",
        "Processing Equipment",
    )
    assert ours.ManufacturerModelName == "cxr-findings"
    assert list(ours.SoftwareVersions)[0] == "3"
    assert ours.DeviceUID == device_uid(ORG_ROOT, ALGORITHM) == sr.DeviceUID
    assert "synthetic" in ours.ContributionDescription
    scheme = sr.CodingSchemeIdentificationSequence[0]
    assert scheme.CodingSchemeDesignator == "99DXA"


def test_sr_is_byte_identical_when_built_again(instance: Instance, sr_bytes: bytes) -> None:
    again = build_sr(
        instance, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    assert write_part10(again) == sr_bytes


def test_sr_timestamps_come_from_the_result_not_the_clock(sr: Dataset) -> None:
    assert (sr.ContentDate, sr.ContentTime) == ("20261122", "083005.250000")
    assert (sr.InstanceCreationDate, sr.InstanceCreationTime) == ("20261122", "083005.250000")
    for item in sr.ContributingEquipmentSequence:
        if item.PurposeOfReferenceCodeSequence[0].CodeValue == "109102":
            assert item.ContributionDateTime == "20261122083005.250000"


def test_sr_uids_follow_the_result(instance: Instance, sr: Dataset) -> None:
    other = build_sr(
        instance, findings(), ALGORITHM, org_root=ORG_ROOT, result_id="another", created_at=CREATED_AT
    )
    assert other.SOPInstanceUID != sr.SOPInstanceUID
    assert other.SeriesInstanceUID != sr.SeriesInstanceUID


def test_sr_refuses_inconsistent_findings(instance: Instance) -> None:
    kwargs = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}
    with pytest.raises(WriterError, match="at least one finding"):
        build_sr(instance, [], ALGORITHM, **kwargs)  # type: ignore[arg-type]
    outside = FindingOutput("pneumothorax", "Pneumothorax", 0.9, True, 0.5, box=(10, 10, 500, 40))
    with pytest.raises(InvalidFinding, match="outside"):
        build_sr(instance, [outside], ALGORITHM, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidFinding, match=r"\[0, 1\]"):
        FindingOutput("pneumothorax", "Pneumothorax", 1.5, True, 0.5)
    twice = [findings()[1], findings()[1]]
    with pytest.raises(WriterError, match="only once"):
        build_sr(instance, twice, ALGORITHM, **kwargs)  # type: ignore[arg-type]


def test_sr_new_model_version_gets_a_new_device_uid(instance: Instance, sr: Dataset) -> None:
    newer = algorithm(version="4", sha256="4e" * 32)
    ds = build_sr(instance, findings(), newer, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT)
    assert ds.DeviceUID != sr.DeviceUID
    assert "cxr-findings v4" in ds.SeriesDescription


def test_sr_times_follow_the_source_time_zone() -> None:
    local = source(TimezoneOffsetFromUTC="+0100")
    built = build_sr(
        local, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    ds = pydicom.dcmread(io.BytesIO(write_part10(built)))
    assert (ds.ContentDate, ds.ContentTime) == ("20261122", "093005.250000")
    assert ds.TimezoneOffsetFromUTC == "+0100"
    assert ds.StudyTime == "081500"  # the study's own local time is copied, never shifted


def test_series_description_fits_lo_with_a_long_version(instance: Instance) -> None:
    long_version = algorithm(version="2026.11.22-release-candidate-7")
    ds = build_sr(
        instance, findings(), long_version, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    assert len(ds.SeriesDescription) <= 64
    assert ds.SeriesDescription.startswith("AI findings (cxr-findings v2026.11")
    assert ds.SeriesDescription.endswith("not for diagnosis alone")


def test_a_refused_image_gets_one_not_assessable_group_instead_of_findings(instance: Instance) -> None:
    """An image the model refused as out of distribution: the SR says "not assessable" with the OOD score
    and threshold, and lists no finding (neither present nor absent: the model could not tell)."""
    from inference.writers import OodRefusal

    ds = build_sr(
        instance,
        findings(),
        ALGORITHM,
        org_root=ORG_ROOT,
        result_id=RESULT_ID,
        created_at=CREATED_AT,
        refused=OodRefusal(score=812.5, threshold=3.25),
    )
    data = write_part10(ds)
    document = hd.sr.srread(io.BytesIO(data))
    assert len(document.content.get_planar_roi_measurement_groups()) == 0
    (group,) = _groups(pydicom.dcmread(io.BytesIO(data)))
    (finding,) = [i for i in group.ContentSequence if _name(i) == "Finding"]
    assert finding.ConceptCodeSequence[0].CodeMeaning == "Not assessable by the algorithm"
    nums = {
        _name(i): float(i.MeasuredValueSequence[0].NumericValue)
        for i in group.ContentSequence
        if i.ValueType == "NUM"
    }
    assert nums == {"Out-of-distribution score": 812.5, "Out-of-distribution threshold": 3.25}
    meanings = {
        str(i.ConceptCodeSequence[0].CodeMeaning) for i in _items(ds.ContentSequence) if i.ValueType == "CODE"
    }
    assert not meanings & {"Present", "Absent"}


@pytest.mark.parametrize(
    ("zone", "offset", "content"),
    [("Asia/Tokyo", "+0900", ("20261122", "173005.250000")), ("UTC", "+0000", ("20261122", "083005.250000"))],
)
def test_sr_times_without_a_source_offset_are_local_with_the_servers_offset(
    monkeypatch: pytest.MonkeyPatch, zone: str, offset: str, content: tuple[str, str]
) -> None:
    """A PACS reads a time without Timezone Offset From UTC as its local time: the SR of a study from a
    site 9 hours east of UTC must not look 9 hours older than the study."""
    import time

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        built = build_sr(
            source(), findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    ds = pydicom.dcmread(io.BytesIO(write_part10(built)))
    assert ds.TimezoneOffsetFromUTC == offset
    assert (ds.ContentDate, ds.ContentTime) == content
    assert (ds.SeriesDate, ds.SeriesTime) == content
    assert ds.StudyTime == "081500"  # the study's own local time is copied, never shifted
