"""read_instance on valid files: every transfer syntax we can encode, header fields, reduced decoding."""

from __future__ import annotations

import numpy as np
import pytest
from _dicom_factory import (
    PATIENT_ID,
    STUDY_UID,
    compressed,
    dataset,
    encapsulated,
    jp2_frame,
    jpeg_baseline,
    phantom,
    to_bytes,
)
from pydicom import uid

from inference.config import Settings
from inference.dicom import Instance, Limits, read_instance

LIMITS = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=8)
NATIVE_SYNTAXES = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.DeflatedExplicitVRLittleEndian,
]


def _read(data: bytes, target_size: int | None = None) -> Instance:
    return read_instance(data, limits=LIMITS, target_size=target_size)


@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_native_syntaxes_give_back_the_stored_values(syntax: str) -> None:
    pixels = phantom(40, 30)
    instance = _read(to_bytes(dataset(pixels, bits_stored=12), syntax))
    assert instance.transfer_syntax_uid == syntax
    np.testing.assert_array_equal(instance.pixels, pixels)
    assert instance.reduction == 1


@pytest.mark.parametrize("syntax", [*NATIVE_SYNTAXES, uid.RLELossless])
@pytest.mark.parametrize("side", [40, 1024])  # 1024 x 1024 x 2 bytes: digested on its own thread
def test_the_pixel_digest_is_the_sha256_of_the_pixel_data_as_read(syntax: str, side: int) -> None:
    """A resend is recognised by its pixels' digest: whether the Pixel Data is digested while the file is
    parsed (large uncompressed) or after, it is the SHA-256 of the element's value as pydicom reads it."""
    import hashlib
    from io import BytesIO

    from pydicom import dcmread

    ds = dataset(phantom(side, side), bits_stored=12)
    data = compressed(ds, syntax) if syntax == uid.RLELossless else to_bytes(ds, syntax)
    expected = hashlib.sha256(dcmread(BytesIO(data)).PixelData).hexdigest()
    assert _read(data).pixel_digest == expected


@pytest.mark.parametrize("syntax", [uid.RLELossless, uid.JPEG2000Lossless])
def test_lossless_codecs_give_back_the_stored_values(syntax: str) -> None:
    pixels = phantom(64, 48)  # the J2K encoder's 6 resolutions need at least 32 pixels a side
    instance = _read(compressed(dataset(pixels, bits_stored=12), syntax))
    np.testing.assert_array_equal(instance.pixels, pixels)


def test_lossy_codecs_stay_close_to_the_original() -> None:
    pixels = phantom(64, 64)
    j2k = _read(compressed(dataset(pixels, bits_stored=12), uid.JPEG2000, j2k_cr=[8]))
    assert np.abs(j2k.pixels.astype(float) - pixels).mean() < 0.01 * 4095
    pixels8 = phantom(64, 64, bits=8)
    jpeg = _read(jpeg_baseline(dataset(pixels8)))
    assert jpeg.pixels.dtype == np.uint8
    assert np.abs(jpeg.pixels.astype(float) - pixels8).mean() < 0.02 * 255


def test_signed_pixels_keep_their_sign() -> None:
    values = (phantom(20, 20).astype(np.int32) - 2048).astype(np.int16)
    ds = dataset(values.view(np.uint16) & 0x0FFF, bits_stored=12, signed=True)
    instance = _read(to_bytes(ds))
    assert instance.pixels.dtype == np.int16
    np.testing.assert_array_equal(instance.pixels, values)


