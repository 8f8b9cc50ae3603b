"""Per-site priority policy: findings and NEWS2 bands → ``critical``, ``urgent`` or ``routine``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, cast

from inference.policy._errors import PolicyError
from inference.vocabulary import FINDINGS

Priority = Literal["routine", "urgent", "critical"]
PRIORITIES: Final[tuple[Priority, ...]] = ("routine", "urgent", "critical")
"""Priorities from least to most urgent."""

NEWS2_BANDS: Final[tuple[str, ...]] = ("low", "low-medium", "medium", "high")
DEFAULT_POLICY: Final = "default_policy.yaml"


def _rank(priority: str) -> int:
    try:
        return PRIORITIES.index(cast(Priority, priority))
    except ValueError:
        raise PolicyError(f"Priority '{priority}' is unknown; use one of {', '.join(PRIORITIES)}.") from None


def max_priority(a: str | None, b: str | None) -> Priority:
    """The more urgent of two priorities (``None`` counts as unset; both unset gives ``routine``).

    The service calls it with the priority already set for a study, so a new result never lowers it.
    """
    ranks = [_rank(p) for p in (a, b) if p is not None]
    return PRIORITIES[max(ranks, default=0)]


@dataclass(frozen=True)
class ImagingRule:
    """Raise to ``priority`` when ``finding`` is positive (or reaches ``min_probability`` when given)."""

    finding: str
    priority: Priority
    min_probability: float | None = None

    def matches(self, probability: float, positive: bool) -> bool:
        """Whether a finding's result triggers this rule."""
        if self.min_probability is not None:
            return probability >= self.min_probability
        return positive


