"""Heatmap secondary captures: what a radiologist sees in the PACS next to the radiograph."""

from __future__ import annotations

import datetime as dt
import io
from typing import TypedDict

import highdicom as hd
import numpy as np
import pydicom
import pytest
from _writers_data import (
    ALGORITHM,
    BOX,
    COLUMNS,
    CREATED_AT,
    ORG_ROOT,
    PATIENT_ID,
    RESULT_ID,
    ROWS,
    SOP_UID,
    STUDY_UID,
    capture,
    findings,
    source,
)
from pydicom.dataset import Dataset

from inference.dicom import Instance
from inference.writers import (
    MAX_SIDE,
    FindingOutput,
    InvalidFinding,
    build_heatmap_sc,
    build_heatmap_scs,
    build_sr,
    device_uid,
    write_part10,
)


class _Identity(TypedDict):
    org_root: str
    result_id: str
    created_at: dt.datetime


KWARGS: _Identity = {"org_root": ORG_ROOT, "result_id": RESULT_ID, "created_at": CREATED_AT}


@pytest.fixture(scope="module")
def instance() -> Instance:
    return source()


@pytest.fixture(scope="module")
def sc_bytes(instance: Instance) -> bytes:
    return write_part10(build_heatmap_sc(instance, findings()[0], ALGORITHM, **KWARGS))


@pytest.fixture(scope="module")
def sc(sc_bytes: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(sc_bytes))


def test_sc_is_an_rgb_secondary_capture_at_source_geometry(sc_bytes: bytes, sc: Dataset) -> None:
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel, sc.BitsAllocated) == (ROWS, COLUMNS, 3, 8)
    assert sc.PhotometricInterpretation == "RGB"
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    assert (sc.BurnedInAnnotation, sc.ConversionType) == ("YES", "WSD")
    assert "PixelSpacing" not in sc
    image = hd.imread(io.BytesIO(sc_bytes))
    assert image.pixel_array.shape == (ROWS, COLUMNS, 3)


def test_sc_joins_the_source_study_and_patient_in_a_series_marked_ai(sc: Dataset, instance: Instance) -> None:
    assert (sc.StudyInstanceUID, sc.PatientID) == (STUDY_UID, PATIENT_ID)
    assert str(sc.PatientName) == str(instance.header.PatientName)
    assert (sc.PatientBirthDate, sc.PatientSex, sc.AccessionNumber) == ("19500201", "F", "ACC-2026-0001")
    assert sc.SeriesInstanceUID != instance.series_instance_uid
    assert sc.SeriesNumber == 9002
    assert "AI" in sc.SeriesDescription and "not for diagnosis" in sc.SeriesDescription
    assert list(sc.PatientOrientation) == ["L", "F"]
    (reference,) = sc.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == SOP_UID
    assert "Pneumothorax" in sc.DerivationDescription
    assert "83.1%" in sc.ImageComments and "synthetic" in sc.ImageComments


def test_sc_shows_colour_in_the_box_and_grey_far_from_it(sc: Dataset) -> None:
    rgb = sc.pixel_array.astype(int)
    spread = rgb.max(axis=2) - rgb.min(axis=2)  # 0 on a grey pixel
    x0, y0, x1, y1 = BOX
    peak = spread[78:83, 88:93]
    assert peak.min() > 60, "the heat peak should be drawn in colour"
    assert spread[230:250, 180:220].max() == 0, "far from the heat the radiograph stays grey"
    # The outline: white inside a dark shadow along the box's top edge.
    top = rgb[y0, x0 + 5 : x1 - 5]
    assert (top == 255).all()


def test_sc_equipment_and_timestamps(sc: Dataset) -> None:
    (ours,) = [e for e in sc.ContributingEquipmentSequence if e.Manufacturer == "dxassist"]
    assert ours.PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    assert ours.ManufacturerModelName == "cxr-findings"
    assert ours.DeviceUID == device_uid(ORG_ROOT, ALGORITHM)
    assert (sc.ContentDate, sc.ContentTime) == ("20261122", "083005.250000")
    assert (sc.DateOfSecondaryCapture, sc.TimeOfSecondaryCapture) == ("20261122", "083005.250000")


