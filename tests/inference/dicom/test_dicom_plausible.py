"""Physical plausibility at ingest: rescale, window and pixel statistics each refused with their own code."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _dicom_factory import dataset, phantom, to_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.api._errors import DICOM_STATUS
from inference.dicom import DicomRejected, Limits, read_instance
from inference.preprocess import PreprocessParams, prepare

LIMITS = Limits(max_instance_bytes=8 << 20, max_pixels=1 << 22, max_instances=4, min_side=32)
PARAMS = PreprocessParams(input_size=64, mean=0.5, std=0.25)


def _code(data: bytes) -> tuple[str, int]:
    with pytest.raises(DicomRejected) as caught:
        read_instance(data, limits=LIMITS, target_size=64)
    return caught.value.code, DICOM_STATUS[caught.value.kind]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"RescaleSlope": "1e308", "RescaleIntercept": "-1e308"}, ("implausible_rescale", 422)),
        ({"RescaleSlope": "NaN"}, ("invalid_rescale", 400)),
        ({"RescaleIntercept": "inf"}, ("invalid_rescale", 400)),
        ({"RescaleSlope": "1e-300"}, ("implausible_rescale", 422)),
        ({"RescaleSlope": 1, "RescaleIntercept": "1e12"}, ("implausible_rescale", 422)),
        ({"RescaleSlope": 0}, ("invalid_rescale", 400)),
        ({"WindowCenter": "1e300", "WindowWidth": "1e300"}, ("implausible_window", 422)),
        ({"WindowCenter": "NaN", "WindowWidth": 400}, ("invalid_window", 400)),
        ({"WindowCenter": 2048, "WindowWidth": "-inf"}, ("invalid_window", 400)),
        ({"WindowCenter": 90000, "WindowWidth": 400}, ("implausible_window", 422)),
        ({"WindowCenter": 2048, "WindowWidth": "1e9"}, ("implausible_window", 422)),
    ],
)
def test_non_finite_or_implausible_lut_values_are_refused(
    attributes: dict[str, object], expected: tuple[str, int]
) -> None:
    assert _code(to_bytes(dataset(phantom(64, 64), bits_stored=12, **attributes))) == expected


def test_plausible_lut_values_still_give_a_finite_model_input() -> None:
    ds = dataset(
        phantom(64, 64),
        bits_stored=12,
        RescaleSlope=0.5,
        RescaleIntercept=-1024,
        WindowCenter=0,
        WindowWidth=1500,
    )
    instance = read_instance(to_bytes(ds), limits=LIMITS, target_size=64)
    tensor = prepare(instance, PARAMS).tensor
    assert np.isfinite(tensor).all() and float(tensor.std()) > 0


@pytest.mark.parametrize(
    ("pixels", "code"),
    [
        (np.zeros((64, 64), dtype=np.uint16), "blank_image"),
        (np.full((64, 64), 1234, dtype=np.uint16), "blank_image"),
        (np.pad(np.full((4, 4), 4000, dtype=np.uint16), 30), "blank_image"),  # 16 of 1444 pixels lit
        (phantom(1, 1), "image_too_small"),
        (phantom(31, 200), "image_too_small"),
    ],
)
def test_blank_nearly_empty_and_tiny_images_are_refused(pixels: np.ndarray, code: str) -> None:
    assert _code(to_bytes(dataset(pixels, bits_stored=12))) == (code, 422)


def test_a_radiograph_with_a_wide_uniform_border_is_accepted() -> None:
    # Collimation leaves large uniform borders on real radiographs: 75 % background is still an image.
    pixels = np.zeros((128, 128), dtype=np.uint16)
    pixels[32:96, 32:96] = phantom(64, 64)
    assert read_instance(to_bytes(dataset(pixels, bits_stored=12)), limits=LIMITS).rows == 128


def test_library_limits_without_a_minimum_side_read_small_images() -> None:
    small = Limits(max_instance_bytes=1 << 20, max_pixels=1 << 20, max_instances=1)
    assert read_instance(to_bytes(dataset(phantom(8, 8), bits_stored=12)), limits=small).rows == 8


@pytest.mark.parametrize("value", ["29990101", "17000101", "00010101"])
def test_implausible_dicom_dates_are_treated_as_absent(value: str) -> None:
    ds = dataset(phantom(64, 64), bits_stored=12, PatientBirthDate=value, StudyDate=value)
    instance = read_instance(to_bytes(ds), limits=LIMITS)
    assert instance.patient.birth_date is None and instance.study_date is None


def test_plausible_dicom_dates_are_kept() -> None:
    ds = dataset(phantom(64, 64), bits_stored=12, PatientBirthDate="19230417", StudyDate="2026-11-22")
    instance = read_instance(to_bytes(ds), limits=LIMITS)
    assert (instance.patient.birth_date, instance.study_date) == ("1923-04-17", "2026-11-22")


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-5000, max_value=5000),
    st.sampled_from([0.0, 1.0, -1.0, 1e-7, 1e7, 1e300, -1e300]),
)


@given(
    slope=finite_or_not,
    intercept=finite_or_not,
    center=finite_or_not,
    width=finite_or_not,
    function=st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID"]),
)
@settings(max_examples=150, deadline=None, derandomize=True)
def test_whatever_the_lut_values_the_model_input_is_finite_or_the_file_is_refused(
    slope: float, intercept: float, center: float, width: float, function: str
) -> None:
    # DS holds at most 16 characters: repr() of a float fits once shortened with the 'g' format.
    values = {k: f"{v:.10g}" for k, v in (("RescaleSlope", slope), ("RescaleIntercept", intercept))}
    values |= {"WindowCenter": f"{center:.10g}", "WindowWidth": f"{width:.10g}", "VOILUTFunction": function}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about 'nan' and 'inf' as DS values
        data = to_bytes(dataset(phantom(64, 64), bits_stored=12, **values))
    try:
        instance = read_instance(data, limits=LIMITS, target_size=64)
    except DicomRejected as e:
        assert e.code in {"invalid_rescale", "implausible_rescale", "invalid_window", "implausible_window"}
        return
    assert np.isfinite(prepare(instance, PARAMS).tensor).all()


def _lut(table: np.ndarray, first: int = 0) -> object:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [table.size, first, 12]
    item.LUTData = table.astype("<u2").tobytes()
    item["LUTData"].VR = "OW"
    return item


def test_a_voi_lut_that_flattens_the_image_is_refused() -> None:
    flat = _lut(np.full(4096, 2000))
    assert _code(to_bytes(dataset(phantom(64, 64), bits_stored=12, VOILUTSequence=[flat]))) == (
        "implausible_voi_lut",
        422,
    )
    beyond = _lut(np.arange(4096), first=60000)  # the image's values all fall before the table
    assert _code(to_bytes(dataset(phantom(64, 64), bits_stored=12, VOILUTSequence=[beyond])))[0] == (
        "implausible_voi_lut"
    )
    ramp = _lut(np.arange(4095, -1, -1))
    instance = read_instance(
        to_bytes(dataset(phantom(64, 64), bits_stored=12, VOILUTSequence=[ramp])), limits=LIMITS
    )
    assert float(prepare(instance, PARAMS).tensor.std()) > 0
