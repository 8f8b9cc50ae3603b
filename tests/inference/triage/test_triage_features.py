"""The model input encoding (the ONNX input contract in docs/internals.md)."""

import numpy as np

from inference.triage import FEATURES, VitalSigns, encode_batch, encode_features, model_inputs


def test_feature_order_is_the_contract() -> None:
    assert FEATURES == (
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "diastolic_bp",
        "heart_rate",
        "temperature",
        "consciousness",
    )


def test_full_observation_is_raw_values_with_codes() -> None:
    v = VitalSigns(
        respiratory_rate=22,
        spo2=93,
        on_oxygen=True,
        systolic_bp=105,
        diastolic_bp=70,
        heart_rate=112,
        temperature=38.4,
        consciousness="P",
    )
    values, present = encode_features(v)
    assert values.dtype == np.float32 and present.dtype == np.float32
    np.testing.assert_allclose(values, [22, 93, 1, 105, 70, 112, 38.4, 3], rtol=1e-6)
    assert present.tolist() == [1.0] * 8


def test_missing_values_are_zero_and_absent() -> None:
    values, present = encode_features(VitalSigns(heart_rate=80, on_oxygen=False, consciousness="A"))
    assert present.tolist() == [0, 0, 1, 0, 0, 1, 0, 1]
    assert values.tolist() == [0, 0, 0, 0, 0, 80, 0, 0]


def test_consciousness_codes() -> None:
    codes = [encode_features(VitalSigns(consciousness=c))[0][7] for c in "ACVPU"]
    assert codes == [0, 1, 2, 3, 4]


def test_batch_matches_single_rows() -> None:
    rows = [VitalSigns(heart_rate=70), VitalSigns(spo2=88, spo2_scale=2), VitalSigns()]
    values, present = encode_batch(rows)
    assert values.shape == present.shape == (3, len(FEATURES))
    for i, row in enumerate(rows):
        single_values, single_present = encode_features(row)
        np.testing.assert_array_equal(values[i], single_values)
        np.testing.assert_array_equal(present[i], single_present)
    assert encode_batch([])[0].shape == (0, len(FEATURES))


def test_spo2_on_scale_2_is_withheld_from_the_model_only() -> None:
    scale_2 = VitalSigns(spo2=88, spo2_scale=2, on_oxygen=True, heart_rate=70)
    given, withheld = model_inputs(scale_2)
    assert withheld == ("spo2",) and given.spo2 is None and given.heart_rate == 70
    assert given.on_oxygen is True  # only the saturation the model would misread
    scale_1 = VitalSigns(spo2=88, on_oxygen=True)
    assert model_inputs(scale_1) == (scale_1, ())
    assert model_inputs(VitalSigns(spo2_scale=2, heart_rate=70))[1] == ()  # nothing to withhold
