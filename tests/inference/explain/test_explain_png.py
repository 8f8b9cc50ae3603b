"""The PNG writer of overlays, heat layers and display renderings: any reader gets the exact pixels back."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from inference.explain import encode_png


@pytest.mark.parametrize(("shape", "mode"), [((37, 53), "L"), ((64, 31, 3), "RGB"), ((1, 1, 4), "RGBA")])
def test_pillow_reads_back_every_pixel(shape: tuple[int, ...], mode: str) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as image:
        image.load()
        assert (image.format, image.mode, image.size) == ("PNG", mode, (shape[1], shape[0]))
        assert np.array_equal(np.asarray(image), pixels)


def test_a_smooth_overlay_sized_picture_compresses() -> None:
    rows = np.linspace(0, 255, 1024, dtype=np.float32)
    pixels = np.stack([np.add.outer(rows, rows) / 2] * 3, axis=-1).astype(np.uint8)
    assert len(encode_png(pixels)) < pixels.nbytes / 10


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4), np.uint8)]
)
def test_what_is_not_an_8_bit_picture_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="PNG"):
        encode_png(bad)


def test_every_chunk_is_standard_and_its_crc_checks() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    png = encode_png(pixels)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds = 8, []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        kinds.append(kind)
        at += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    # 8-bit RGB, and every row starts with a standard filter type.
    assert png[16:26] == struct.pack(">IIBB", 40, 48, 8, 2)
    rows = np.frombuffer(zlib.decompress(png[41:-12]), np.uint8).reshape(48, 40 * 3 + 1)
    assert set(rows[:, 0].tolist()) <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("shape", "mode"), [((513, 700, 3), "RGB"), ((1024, 1024), "L"), ((301, 600, 4), "RGBA")]
)
def test_a_picture_compressed_in_two_bands_is_one_valid_stream(shape: tuple[int, ...], mode: str) -> None:
    # Large pictures are compressed in two bands of rows at once; joined, they must be one zlib stream
    # (zlib checks its Adler-32) whose rows any reader turns back into the exact pixels, noise included.
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pixels[: shape[0] // 3] //= 16  # a smooth part and a noisy part, across the band boundary
    png = encode_png(pixels)
    (length,) = struct.unpack(">I", png[33:37])
    assert png[37:41] == b"IDAT"
    stride = shape[1] * (shape[2] if len(shape) == 3 else 1) + 1
    rows = np.frombuffer(zlib.decompress(png[41 : 41 + length]), np.uint8).reshape(shape[0], stride)
    assert set(rows[:, 0].tolist()) <= {0, 1, 2, 3, 4}
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert (image.mode, image.size) == (mode, (shape[1], shape[0]))
        assert np.array_equal(np.asarray(image), pixels)