def test_header_fields_are_read_without_keeping_pixel_data() -> None:
    ds = dataset(
        phantom(32, 24),
        bits_stored=12,
        photometric="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-1024,
        WindowCenter=[1000, 1500],
        WindowWidth=[400, 800],
        VOILUTFunction="SIGMOID",
        ImageLaterality="L",
    )
    instance = _read(to_bytes(ds))
    assert (instance.rows, instance.columns) == (32, 24)
    assert instance.photometric == "MONOCHROME1"
    assert (instance.rescale_slope, instance.rescale_intercept) == (2.0, -1024.0)
    assert instance.window_centers == (1000.0, 1500.0) and instance.window_widths == (400.0, 800.0)
    assert instance.voi_lut_function == "SIGMOID"
    assert instance.pixel_spacing == (0.2, 0.2)
    assert instance.view_position == "PA" and instance.body_part == "CHEST" and instance.laterality == "L"
    assert instance.study_instance_uid == STUDY_UID
    assert instance.patient.patient_id == PATIENT_ID
    assert instance.patient.issuer == "HOSPITAL-A"
    assert instance.patient.birth_date == "1950-02-01" and instance.patient.sex == "female"
    assert instance.study_date == "2026-11-22" and instance.accession_number == "ACC1"
    assert "PixelData" not in instance.header and instance.header.PatientID == PATIENT_ID


def test_voi_lut_sequence_is_read() -> None:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = np.arange(4095, -1, -1, dtype="<u2").tobytes()
    item["LUTData"].VR = "OW"
    ds = dataset(phantom(16, 16), bits_stored=12, VOILUTSequence=[item])
    first, bits, table = _read(to_bytes(ds)).voi_lut  # type: ignore[misc]
    assert (first, bits, table.size) == (0, 12, 4096) and table[0] == 4095 and table[-1] == 0


@pytest.mark.parametrize("sop_class", [uid.SecondaryCaptureImageStorage, uid.ComputedRadiographyImageStorage])
def test_secondary_capture_and_cr_are_accepted(sop_class: str) -> None:
    modality = "OT" if sop_class == uid.SecondaryCaptureImageStorage else "CR"
    instance = _read(to_bytes(dataset(phantom(16, 16), sop_class=sop_class, modality=modality)))
    assert instance.sop_class_uid == sop_class


def test_j2k_decodes_at_reduced_resolution_keeping_four_times_the_target() -> None:
    pixels = phantom(1100, 900)
    data = compressed(dataset(pixels, bits_stored=12), uid.JPEG2000Lossless)
    reduced = read_instance(data, limits=LIMITS, target_size=100, min_long_side=0)
    # short side 900: 900/2 = 450 >= 400 but 900/4 = 225 < 400, so one level is dropped.
    assert reduced.reduction == 2 and reduced.pixels.shape == (550, 450)
    assert (reduced.rows, reduced.columns) == (1100, 900)
    full = _read(data)
    assert full.reduction == 1 and full.pixels.shape == (1100, 900)
    block_mean = full.pixels.reshape(550, 2, 450, 2).mean(axis=(1, 3))
    assert np.abs(reduced.pixels.astype(float) - block_mean).mean() < 0.01 * 4095


def test_jpeg_2000_in_a_jp2_file_decodes_and_reduces_like_a_bare_codestream() -> None:
    pixels = phantom(1100, 900)
    data = encapsulated(dataset(pixels, bits_stored=12), jp2_frame(pixels, 12), uid.JPEG2000Lossless)
    np.testing.assert_array_equal(_read(data).pixels, pixels)
    # Its frame header is read inside the JP2 boxes: checked, and decoded at reduced resolution too.
    reduced = read_instance(data, limits=LIMITS, target_size=100, min_long_side=0)
    assert reduced.reduction == 2 and reduced.pixels.shape == (550, 450)


def test_jpeg_baseline_decodes_at_reduced_resolution() -> None:
    pixels = phantom(1024, 800, bits=8)
    data = jpeg_baseline(dataset(pixels))
    reduced = read_instance(data, limits=LIMITS, target_size=100, min_long_side=0)
    assert reduced.reduction == 4 and reduced.pixels.shape == (256, 200)
    block_mean = pixels.reshape(256, 4, 200, 4).mean(axis=(1, 3))
    assert np.abs(reduced.pixels.astype(float) - block_mean).mean() < 0.02 * 255


