"""Implausible or malformed vital signs are refused with a sentence naming the field and the range."""

import math

import pytest

from inference.triage import TriageError, VitalSigns, VitalsRejected


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("respiratory_rate", 81, "0 to 80"),
        ("respiratory_rate", -1, "0 to 80"),
        ("spo2", 49, "50 to 100"),
        ("spo2", 101, "50 to 100"),
        ("systolic_bp", 29, "30 to 300"),
        ("systolic_bp", 301, "30 to 300"),
        ("diastolic_bp", 9, "10 to 200"),
        ("heart_rate", 301, "10 to 300"),
        ("heart_rate", 9, "10 to 300"),
        ("temperature", 98.6, "25 to 45"),  # Fahrenheit by mistake
        ("temperature", 24.9, "25 to 45"),
    ],
)
def test_out_of_range_is_rejected(field: str, value: float, accepted: str) -> None:
    with pytest.raises(VitalsRejected) as info:
        VitalSigns(**{field: value})
    assert info.value.code == "implausible_value"
    assert info.value.field == field
    assert field in info.value.message and accepted in info.value.message
    assert info.value.message.endswith(".")


@pytest.mark.parametrize("value", [True, "72", math.nan, math.inf])
def test_non_numbers_are_rejected(value: object) -> None:
    with pytest.raises(VitalsRejected) as info:
        VitalSigns(heart_rate=value)  # type: ignore[arg-type]
    assert info.value.code == "invalid_type"


def test_limits_themselves_are_accepted() -> None:
    v = VitalSigns(
        respiratory_rate=0, spo2=50, systolic_bp=300, diastolic_bp=200, heart_rate=10, temperature=45
    )
    assert v.temperature == 45.0


def test_diastolic_must_be_below_systolic() -> None:
    with pytest.raises(VitalsRejected) as info:
        VitalSigns(systolic_bp=80, diastolic_bp=80)
    assert info.value.code == "inconsistent_values"
    assert "systolic_bp" in info.value.message
    VitalSigns(systolic_bp=None, diastolic_bp=150)  # nothing to compare with


@pytest.mark.parametrize(
    ("field", "value"), [("consciousness", "alert"), ("consciousness", "a"), ("spo2_scale", 3)]
)
def test_codes_outside_the_lists_are_rejected(field: str, value: object) -> None:
    with pytest.raises(VitalsRejected) as info:
        VitalSigns(**{field: value})
    assert info.value.code == "invalid_value"


def test_on_oxygen_must_be_boolean() -> None:
    with pytest.raises(VitalsRejected):
        VitalSigns(on_oxygen=1)  # type: ignore[arg-type]


def test_rejection_is_a_value_error_and_a_triage_error() -> None:
    with pytest.raises(ValueError):
        VitalSigns(spo2=10)
    with pytest.raises(TriageError):
        VitalSigns(spo2=10)


def test_from_mapping_reads_a_request_body() -> None:
    body = {
        "patient": {"identifier": "IPP-SYN-000001"},
        "observed_at": "2026-11-22T08:15:00Z",
        "respiratory_rate": 22,
        "spo2": 93,
        "on_oxygen": False,
        "temperature": None,
        "consciousness": "A",
    }
    v = VitalSigns.from_mapping(body)
    assert (v.respiratory_rate, v.spo2, v.spo2_scale, v.on_oxygen, v.temperature) == (
        22.0,
        93.0,
        1,
        False,
        None,
    )
    assert v.as_dict()["consciousness"] == "A"


def test_messages_never_echo_the_value() -> None:
    with pytest.raises(VitalsRejected) as info:
        VitalSigns(heart_rate=123456)
    assert "123456" not in info.value.message
