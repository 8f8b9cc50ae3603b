"""pydicom's own test files, local copies only (nothing is downloaded): a precise answer for each."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import DATA_ROOT
from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

from inference.api._errors import DICOM_STATUS
from inference.dicom import DicomRejected, Limits, known_codes, read_instance

# Globbing the installed folder, not get_testdata_files(), which may try to fetch pydicom-data online.
LOCAL_FILES = sorted(p for p in (Path(DATA_ROOT) / "test_files").rglob("*") if p.is_file())
LIMITS = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=8)
# A code that says "something was wrong" without saying what would be useless to a PACS administrator.
GENERIC = {"malformed_header"}


def test_the_local_corpus_is_there() -> None:
    assert len(LOCAL_FILES) > 100


# Production runs with Python's default warning filters; pydicom warns about oddities it tolerates.
# Each file must be answered, not hang: a generous timeout, no wall-clock assert (the time per file is
# measured as a ratio in `python -m benchmarks.refusals`).
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "path", LOCAL_FILES, ids=lambda p: str(p.relative_to(Path(DATA_ROOT) / "test_files"))
)
def test_every_file_is_read_or_refused_precisely(path: Path) -> None:
    data = path.read_bytes()
    try:
        instance = read_instance(data, limits=LIMITS, target_size=128)
    except DicomRejected as error:
        assert error.code in known_codes() and DICOM_STATUS[error.kind] in (400, 413, 415, 422)
        if error.code in GENERIC:
            # Only a file whose dataset is not encoded as declared may get the generic code.
            assert "transfer syntax declares" in error.message
    else:
        assert instance.pixels.ndim == 2


def _relabel_as_dx(name: str) -> tuple[bytes, np.ndarray]:
    """A pydicom sample re-labelled as a chest DX, keeping its encoded pixel data untouched."""
    path = Path(DATA_ROOT) / "test_files" / name
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality, ds.BodyPartExamined, ds.PatientID = "DX", "CHEST", "SAMPLE"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, keyword, generate_uid())
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), expected


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "name",
    [
        "JPGExtended.dcm",  # JPEG extended, 12-bit
        "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless, signed
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "693_J2KI.dcm",  # JPEG 2000 lossy, signed 14-bit
    ],
)
def test_other_codecs_decode_like_pydicom(name: str) -> None:
    data, expected = _relabel_as_dx(name)
    instance = read_instance(data, limits=LIMITS)
    np.testing.assert_array_equal(instance.pixels, expected)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_signed_j2k_reduced_decode_matches_the_full_one() -> None:
    data, expected = _relabel_as_dx("693_J2KI.dcm")  # 512 x 512, signed
    instance = read_instance(data, limits=LIMITS, target_size=32, min_long_side=0)  # below the display floor
    assert instance.reduction == 4 and instance.pixels.shape == (128, 128)
    block_mean = expected.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    spread = float(expected.max() - expected.min())
    # The 9/7 wavelet low-pass is not a box filter: sharp CT edges differ by about 1 % of the range.
    assert np.abs(instance.pixels - block_mean).mean() < 0.02 * spread