def test_sc_is_byte_identical_when_built_again(instance: Instance, sc_bytes: bytes) -> None:
    again = build_heatmap_sc(instance, findings()[0], ALGORITHM, **KWARGS)
    assert write_part10(again) == sc_bytes


def test_scs_one_per_heatmap_in_one_series_apart_from_the_sr(instance: Instance) -> None:
    captures = build_heatmap_scs(instance, findings(), ALGORITHM, **KWARGS)
    assert [c.InstanceNumber for c in captures] == [1, 2]
    assert len({c.SeriesInstanceUID for c in captures}) == 1
    assert len({c.SOPInstanceUID for c in captures}) == 2
    sr = build_sr(instance, findings(), ALGORITHM, **KWARGS)
    assert sr.SeriesInstanceUID != captures[0].SeriesInstanceUID


def test_sc_large_radiograph_is_scaled_to_the_display_limit() -> None:
    rows, columns = 96, 4100  # long and thin: large side, few pixels
    wide = source(rows=rows, columns=columns)
    finding = FindingOutput(
        "consolidation",
        "Consolidation",
        0.7,
        True,
        0.5,
        box=(2000, 10, 2100, 60),
        capture=capture(rows, columns, (30, 2050), box=(2000, 10, 2100, 60)),
    )
    ds = build_heatmap_sc(wide, finding, ALGORITHM, **KWARGS)
    assert max(ds.Rows, ds.Columns) == MAX_SIDE
    assert ds.Columns / ds.Rows == pytest.approx(columns / rows, rel=0.02)


def test_sc_refuses_a_finding_without_heatmap_or_with_a_wrong_one(instance: Instance) -> None:
    with pytest.raises(InvalidFinding, match="no heatmap"):
        build_heatmap_sc(instance, findings()[1], ALGORITHM, **KWARGS)
    wrong = FindingOutput(
        "pneumothorax", "Pneumothorax", 0.9, True, 0.5, capture=np.zeros((10, 40, 3), np.uint8)
    )
    with pytest.raises(InvalidFinding, match="source image scaled"):
        build_heatmap_sc(instance, wrong, ALGORITHM, **KWARGS)
    with pytest.raises(InvalidFinding, match="uint8 RGB"):
        FindingOutput("pneumothorax", "Pneumothorax", 0.9, True, 0.5, capture=np.zeros((10, 10), np.float32))


def test_sc_drawn_on_a_lossy_rendering_says_so(instance: Instance) -> None:
    ds = build_heatmap_sc(instance, findings()[0], ALGORITHM, lossy_method="ISO_10918_1", **KWARGS)
    assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    plain = build_heatmap_sc(instance, findings()[0], ALGORITHM, **KWARGS)
    assert plain.LossyImageCompression == "00"


def test_sc_and_sr_keep_a_non_ascii_patient_name() -> None:
    accented = source(SpecificCharacterSet="ISO_IR 192", PatientName="Âmel^Zoé")
    for ds in (
        build_heatmap_sc(accented, findings()[0], ALGORITHM, **KWARGS),
        build_sr(accented, findings(), ALGORITHM, **KWARGS),
    ):
        back = pydicom.dcmread(io.BytesIO(write_part10(ds)))
        assert back.SpecificCharacterSet == "ISO_IR 192"
        assert str(back.PatientName) == "Âmel^Zoé"


@pytest.mark.parametrize(("probability", "shown"), [(0.99971, ">99.9%"), (1.0, ">99.9%"), (0.0002, "<0.1%")])
def test_sc_never_calls_a_probability_certain(instance: Instance, probability: float, shown: str) -> None:
    # A saturated output printed as "100.0%" in the PACS reads as a certainty no model has.
    from dataclasses import replace

    finding = replace(findings()[0], probability=probability)
    sc = build_heatmap_sc(instance, finding, ALGORITHM, **KWARGS)
    assert shown in sc.ImageComments
    assert "100.0%" not in sc.ImageComments and "AI probability 0.0%" not in sc.ImageComments
