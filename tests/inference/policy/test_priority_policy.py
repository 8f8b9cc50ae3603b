"""Priority policy: the embedded defaults, a site's own YAML, and clear errors for a wrong file."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.config import Settings
from inference.policy import Policy, PolicyError, max_priority

NONE_POSITIVE = [
    ("nodule", 0.2, False),
    ("consolidation", 0.1, False),
    ("pleural_effusion", 0.3, False),
    ("pneumothorax", 0.35, False),
    ("cardiomegaly", 0.05, False),
]


def _with(code: str, probability: float = 0.8, positive: bool = True) -> list[tuple[str, float, bool]]:
    return [(c, probability, positive) if c == code else (c, p, pos) for c, p, pos in NONE_POSITIVE]


@pytest.fixture(scope="module")
def default() -> Policy:
    return Policy.load(None)


def test_default_imaging_priorities(default: Policy) -> None:
    assert default.source == "embedded default"
    assert default.imaging_priority(NONE_POSITIVE) == "routine"
    assert default.imaging_priority(_with("pneumothorax")) == "critical"
    for code in ("consolidation", "pleural_effusion", "cardiomegaly", "nodule"):
        assert default.imaging_priority(_with(code)) == "urgent"
    both = [*_with("pneumothorax")[:3], ("pneumothorax", 0.9, True), ("cardiomegaly", 0.7, True)]
    assert default.imaging_priority(both) == "critical"


def test_default_triage_priorities(default: Policy) -> None:
    assert default.triage_priority("low", False) == "routine"
    assert default.triage_priority("low-medium", False) == "urgent"
    assert default.triage_priority("medium", False) == "urgent"
    assert default.triage_priority("high", False) == "critical"
    assert default.triage_priority("low", True) == "urgent"  # a positive model raises at least to urgent
    assert default.triage_priority("high", True) == "critical"  # and never lowers
    assert default.triage_priority(None, False) == "routine"
    assert default.triage_priority(None, True) == "urgent"
    with pytest.raises(PolicyError, match="NEWS2 band 'severe' is unknown"):
        default.triage_priority("severe", False)


def test_default_policy_for_incomplete_news2_red_scores_and_trends(default: Policy) -> None:
    # A known part already in the high band is critical, missing signs or not (RCP 2017: NEWS2 >= 7).
    assert default.triage_priority("high", False, complete=False) == "critical"
    # A single red score is at least urgent even when its band would say otherwise.
    assert default.triage_priority("low", False, red_score=True) == "urgent"
    assert default.triage_priority("low", False, complete=False) == "routine"
    # A deteriorating trend raises one level, and critical stays critical.
    assert default.triage_priority("low", False, deteriorating=True) == "urgent"
    assert default.triage_priority("medium", False, deteriorating=True) == "critical"
    assert default.triage_priority("high", True, deteriorating=True) == "critical"


def test_a_site_may_switch_off_the_trend_raise_and_tune_the_red_score(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\ntriage:\n  deteriorating_raise: 0\n  red_score: critical\n")
    policy = Policy.load(path)
    assert policy.triage_priority("low", False, deteriorating=True) == "routine"
    assert policy.triage_priority("low", False, red_score=True) == "critical"
    path.write_text("version: 1\ntriage:\n  default: urgent\n  news2: {low: routine}\n")
    policy = Policy.load(path)
    assert policy.triage_priority("low", False) == "routine"
    assert policy.triage_priority("low", False, complete=False) == "urgent"
    path.write_text("version: 1\ntriage:\n  deteriorating_raise: 5\n")
    with pytest.raises(PolicyError, match="deteriorating_raise must be 0, 1 or 2"):
        Policy.load(path)
    path.write_text("version: 1\ntriage:\n  trend_window_hours: 12\n  trend_news2_rise: 3\n")
    policy = Policy.load(path)
    assert (policy.trend_window_hours, policy.trend_news2_rise) == (12.0, 3)
    assert (Policy.load(None).trend_window_hours, Policy.load(None).trend_news2_rise) == (24.0, 2)
    path.write_text("version: 1\ntriage:\n  trend_window_hours: 0\n")
    with pytest.raises(PolicyError, match="trend_window_hours"):
        Policy.load(path)


def test_max_priority_never_lowers() -> None:
    assert max_priority("critical", "routine") == "critical"
    assert max_priority("routine", "urgent") == "urgent"
    assert max_priority(None, "urgent") == "urgent"
    assert max_priority(None, None) == "routine"
    with pytest.raises(PolicyError, match="Priority 'asap' is unknown"):
        max_priority("asap", "routine")


def test_a_site_policy_file_changes_the_priorities(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        """
version: 1
imaging:
  default: routine
  rules:
    - finding: pneumothorax
      priority: critical
    - finding: pneumothorax          # suspected, below the operating threshold: still look soon
      min_probability: 0.3
      priority: urgent
    - finding: nodule
      priority: routine              # nodules go to the routine outpatient pathway here