@dataclass(frozen=True)
class Policy:
    """A validated priority policy.

    Attributes:
        imaging_rules: rules over imaging findings.
        imaging_default: priority when no rule matches.
        news2: NEWS2 band → priority. With signs missing the band is the known part's (a lower bound),
            so a known part already in the ``high`` band gets the ``high`` priority.
        risk_positive: least priority when the triage model is positive.
        triage_default: least priority when NEWS2 is incomplete (some sign missing).
        red_score: least priority when a measured sign scores 3 on the NEWS2 chart (RCP 2017: a single
            red score calls for an urgent ward-based response).
        deteriorating_raise: levels a deteriorating trend raises the priority (0: the trend is shown
            but does not change the priority).
        trend_window_hours: how far back a patient's earlier observations count for the trend.
        trend_news2_rise: the NEWS2 rise over the window's lowest complete score that is deterioration.
        source: where the policy came from (a path, or ``embedded default``), for logs and audit.
        imaging_not_assessable: priority of a study the imaging model refused as out of distribution.
    """

    imaging_rules: tuple[ImagingRule, ...]
    imaging_default: Priority
    news2: Mapping[str, Priority]
    risk_positive: Priority
    triage_default: Priority
    source: str
    red_score: Priority = "urgent"
    deteriorating_raise: int = 1
    trend_window_hours: float = 24.0
    trend_news2_rise: int = 2
    imaging_not_assessable: Priority = "routine"

    @classmethod
    def load(cls, path: Path | str | None = None) -> Policy:
        """Read and validate a policy YAML file; the embedded default when ``path`` is ``None``.

        Raises:
            PolicyError: the file is missing, not YAML, or breaks the policy structure.
        """
        import yaml

        if path is None:
            text = resources.files("inference.policy").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
            source = "embedded default"
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as e:
                raise PolicyError(f"The site policy file {path} cannot be read: {e.strerror}.") from e
            source = str(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PolicyError(f"The site policy {source} is not valid YAML: {e}") from e
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        """The policy named by ``settings.record.site_policy`` (``DXASSIST_SITE_POLICY``), else default."""
        return cls.load(settings.record.site_policy)

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "mapping") -> Policy:
        """Validate a parsed policy document.

        Raises:
            PolicyError: an unknown key, finding code, NEWS2 band or priority, or a bad probability.
        """
        where = f"site policy {source}"
        doc = _mapping(data, where)
        _keys(doc, {"version", "imaging", "triage"}, where)
        if doc.get("version", 1) != 1:
            raise PolicyError(f"The {where} has version {doc['version']!r}; this server reads version 1.")
        imaging = _mapping(doc.get("imaging", {}), f"{where}: imaging")
        _keys(imaging, {"default", "rules", "not_assessable"}, f"{where}: imaging")
        triage = _mapping(doc.get("triage", {}), f"{where}: triage")
        _keys(
            triage,
            {
                "default",
                "news2",
                "risk_positive",
                "red_score",
                "deteriorating_raise",
                "trend_window_hours",
                "trend_news2_rise",
            },
            f"{where}: triage",
        )

        rules_data = imaging.get("rules", [])
        if not isinstance(rules_data, list):
            raise PolicyError(f"In the {where}, imaging.rules must be a list of rules.")
        rules = tuple(_rule(item, f"{where}: imaging.rules[{i}]") for i, item in enumerate(rules_data))
        news2_data = _mapping(triage.get("news2", {}), f"{where}: triage.news2")
        unknown = sorted(set(news2_data) - set(NEWS2_BANDS))
        if unknown:
            raise PolicyError(
                f"In the {where}, triage.news2 has unknown band(s) {', '.join(map(str, unknown))}; the NEWS2 "
                f"bands are {', '.join(NEWS2_BANDS)}."
            )
        triage_default = _priority(triage.get("default", "routine"), f"{where}: triage.default")
        raise_levels = triage.get("deteriorating_raise", 1)
        if isinstance(raise_levels, bool) or not isinstance(raise_levels, int) or not 0 <= raise_levels <= 2:
            raise PolicyError(
                f"In the {where}, triage.deteriorating_raise must be 0, 1 or 2 (priority levels); got "
                f"{raise_levels!r}."
            )
        window = triage.get("trend_window_hours", 24)
        if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 24 * 14:
            raise PolicyError(
                f"In the {where}, triage.trend_window_hours must be a number of hours above 0 and at most "
                f"{24 * 14}; got {window!r}."
            )
        rise = triage.get("trend_news2_rise", 2)
        if isinstance(rise, bool) or not isinstance(rise, int) or not 1 <= rise <= 20:
            raise PolicyError(
                f"In the {where}, triage.trend_news2_rise must be an integer from 1 to 20; got {rise!r}."
            )
        return cls(
            imaging_rules=rules,
            imaging_default=_priority(imaging.get("default", "routine"), f"{where}: imaging.default"),
            news2={
                band: _priority(news2_data.get(band, triage_default), f"{where}: triage.news2.{band}")
                for band in NEWS2_BANDS
            },
            risk_positive=_priority(triage.get("risk_positive", "urgent"), f"{where}: triage.risk_positive"),
            triage_default=triage_default,
            source=source,
            red_score=_priority(triage.get("red_score", "urgent"), f"{where}: triage.red_score"),
            deteriorating_raise=raise_levels,
            trend_window_hours=float(window),
            trend_news2_rise=rise,
            imaging_not_assessable=_priority(
                imaging.get("not_assessable", "routine"), f"{where}: imaging.not_assessable"
            ),
        )

    def imaging_priority(
        self, findings: Iterable[tuple[str, float, bool]], *, assessable: bool = True
    ) -> Priority:
        """Priority of an imaging result from its ``(code, probability, positive)`` findings.

        A result the model could not assess (out of distribution) gets ``imaging_not_assessable``: its
        probabilities mean nothing, so no rule, ``min_probability`` ones included, looks at them.
        """
        if not assessable:
            return self.imaging_not_assessable
        by_code = {code: (float(p), bool(pos)) for code, p, pos in findings}
        priority = self.imaging_default
        for rule in self.imaging_rules:
            result = by_code.get(rule.finding)
            if result is not None and rule.matches(*result):
                priority = max_priority(priority, rule.priority)
        return priority

    def triage_priority(
        self,
        news2_band: str | None,
        risk_positive: bool,
        *,
        red_score: bool = False,
        complete: bool = True,
        deteriorating: bool = False,
    ) -> Priority:
        """Priority of a triage result.

        Args:
            news2_band: NEWS2 band of the measured part (``None``: no NEWS2 at all).
            risk_positive: The model's risk is at or above its threshold.
            red_score: A measured sign scores 3.
            complete: Every NEWS2 sign was measured (else ``triage.default`` is a floor).
            deteriorating: The patient's trend is deteriorating (raises ``deteriorating_raise`` levels).

        Raises:
            PolicyError: ``news2_band`` is not a NEWS2 band.
        """
        if news2_band is None:
            priority = self.triage_default
        elif news2_band in self.news2:
            priority = self.news2[news2_band]
        else:
            raise PolicyError(
                f"NEWS2 band '{news2_band}' is unknown; the bands are {', '.join(NEWS2_BANDS)}."
            )
        if not complete:
            priority = max_priority(priority, self.triage_default)
        if red_score:
            priority = max_priority(priority, self.red_score)
        if risk_positive:
            priority = max_priority(priority, self.risk_positive)
        if deteriorating and self.deteriorating_raise:
            priority = PRIORITIES[min(_rank(priority) + self.deteriorating_raise, len(PRIORITIES) - 1)]
        return priority


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"The {where} must be a mapping of keys to values, not a {type(value).__name__}.")
    return value


def _keys(mapping: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(mapping) - allowed)
    if unknown:
        raise PolicyError(
            f"The {where} has unknown key(s) {', '.join(unknown)}; accepted keys are "
            f"{', '.join(sorted(allowed))}."
        )


def _priority(value: Any, where: str) -> Priority:
    if value not in PRIORITIES:
        raise PolicyError(
            f"In the {where}, priority {value!r} is unknown; use one of {', '.join(PRIORITIES)}."
        )
    return cast(Priority, value)


def _rule(item: Any, where: str) -> ImagingRule:
    rule = _mapping(item, where)
    _keys(rule, {"finding", "priority", "min_probability"}, where)
    finding = rule.get("finding")
    if finding not in FINDINGS:
        raise PolicyError(
            f"In the {where}, finding {finding!r} is unknown; the finding codes are {', '.join(FINDINGS)}."
        )
    if "priority" not in rule:
        raise PolicyError(f"The {where} has no priority; every rule names one of {', '.join(PRIORITIES)}.")
    threshold = rule.get("min_probability")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise PolicyError(f"In the {where}, min_probability must be a number from 0 to 1; got {threshold!r}.")
    return ImagingRule(
        finding=str(finding),
        priority=_priority(rule["priority"], where),
        min_probability=None if threshold is None else float(threshold),
    )
