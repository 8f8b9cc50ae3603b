"""Hostile and broken input is refused with a precise code and status, before decoding.

How fast each refusal is gets measured in ``python -m benchmarks.refusals``, not asserted here.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from _dicom_factory import (
    PATIENT_ID,
    PATIENT_NAME,
    compressed,
    dataset,
    deflate_bomb,
    encapsulated,
    jp2_frame,
    jpeg_frame,
    nested_sequences,
    phantom,
    restate_frame_size,
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


def _peak_bytes(action: Callable[[], object]) -> int:
    """The most memory Python and numpy allocated and held at once during ``action`` (refused or not)."""
    tracemalloc.start()
    try:
        action()
    except DicomRejected:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.timeout(60)
def test_a_deflate_bomb_is_refused_having_held_a_chunk_not_the_limit() -> None:
    cap = 32 << 20
    bomb = deflate_bomb(4 * cap)
    limits = Limits(max_instance_bytes=cap, max_pixels=1 << 20, max_instances=1)
    error = _rejected(bomb, limits)
    assert (error.code, DICOM_STATUS[error.kind]) == ("deflate_bomb", 413)
    assert f"more than {cap} bytes" in error.message
    # Measured, not kept: the refusal comes after inflating past the limit, without holding the output.
    assert _peak_bytes(lambda: read_instance(bomb, limits=limits)) < cap // 8


def test_a_deflated_dataset_is_inflated_into_one_buffer_not_grown_and_copied() -> None:
    import zlib

    from inference.dicom._guards import inflate_capped

    raw = bytes(range(251)) * ((48 << 20) // 251)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(raw) + compressor.flush()
    out: list[bytes] = []
    peak = _peak_bytes(lambda: out.append(inflate_capped(stream, cap=64 << 20)))
    assert out == [raw]
    assert peak < len(raw) * 1.2  # the dataset once (a grown buffer and its copy held twice as much)


def test_a_legitimate_deflated_file_is_read_with_its_stored_values() -> None:
    pixels = phantom(256, 200)
    instance = read_instance(
        to_bytes(dataset(pixels, bits_stored=12), uid.DeflatedExplicitVRLittleEndian), limits=LIMITS
    )
    np.testing.assert_array_equal(instance.pixels, pixels)


# ---- compressed frames: a decoder allocates what the frame header declares --------------------------


def _refused_frame(frame: bytes, pixels: np.ndarray, transfer_syntax: str) -> tuple[DicomRejected, int]:
    """Refusal and peak memory of a file whose header describes ``pixels`` and whose frame is ``frame``."""
    data = encapsulated(
        dataset(pixels, bits_stored=12 if pixels.dtype.itemsize == 2 else 8), frame, transfer_syntax
    )
    assert len(data) < 16_000  # kilobytes that claim hundreds of megabytes
    error = _rejected(data)
    return error, _peak_bytes(lambda: read_instance(data, limits=LIMITS, target_size=64))


@pytest.mark.timeout(60)  # the old code decoded the 20000 x 20000 claim in full: 2.3 GiB, then a 400
def test_a_jp2_file_claiming_20000_squared_pixels_is_refused_from_its_frame_header() -> None:
    pixels = phantom(64, 64)
    bomb = restate_frame_size(jp2_frame(pixels, bits_stored=12), 20000, 20000)
    error, peak = _refused_frame(bomb, pixels, uid.JPEG2000Lossless)
    assert (error.code, DICOM_STATUS[error.kind]) == ("codestream_mismatch", 400)
    assert "frame header declares 20000 x 20000 pixels" in error.message
    assert "declares 64 x 64" in error.message
    assert peak < 16 << 20  # nothing of the 800 MB the frame claims


@pytest.mark.timeout(60)  # the old code decoded the 30000 x 30000 claim in full: 4 GiB, then a 400
@pytest.mark.parametrize("stray", [b"\x00", b"junk"])
def test_a_jpeg_with_stray_bytes_before_its_frame_header_is_refused_not_decoded_blind(stray: bytes) -> None:
    pixels = phantom(64, 64, bits=8)
    bomb = restate_frame_size(jpeg_frame(pixels), 30000, 30000, before_sof=stray)
    error, peak = _refused_frame(bomb, pixels, uid.JPEGBaseline8Bit)
    assert (error.code, DICOM_STATUS[error.kind]) == ("decode_failed", 400)
    assert "JPEG frame header (the SOF marker segment)" in error.message
    assert "cannot be checked before decoding" in error.message
    assert peak < 16 << 20


def test_fill_bytes_before_the_frame_header_are_skipped_as_jpeg_allows() -> None:
    pixels = phantom(64, 64, bits=8)
    filled = restate_frame_size(jpeg_frame(pixels), 64, 64, before_sof=b"\xff\xff\xff")
    instance = read_instance(encapsulated(dataset(pixels), filled, uid.JPEGBaseline8Bit), limits=LIMITS)
    assert instance.pixels.shape == (64, 64)
    assert np.abs(instance.pixels.astype(float) - pixels).mean() < 0.02 * 255
    bomb = restate_frame_size(jpeg_frame(pixels), 30000, 30000, before_sof=b"\xff\xff\xff")
    error, peak = _refused_frame(bomb, pixels, uid.JPEGBaseline8Bit)
    assert error.code == "codestream_mismatch"
    assert "frame header declares 30000 x 30000 pixels" in error.message
    assert peak < 16 << 20


@pytest.mark.timeout(60)
def test_a_jpeg_frame_deferring_its_height_is_refused() -> None:
    # Height 0 in SOF: the number of lines would come in a DNL marker after the first scan. The old code
    # let it through to a decoder, which allocated until the process ran out of memory.
    pixels = phantom(64, 64, bits=8)
    error, _ = _refused_frame(restate_frame_size(jpeg_frame(pixels), 0, 64), pixels, uid.JPEGBaseline8Bit)
    assert (error.code, DICOM_STATUS[error.kind]) == ("codestream_mismatch", 400)
    assert "declares 0 rows" in error.message


@pytest.mark.timeout(60)  # the old code handed them to the decoders, one of which never answered
@pytest.mark.parametrize(
    "frame", [b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\r\n\x87\n" + b"\x00" * 60, b"\xff\xd8\xff\xd9"]
)
def test_a_frame_without_a_readable_header_is_refused(frame: bytes) -> None:
    # A JP2 signature without boxes, the short JP2 signature OpenJPEG also accepts, a JPEG without SOF.
    pixels = phantom(64, 64)
    transfer_syntax = uid.JPEGExtended12Bit if frame.startswith(b"\xff\xd8") else uid.JPEG2000Lossless
    error, _ = _refused_frame(frame + b"\x00" * 64, pixels, transfer_syntax)
    assert (error.code, DICOM_STATUS[error.kind]) == ("decode_failed", 400)
    assert "frame header" in error.message


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