triage:
  news2: {low: routine, low-medium: routine, medium: urgent, high: critical}
  risk_positive: critical
""",
        encoding="utf-8",
    )
    policy = Policy.from_settings(Settings(home=tmp_path / "home", site_policy=path))
    assert policy.source == str(path)
    quiet = [(code, 0.05, False) for code, _, _ in NONE_POSITIVE]
    assert policy.imaging_priority([("nodule", 0.9, True), *quiet[1:]]) == "routine"
    assert policy.imaging_priority(NONE_POSITIVE) == "urgent"  # pneumothorax at 0.35 ≥ 0.3
    assert policy.imaging_priority(_with("pneumothorax", 0.1, False)) == "routine"
    consolidation = [(c, 0.9, True) if c == "consolidation" else (c, p, pos) for c, p, pos in quiet]
    assert policy.imaging_priority(consolidation) == "routine"  # no rule for it at this site
    assert policy.triage_priority("low-medium", False) == "routine"
    assert policy.triage_priority("low", True) == "critical"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "imaging:\n  rules:\n    - {finding: atelectasis, priority: urgent}\n",
            "finding 'atelectasis' is unknown",
        ),
        ("imaging:\n  rules:\n    - {finding: nodule, priority: stat}\n", "priority 'stat' is unknown"),
        ("imaging:\n  rules:\n    - {finding: nodule}\n", "has no priority"),
        (
            "imaging:\n  rules:\n    - {finding: nodule, priority: urgent, min_probability: 1.5}\n",
            "from 0 to 1",
        ),
        ("imaging:\n  rules:\n    - {finding: nodule, priority: urgent, threshold: 0.5}\n", "unknown key"),
        ("triage:\n  news2: {severe: critical}\n", "unknown band"),
        ("triage:\n  news2: {high: now}\n", "priority 'now' is unknown"),
        ("triage:\n  risk_positiv: urgent\n", "unknown key"),
        ("version: 2\n", "version 2"),
        ("- just\n- a list\n", "must be a mapping"),
        ("imaging: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_wrong_policy_file_is_refused_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        Policy.load(path)


def test_a_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        Policy.load(tmp_path / "absent.yaml")


def test_a_not_assessable_study_gets_the_site_priority_and_no_rule_reads_its_scores(tmp_path: Path) -> None:
    default = Policy.load(None)
    everything = [(code, 0.99, True) for code, _p, _pos in NONE_POSITIVE]
    assert default.imaging_priority(everything) == "critical"
    assert default.imaging_priority(everything, assessable=False) == "routine"
    assert default.imaging_not_assessable == "routine"
    site = tmp_path / "site.yaml"
    site.write_text(
        "version: 1\nimaging:\n  not_assessable: urgent\n  rules:\n"
        "    - {finding: pneumothorax, priority: critical, min_probability: 0.5}\n",
        encoding="utf-8",
    )
    policy = Policy.load(site)
    assert policy.imaging_priority(everything, assessable=False) == "urgent"
    site.write_text("version: 1\nimaging:\n  not_assessable: soon\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not_assessable"):
        Policy.load(site)
