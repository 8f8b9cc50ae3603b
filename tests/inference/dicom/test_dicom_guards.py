"""Hostile and broken input is refused with a precise code and status, before decoding.

How fast each refusal is gets measured in ``python -m benchmarks.refusals``, not asserted here.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from _dicom_factory import (
    PATIENT_ID,
    PATIENT_NAME,
    compressed,
    dataset,
    deflate_bomb,
    nested_sequences,
    phantom,
    simple,
    to_bytes,
)
from pydicom import uid

from inference.api._errors import DICOM_STATUS
from inference.dicom import DicomRejected, DicomTooLarge, Limits, read_instance

LIMITS = Limits(max_instance_bytes=8 << 20, max_pixels=4 << 20, max_instances=8)


def _rejected(data: bytes, limits: Limits = LIMITS) -> DicomRejected:
    with pytest.raises(DicomRejected) as caught:
        read_instance(data, limits=limits)
    error = caught.value
    # No patient data in messages, ever.
    assert PATIENT_ID not in error.message and "Phantom" not in error.message
    assert error.message.endswith(".") and len(error.message) > 30
    return error


def test_not_dicom_is_refused() -> None:
    assert _rejected(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200).code == "not_dicom"
    assert DICOM_STATUS[_rejected(b"").kind] == 415


def test_file_over_the_byte_limit_is_refused_before_parsing() -> None:
    error = _rejected(b"\x00" * 5000, Limits(max_instance_bytes=4096, max_pixels=100, max_instances=1))
    assert (error.code, DICOM_STATUS[error.kind]) == ("instance_too_large", 413)
    assert isinstance(error, DicomTooLarge)


@pytest.mark.timeout(60)  # a decoder that inflates past the cap would hang or swap, not fail
def test_deflate_bomb_stops_at_the_cap() -> None:
    bomb = deflate_bomb(16 << 20)  # 16 MiB from about 16 KiB, 16 times the cap
    assert len(bomb) < 50_000
    error = _rejected(bomb, Limits(max_instance_bytes=1 << 20, max_pixels=1 << 20, max_instances=1))
    assert (error.code, DICOM_STATUS[error.kind]) == ("deflate_bomb", 413)


@pytest.mark.parametrize("defined_length", [False, True])
def test_300_deep_sequences_are_refused(defined_length: bool) -> None:
    error = _rejected(simple() + nested_sequences(300, defined_length=defined_length))
    assert (error.code, DICOM_STATUS[error.kind]) == ("nesting_too_deep", 400)


def test_16_deep_sequences_are_accepted_and_17_are_not() -> None:
    assert read_instance(simple() + nested_sequences(16), limits=LIMITS).rows == 64
    assert _rejected(simple() + nested_sequences(17)).code == "nesting_too_deep"


def test_huge_declared_size_is_refused_before_decoding() -> None:
    ds = dataset(phantom(8, 8))
    ds.Rows = ds.Columns = 60000  # 3.6 Gpixel claimed, 128 bytes sent
    error = _rejected(to_bytes(ds))
    assert (error.code, DICOM_STATUS[error.kind]) == ("too_large", 413)


def test_truncated_file_is_refused() -> None:
    data = simple()
    for cut in (len(data) - 100, len(data) // 2, 200):
        assert _rejected(data[:cut]).code == "truncated"


def test_element_length_beyond_the_end_is_refused() -> None:
    data = bytearray(simple())
    at = data.index(PATIENT_NAME.encode())
    # The 2-byte length of Patient's Name (explicit VR, short form) sits just before its value.
    struct.pack_into("<H", data, at - 2, 60000)
    assert _rejected(bytes(data)).code == "truncated"


def test_pixel_data_shorter_than_rows_times_columns_is_refused() -> None:
    ds = dataset(phantom(8, 8))
    ds.Rows = 9
    assert _rejected(to_bytes(ds)).code == "pixel_length_mismatch"


def test_codestream_larger_than_the_header_is_refused() -> None:
    ds = dataset(phantom(64, 64), bits_stored=12)
    data = compressed(ds, uid.JPEG2000Lossless)
    ds2 = dataset(phantom(32, 32), bits_stored=12)
    ds2.PixelData, ds2["PixelData"].VR = ds.PixelData, "OB"
    ds2["PixelData"].is_undefined_length = True
    assert data and _rejected(to_bytes(ds2, uid.JPEG2000Lossless)).code == "codestream_mismatch"


def test_unsupported_transfer_syntax_is_refused_with_415() -> None:
    data = simple().replace(uid.ExplicitVRLittleEndian.encode() + b"\x00", b"1.2.840.10008.1.2.4.100\x00")
    error = _rejected(data)
    assert (error.code, DICOM_STATUS[error.kind]) == ("unsupported_transfer_syntax", 415)


def test_colour_is_refused() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    ds = dataset(rgb[..., 0], photometric="RGB")
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PixelData = 3, 0, rgb.tobytes()
    error = _rejected(to_bytes(ds))
    assert (error.code, DICOM_STATUS[error.kind]) == ("not_grayscale", 422)


def test_palette_is_refused() -> None:
    assert _rejected(to_bytes(dataset(phantom(8, 8), photometric="PALETTE COLOR"))).code == "not_grayscale"


def test_multi_frame_is_refused() -> None:
    frames = np.stack([phantom(8, 8), phantom(8, 8)])
    ds = dataset(phantom(8, 8), NumberOfFrames=2)
    ds.PixelData = frames.tobytes()
    assert _rejected(to_bytes(ds)).code == "multi_frame"


def test_ct_is_refused_as_unsupported_modality() -> None:
    error = _rejected(to_bytes(dataset(phantom(8, 8), modality="CT", sop_class=uid.CTImageStorage)))
    assert (error.code, DICOM_STATUS[error.kind]) == ("unsupported_modality", 422)


def test_dx_class_with_another_sop_class_is_refused() -> None:
    assert (
        _rejected(to_bytes(dataset(phantom(8, 8), sop_class=uid.CTImageStorage))).code
        == "unsupported_sop_class"
    )


def test_non_chest_body_part_is_refused_and_absent_is_accepted() -> None:
    error = _rejected(to_bytes(dataset(phantom(8, 8), body_part="KNEE")))
    assert (error.code, DICOM_STATUS[error.kind]) == ("not_chest", 422)
    assert read_instance(to_bytes(dataset(phantom(8, 8), body_part=None)), limits=LIMITS).body_part is None
    assert read_instance(to_bytes(dataset(phantom(8, 8), body_part="THORAX")), limits=LIMITS).rows == 8


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"BitsStored": 17}, "bad_pixel_attributes"),
        ({"HighBit": 3}, "bad_pixel_attributes"),
        ({"BitsAllocated": 32}, "bad_pixel_attributes"),
        ({"PixelRepresentation": 2}, "bad_pixel_attributes"),
        ({"RescaleSlope": 0}, "invalid_rescale"),
        ({"StudyInstanceUID": "1.2.3/../../etc"}, "invalid_uid"),
        ({"PatientID": ""}, "missing_attribute"),
    ],
)
def test_inconsistent_headers_are_refused(changes: dict[str, object], code: str) -> None:
    ds = dataset(phantom(8, 8), bits_stored=12)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    assert _rejected(to_bytes(ds)).code == code


def test_missing_pixel_data_is_refused() -> None:
    ds = dataset(phantom(8, 8))
    del ds.PixelData
    assert _rejected(to_bytes(ds)).code == "no_pixel_data"


def test_corrupt_codestream_is_refused_as_decode_failure() -> None:
    data = bytearray(compressed(dataset(phantom(64, 64), bits_stored=12), uid.JPEG2000Lossless))
    start = data.index(b"\xff\x4f\xff\x51")
    data[start + 43 : start + 75] = b"\xaa" * 32  # the marker segments after SIZ become garbage
    assert _rejected(bytes(data)).code == "decode_failed"


@pytest.mark.timeout(10)
def test_deflate_stream_followed_by_padding_inflates_and_stops() -> None:
    # pydicom pads an odd-length deflated dataset with one byte after the end of the stream;
    # the inflater must stop at the end of the stream instead of feeding that byte forever.
    import zlib

    from inference.dicom._guards import _INFLATE_CHUNK, inflate_capped

    raw = bytes(range(256)) * (2 * _INFLATE_CHUNK // 256)  # output ends exactly on a chunk boundary
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(raw) + compressor.flush()
    assert inflate_capped(stream + b"\x00", cap=4 * _INFLATE_CHUNK) == raw