def test_reduced_decodes_keep_the_display_size_on_the_long_side() -> None:
    # 1100 x 900 for a 100-px model: one JPEG 2000 level (550 x 450) keeps four model sides, but the
    # display rendering is 1024 px on the long side, so by default nothing is dropped; a floor of 512
    # allows the one level. Baseline JPEG likewise.
    j2k = compressed(dataset(phantom(1100, 900), bits_stored=12), uid.JPEG2000Lossless)
    assert _read(j2k, target_size=100).reduction == 1
    assert read_instance(j2k, limits=LIMITS, target_size=100, min_long_side=512).reduction == 2
    jpeg = jpeg_baseline(dataset(phantom(1024, 800, bits=8)))
    assert _read(jpeg, target_size=100).reduction == 1
    reduced = read_instance(jpeg, limits=LIMITS, target_size=100, min_long_side=512)
    assert reduced.reduction == 2 and reduced.pixels.shape == (512, 400)


def test_small_images_are_never_reduced() -> None:
    data = compressed(dataset(phantom(300, 300), bits_stored=12), uid.JPEG2000Lossless)
    assert _read(data, target_size=256).reduction == 1


def test_limits_follow_settings() -> None:
    settings = Settings(max_instance_bytes=2048, max_pixels=10, max_instances=3)
    assert Limits.from_settings(settings.limits) == Limits(2048, 10, 3, min_side=32)


def test_a_large_compressed_pixel_data_is_digested_while_decoded_with_the_same_digest() -> None:
    """Encapsulated Pixel Data over 1 MiB (RLE of noise) is digested on its own thread during the decode:
    the digest is still the SHA-256 of the element's value as pydicom reads it."""
    import hashlib
    from io import BytesIO

    from pydicom import dcmread

    noise = np.random.default_rng(9).integers(0, 4096, size=(1024, 1024), dtype=np.uint16)
    data = compressed(dataset(noise, bits_stored=12), uid.RLELossless)
    value = dcmread(BytesIO(data)).PixelData
    assert len(value) > 1024 * 1024  # the threaded path
    instance = _read(data)
    assert instance.pixel_digest == hashlib.sha256(value).hexdigest()
    np.testing.assert_array_equal(instance.pixels, noise)


@pytest.mark.parametrize("keyword", ["PatientID", "IssuerOfPatientID"])
def test_an_identifier_with_several_values_is_refused(keyword: str) -> None:
    from inference.dicom import DicomRejected

    ds = dataset(phantom(64, 64))
    setattr(ds, keyword, ["IPP1", "IPP2"])
    with pytest.raises(DicomRejected) as refused:
        _read(to_bytes(ds))
    assert refused.value.code == "multi_valued_identifier"
    assert refused.value.kind == "malformed"  # 400 over HTTP, 0xC000 over DIMSE
    assert keyword in refused.value.message and "IPP1" not in refused.value.message


@pytest.mark.parametrize(
    ("keyword", "values"),
    [
        ("ViewPosition", ["PA", "AP"]),
        ("BodyPartExamined", ["CHEST", "ABDOMEN"]),
        ("StudyInstanceUID", ["1.2.3", "1.2.4"]),
    ],
)
def test_any_single_valued_attribute_with_several_values_is_refused(keyword: str, values: list[str]) -> None:
    """Value multiplicity 1 everywhere the reader looks: str() of several values ("['PA', 'AP']") was
    read as the view, the body part."""
    from inference.dicom import DicomRejected

    ds = dataset(phantom(64, 64))
    setattr(ds, keyword, values)
    with pytest.raises(DicomRejected) as refused:
        _read(to_bytes(ds))
    assert refused.value.code == "multi_valued_attribute"
    assert refused.value.kind == "malformed"  # 400 over HTTP, 0xC000 over DIMSE
    assert keyword in refused.value.message and values[0] not in refused.value.message


def test_a_descriptive_attribute_with_several_values_is_read_as_its_first() -> None:
    """A patient's name or an accession number written with a backslash (as modalities do) is read as its
    first value, the writers' reading too, never as the text of a list."""
    ds = dataset(phantom(64, 64))
    ds.PatientName = ["Doe^Jane", "Roe^Jane"]
    ds.AccessionNumber = ["ACC1", "ACC2"]
    instance = _read(to_bytes(ds))
    assert instance.patient.name == "Doe^Jane"
    assert instance.accession_number == "ACC1"
