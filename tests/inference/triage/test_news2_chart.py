"""NEWS2 against every boundary of the RCP 2017 chart, the bands and the rounding rule."""

import pytest

from inference.triage import (
    VitalSigns,
    compute_news2,
    missing_for_news2,
    score_consciousness,
    score_heart_rate,
    score_on_oxygen,
    score_respiratory_rate,
    score_spo2,
    score_systolic_bp,
    score_temperature,
)

# Every cut point of the chart is tested on both sides.
RESPIRATORY_RATE = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_SCALE_1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SPO2_SCALE_2_AIR = [
    (50, 3),
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 0),
    (97, 0),
    (100, 0),
]
SPO2_SCALE_2_OXYGEN = [
    (83, 3),
    (84, 2),
    (85, 2),
    (86, 1),
    (87, 1),
    (88, 0),
    (92, 0),
    (93, 1),
    (94, 1),
    (95, 2),
    (96, 2),
    (97, 3),
    (100, 3),
]
SYSTOLIC = [(30, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (300, 3)]
HEART_RATE = [
    (10, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
]
TEMPERATURE = [
    (25.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (45.0, 2),
]


@pytest.mark.parametrize(("value", "points"), RESPIRATORY_RATE)
def test_respiratory_rate_chart(value: float, points: int) -> None:
    assert score_respiratory_rate(value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_1)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_ignores_oxygen(value: float, points: int, on_oxygen: bool) -> None:
    assert score_spo2(value, scale=1, on_oxygen=on_oxygen) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_AIR)
def test_spo2_scale_2_on_air(value: float, points: int) -> None:
    assert score_spo2(value, scale=2, on_oxygen=False) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_2_OXYGEN)
def test_spo2_scale_2_on_oxygen(value: float, points: int) -> None:
    assert score_spo2(value, scale=2, on_oxygen=True) == points


def test_air_or_oxygen() -> None:
    assert (score_on_oxygen(False), score_on_oxygen(True)) == (0, 2)


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_chart(value: float, points: int) -> None:
    assert score_systolic_bp(value) == points


@pytest.mark.parametrize(("value", "points"), HEART_RATE)
def test_heart_rate_chart(value: float, points: int) -> None:
    assert score_heart_rate(value) == points


@pytest.mark.parametrize(("level", "points"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness_chart(level: str, points: int) -> None:
    assert score_consciousness(level) == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature_chart(value: float, points: int) -> None:
    assert score_temperature(value) == points


@pytest.mark.parametrize(
    ("scorer", "value", "points"),
    [
        (score_respiratory_rate, 20.4, 0),
        (score_respiratory_rate, 20.5, 2),  # half up to 21
        (score_respiratory_rate, 8.5, 1),  # 9
        (score_heart_rate, 90.5, 1),
        (score_heart_rate, 130.49, 2),
        (score_systolic_bp, 90.5, 2),  # 91
        (score_systolic_bp, 219.5, 3),  # 220
        (score_temperature, 36.05, 0),  # 36.1, although the float is 36.0499...
        (score_temperature, 36.04, 1),
        (score_temperature, 38.05, 1),  # 38.1
        (score_temperature, 35.04, 3),  # 35.0
    ],
)
def test_non_integer_values_round_half_up_to_the_chart_resolution(scorer, value: float, points: int) -> None:
    assert scorer(value) == points


def test_spo2_rounds_half_up() -> None:
    assert score_spo2(95.5, scale=1, on_oxygen=False) == 0
    assert score_spo2(92.5, scale=2, on_oxygen=True) == 1


NORMAL = {
    "respiratory_rate": 16,
    "spo2": 98,
    "on_oxygen": False,
    "systolic_bp": 125,
    "diastolic_bp": 80,
    "heart_rate": 72,
    "temperature": 36.8,
    "consciousness": "A",
}


def _news2(**changes):
    return compute_news2(VitalSigns(**{**NORMAL, **changes}))


@pytest.mark.parametrize(
    ("changes", "total", "band"),
    [
        ({}, 0, "low"),
        ({"respiratory_rate": 22, "heart_rate": 95, "temperature": 38.5}, 4, "low"),  # 2 + 1 + 1
        ({"consciousness": "C"}, 3, "low-medium"),  # a single red score
        ({"systolic_bp": 88, "heart_rate": 95}, 4, "low-medium"),
        ({"respiratory_rate": 22, "heart_rate": 115, "temperature": 38.5}, 5, "medium"),
        ({"respiratory_rate": 26, "heart_rate": 115, "temperature": 38.5}, 6, "medium"),
        ({"respiratory_rate": 26, "spo2": 93, "on_oxygen": True}, 7, "high"),  # 3 + 2 + 2
        (
            {
                "respiratory_rate": 30,
                "spo2": 85,
                "on_oxygen": True,
                "systolic_bp": 85,
                "heart_rate": 140,
                "temperature": 34.5,
                "consciousness": "U",
            },
            20,
            "high",
        ),
    ],
)
def test_total_and_bands(changes: dict, total: int, band: str) -> None:
    score = _news2(**changes)
    assert score is not None
    assert (score.total, score.band) == (total, band)
    assert score.total == sum(score.subscores.values())


def test_single_three_with_total_five_is_medium_not_low_medium() -> None:
    score = _news2(consciousness="V", respiratory_rate=22)
    assert score is not None and (score.total, score.band) == (5, "medium")


def test_subscores_are_keyed_by_request_field_names() -> None:
    score = _news2(spo2=90, spo2_scale=2, on_oxygen=True)
    assert score is not None
    assert list(score.subscores) == [
        "respiratory_rate",
        "spo2",
        "on_oxygen",
        "systolic_bp",
        "heart_rate",
        "consciousness",
        "temperature",
    ]
    assert score.subscores["spo2"] == 0 and score.subscores["on_oxygen"] == 2


def test_scale_2_on_oxygen_scores_over_oxygenation() -> None:
    on_scale_1 = _news2(spo2=97, on_oxygen=True)
    on_scale_2 = _news2(spo2=97, on_oxygen=True, spo2_scale=2)
    assert on_scale_1 is not None and on_scale_2 is not None
    assert (on_scale_1.subscores["spo2"], on_scale_2.subscores["spo2"]) == (0, 3)


def test_missing_parameter_gives_the_known_part_and_names_it() -> None:
    v = VitalSigns(**{**NORMAL, "on_oxygen": None, "temperature": None})
    score = compute_news2(v)
    assert missing_for_news2(v) == ["on_oxygen", "temperature"]
    assert (score.complete, score.missing, score.total, score.band) == (
        False,
        ("on_oxygen", "temperature"),
        0,
        "low",
    )
    assert set(score.subscores) == {"respiratory_rate", "spo2", "systolic_bp", "heart_rate", "consciousness"}


def test_known_part_of_the_issue_example_is_high_with_a_red_score() -> None:
    # RR 30, SpO2 85 % (scale 1), HR 135, responds to voice; nothing else: each sign alone scores 3.
    score = compute_news2(VitalSigns(respiratory_rate=30, spo2=85, heart_rate=135, consciousness="V"))
    assert score.subscores == {"respiratory_rate": 3, "spo2": 3, "heart_rate": 3, "consciousness": 3}
    assert (score.total, score.band, score.complete, score.red_score) == (12, "high", False, True)
    assert score.missing == ("on_oxygen", "systolic_bp", "temperature")


def test_known_part_is_a_lower_bound_of_every_completion() -> None:
    partial = VitalSigns(respiratory_rate=22, spo2=92, spo2_scale=2, heart_rate=95)
    known = compute_news2(partial).total
    for on_oxygen in (False, True):
        for sbp in (85, 105, 130, 230):
            for temp in (34.0, 36.5, 39.5):
                for level in ("A", "V"):
                    full = VitalSigns(
                        **{
                            **partial.as_dict(),
                            "on_oxygen": on_oxygen,
                            "systolic_bp": sbp,
                            "temperature": temp,
                            "consciousness": level,
                        }
                    )
                    assert compute_news2(full).complete
                    assert compute_news2(full).total >= known


def test_red_score_without_a_high_total_is_low_medium() -> None:
    score = _news2(consciousness="V")
    assert score.red_score and score.total == 3 and score.band == "low-medium"
    assert not _news2().red_score


def test_diastolic_and_scale_are_not_needed() -> None:
    v = VitalSigns(**{k: val for k, val in NORMAL.items() if k != "diastolic_bp"})
    assert missing_for_news2(v) == []
    assert compute_news2(v).complete


def test_nothing_measured_lists_every_parameter() -> None:
    assert len(missing_for_news2(VitalSigns())) == 7
