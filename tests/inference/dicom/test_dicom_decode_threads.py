"""JPEG 2000 decoding on several OpenJPEG threads (``DXASSIST_DECODE_THREADS``) gives the same pixels."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _dicom_factory import compressed, dataset, phantom
from pydicom import uid

from inference.config import Settings
from inference.dicom import Limits, read_instance
from inference.dicom._decode import configure_decode_threads, usable_cores

LIMITS = Limits(max_instance_bytes=64 << 20, max_pixels=16 << 20, max_instances=8)


def test_the_setting_sets_openjpegs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPJ_NUM_THREADS", "7")  # restored after the test
    monkeypatch.setenv("DXASSIST_DECODE_THREADS", "3")
    assert configure_decode_threads(Settings().runtime.decode_threads) == 3
    assert os.environ["OPJ_NUM_THREADS"] == "3"
    monkeypatch.delenv("DXASSIST_DECODE_THREADS")
    assert Settings().runtime.decode_threads == 0  # the default: every core the process may use
    assert configure_decode_threads(0) == usable_cores() >= 1
    assert os.environ["OPJ_NUM_THREADS"] == str(usable_cores())


def test_jpeg_2000_pixels_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPJ_NUM_THREADS", "1")
    pixels = phantom(1100, 900)
    data = compressed(dataset(pixels, bits_stored=12), uid.JPEG2000Lossless)
    decoded = {}
    for threads in (1, 4):
        configure_decode_threads(threads)
        full = read_instance(data, limits=LIMITS)
        reduced = read_instance(data, limits=LIMITS, target_size=100, min_long_side=0)
        decoded[threads] = (full.pixels, reduced.pixels, reduced.reduction)
    np.testing.assert_array_equal(decoded[1][0], pixels)  # lossless on one thread
    np.testing.assert_array_equal(decoded[4][0], pixels)  # and on four
    assert decoded[1][2] == decoded[4][2] == 2
    np.testing.assert_array_equal(decoded[1][1], decoded[4][1])
