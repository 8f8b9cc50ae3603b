"""Phantoms written as DICOM: byte-reproducible, readable by the server's reader, loaded for training."""

import csv
import datetime as dt
import hashlib
import io

import numpy as np
import pydicom
import pytest

from inference.dicom import Limits, read_instance
from inference.preprocess import PreprocessParams, prepare
from training.data import (
    FINDINGS,
    DicomStyle,
    build_synthetic_imaging,
    generate_phantom,
    load_dataset,
    load_imaging_dataset,
    split_indices,
    study_bytes,
    write_study,
)

LIMITS = Limits(max_instance_bytes=64 * 1024 * 1024, max_pixels=16 * 1024 * 1024, max_instances=8)
PARAMS = PreprocessParams(input_size=128)


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(np.random.default_rng(3), findings={"nodule": True}, size_range=(300, 330))


def test_same_seed_gives_byte_identical_files(phantom, tmp_path):
    path = write_study(phantom, tmp_path / "a.dcm", index=4, seed=9)
    again = study_bytes(phantom, index=4, seed=9)
    assert path.read_bytes() == again
    assert hashlib.sha256(again).digest() != hashlib.sha256(study_bytes(phantom, index=5, seed=9)).digest()


STYLES = [
    DicomStyle(),
    DicomStyle(modality="DX", photometric="MONOCHROME1", bits_stored=14),
    DicomStyle(modality="DX", bits_stored=16, rescale_slope=0.5, voi_sigmoid=True),
    DicomStyle(modality="CR", photometric="MONOCHROME1", rescale_intercept=-1024.0, transfer_syntax="rle"),
]


@pytest.mark.parametrize(
    "style", STYLES, ids=lambda s: f"{s.modality}-{s.photometric}-{s.bits_stored}-{s.transfer_syntax}"
)
def test_every_style_reads_through_the_server_reader_and_shows_the_same_picture(phantom, style):
    data = study_bytes(phantom, index=1, seed=2, style=style)
    instance = read_instance(data, limits=LIMITS)
    assert instance.photometric == style.photometric
    assert instance.modality == style.modality
    assert instance.bits_stored == style.bits_stored
    assert instance.view_position == "PA"
    assert (instance.rows, instance.columns) == phantom.image.shape
    expected_class = "1.2.840.10008.5.1.4.1.1.1.1" if style.modality == "DX" else "1.2.840.10008.5.1.4.1.1.1"
    assert instance.sop_class_uid == expected_class
    # Whatever the encoding, the model input shows the phantom (MONOCHROME1 comes back un-inverted).
    prepared = prepare(instance, PARAMS)
    reference = prepared.geometry.to_model(phantom.image)
    g = prepared.geometry
    inside = (
        slice(g.pad_top, g.pad_top + g.content_shape[0]),
        slice(g.pad_left, g.pad_left + g.content_shape[1]),
    )
    corr = np.corrcoef(prepared.tensor[0][inside].ravel(), reference[inside].ravel())[0, 1]
    assert corr > 0.98


def test_header_is_an_obviously_fake_patient_with_seeded_dates_and_no_clock(phantom):
    ds = pydicom.dcmread(io.BytesIO(study_bytes(phantom, index=42, seed=1)))
    assert str(ds.PatientName) == "SYNTHETIC^PATIENT^0042"
    assert ds.PatientID == "SYN-000042"
    assert ds.IssuerOfPatientID == "DXASSIST-SYNTH"
    assert ds.BodyPartExamined == "CHEST"
    assert ds.StudyInstanceUID.startswith("1.2.826.0.1.3680043.10.1453.")
    assert ds.file_meta.ImplementationVersionName == "DXASSIST_SYN_1"
    assert "synthetic" in ds.ImageComments.lower()
    assert dt.date(2024, 12, 2) <= dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date() < dt.date(2026, 11, 1)
    other = pydicom.dcmread(io.BytesIO(study_bytes(phantom, index=42, seed=1)))
    assert (other.StudyDate, other.StudyTime, other.SOPInstanceUID) == (
        ds.StudyDate,
        ds.StudyTime,
        ds.SOPInstanceUID,
    )


def test_lateral_companion_shares_the_study_but_not_the_series():
    rng = np.random.default_rng(8)
    pa = generate_phantom(rng, findings={}, size_range=(256, 280), view="PA")
    ll = generate_phantom(rng, findings={}, size_range=(256, 280), view="LL")
    a = read_instance(study_bytes(pa, index=0, seed=1, study_index=7, series_number=1), limits=LIMITS)
    b = read_instance(study_bytes(ll, index=1, seed=1, study_index=7, series_number=2), limits=LIMITS)
    assert a.study_instance_uid == b.study_instance_uid
    assert a.series_instance_uid != b.series_instance_uid
    assert a.patient.patient_id == b.patient.patient_id
    assert b.view_position == "LL"


def test_split_indices_are_a_deterministic_partition():
    s = split_indices(100, seed=4)
    assert sorted(np.concatenate(s).tolist()) == list(range(100))
    assert (len(s.train), len(s.val), len(s.test)) == (70, 15, 15)
    assert all(np.array_equal(x, y) for x, y in zip(s, split_indices(100, seed=4), strict=True))
    assert not np.array_equal(s.val, split_indices(100, seed=5).val)


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    build_synthetic_imaging(
        root, n=10, seed=21, size_range=(256, 300), lateral_fraction=0.2, rle_fraction=0.2
    )
    return root


def test_builder_writes_images_masks_and_labels_reproducibly_with_any_number_of_workers(
    synthetic_set, tmp_path
):
    with open(synthetic_set / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    assert list(rows[0]) == ["file", "split", "view", *FINDINGS]
    assert {r["split"] for r in rows} <= {"train", "val", "test"}
    assert all((synthetic_set / r["file"]).is_file() for r in rows)
    again = build_synthetic_imaging(
        tmp_path / "again",
        n=3,
        seed=21,
        size_range=(256, 300),
        lateral_fraction=0.2,
        rle_fraction=0.2,
        workers=2,
    )
    for name in ("images/000000.dcm", "images/000002.dcm", "masks/000001.npz"):
        assert (again / name).read_bytes() == (synthetic_set / name).read_bytes()


def test_loader_gives_model_tensors_labels_and_masks_in_model_geometry(synthetic_set):
    data = load_imaging_dataset(synthetic_set, PARAMS)
    assert data.x.shape == (10, 1, 128, 128) and data.x.dtype == np.float32
    assert data.y.shape == (10, len(FINDINGS))
    assert data.masks is not None and data.masks.shape == (10, len(FINDINGS), 128, 128)
    # A mask is present exactly where the label is positive.
    assert np.array_equal(data.masks.any(axis=(2, 3)), data.y.astype(bool))
    assert set(data.views) <= {"PA", "AP", "LL"}
    frontal = load_imaging_dataset(synthetic_set, PARAMS, frontal_only=True, with_masks=False)
    assert "LL" not in frontal.views and frontal.masks is None
    assert len(data.split("train")) + len(data.split("val")) + len(data.split("test")) == 10


def test_pool_loading_matches_in_process_loading(synthetic_set):
    one = load_dataset("synthetic", synthetic_set, PARAMS, limit=4)
    two = load_dataset("synthetic", synthetic_set, PARAMS, limit=4, workers=2)
    assert np.array_equal(one.x, two.x) and np.array_equal(one.masks, two.masks)
    assert one.files == two.files
