"""Champion vs challenger on the same live inputs: agreement, shift, OOD pass rates, readers' verdicts.

Every figure is measured on the shadow pairs the record holds (:class:`inference.record.ShadowPair`):
nothing here is a claim about either model beyond the inputs it names.

- Agreement per finding, each version at its own operating threshold: positive agreement
  ``2a / (2a + b + c)``, negative agreement ``2d / (2d + b + c)`` and Cohen's kappa (``a`` both positive,
  ``d`` both negative, ``b``/``c`` the discordant cells). Kappa is undefined (None) when chance agreement
  is 1, e.g. when both versions called every input negative.
- Mean absolute difference of the calibrated probabilities.
- Shift of the challenger's scores from the champion's: the population stability index on the
  champion's quantile bins (:meth:`inference.runtime.SignalReference.from_sample`, the drift code's PSI).
- OOD pass rate of each version (share of inputs its guard found assessable).
- Where readers gave a verdict: sensitivity and specificity of each version against the readers' labels,
  with Wilson 95% intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.record import ShadowPair
from inference.runtime._drift import SignalReference

_Z = 1.959963984540054  # two-sided 95%


@dataclass(frozen=True)
class Proportion:
    """``successes / total`` with its Wilson 95% interval (None when ``total`` is 0)."""

    successes: int
    total: int

    @property
    def value(self) -> float | None:
        """The proportion, None without cases."""
        return self.successes / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """Wilson score interval at 95%."""
        return wilson(self.successes, self.total)


def wilson(successes: int, total: int, z: float = _Z) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (None when ``total`` is 0)."""
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class FindingAgreement:
    """Agreement of the two versions on one finding (``a``: both positive, ``d``: both negative)."""

    code: str
    n: int
    both_positive: int
    champion_only: int
    challenger_only: int
    both_negative: int
    mean_abs_difference: float
    psi: float

    @property
    def positive_agreement(self) -> float | None:
        """``2a / (2a + b + c)``; None when neither version called any input positive."""
        d = 2 * self.both_positive + self.champion_only + self.challenger_only
        return 2 * self.both_positive / d if d else None

    @property
    def negative_agreement(self) -> float | None:
        """``2d / (2d + b + c)``; None when neither version called any input negative."""
        d = 2 * self.both_negative + self.champion_only + self.challenger_only
        return 2 * self.both_negative / d if d else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa; None when chance agreement is 1 (undefined)."""
        n = self.n
        if n == 0:
            return None
        a, b, c, d = self.both_positive, self.champion_only, self.challenger_only, self.both_negative
        observed = (a + d) / n
        chance = ((a + b) * (a + c) + (c + d) * (b + d)) / (n * n)
        return (observed - chance) / (1 - chance) if chance < 1 else None


@dataclass(frozen=True)
class ReaderAccuracy:
    """Each version against the readers' labels on one finding."""

    code: str
    verdicts: int
    champion_sensitivity: Proportion
    champion_specificity: Proportion
    challenger_sensitivity: Proportion
    challenger_specificity: Proportion


@dataclass(frozen=True)
class Comparison:
    """The comparison of one pair of versions of one model on their shared inputs.

    Attributes:
        model: Registered model name.
        champion: The champion version (the one whose results were filed).
        challenger: The challenger version (shadow-scored).
        pairs: Inputs both answered.
        findings: Agreement per finding code.
        champion_ood_pass: Share of inputs the champion's OOD guard found assessable.
        challenger_ood_pass: The same for the challenger.
        readers: Per finding with readers' verdicts, each version against them.
        reader_verdicts: Readers' verdicts on the shared inputs (all findings).
    """

    model: str
    champion: str
    challenger: str
    pairs: int
    findings: tuple[FindingAgreement, ...]
    champion_ood_pass: Proportion
    challenger_ood_pass: Proportion
    readers: tuple[ReaderAccuracy, ...]
    reader_verdicts: int


def _accuracy(code: str, pairs: Sequence[ShadowPair]) -> ReaderAccuracy | None:
    rows = [(p.truth[code], p.champion.positive.get(code, False), p.challenger.positive.get(code, False))
            for p in pairs if code in p.truth]  # fmt: skip
    if not rows:
        return None
    positives = [r for r in rows if r[0]]
    negatives = [r for r in rows if not r[0]]
    return ReaderAccuracy(
        code=code,
        verdicts=len(rows),
        champion_sensitivity=Proportion(sum(1 for r in positives if r[1]), len(positives)),
        champion_specificity=Proportion(sum(1 for r in negatives if not r[1]), len(negatives)),
        challenger_sensitivity=Proportion(sum(1 for r in positives if r[2]), len(positives)),
        challenger_specificity=Proportion(sum(1 for r in negatives if not r[2]), len(negatives)),
    )


def compare_pairs(pairs: Sequence[ShadowPair], *, model: str, champion: str, challenger: str) -> Comparison:
    """Every comparison figure of ``pairs`` (the inputs both versions answered)."""
    codes: list[str] = []
    for pair in pairs:
        for code in pair.champion.probabilities:
            if code in pair.challenger.probabilities and code not in codes:
                codes.append(code)
    findings = []
    for code in codes:
        shared = [p for p in pairs if code in p.champion.probabilities and code in p.challenger.probabilities]
        mine = np.array([p.champion.probabilities[code] for p in shared], dtype=np.float64)
        theirs = np.array([p.challenger.probabilities[code] for p in shared], dtype=np.float64)
        cells = [
            (p.champion.positive.get(code, False), p.challenger.positive.get(code, False)) for p in shared
        ]
        findings.append(
            FindingAgreement(
                code=code,
                n=len(shared),
                both_positive=sum(1 for x, y in cells if x and y),
                champion_only=sum(1 for x, y in cells if x and not y),
                challenger_only=sum(1 for x, y in cells if y and not x),
                both_negative=sum(1 for x, y in cells if not x and not y),
                mean_abs_difference=float(np.mean(np.abs(mine - theirs))) if len(shared) else math.nan,
                psi=SignalReference.from_sample(mine).psi(theirs) if len(shared) else math.nan,
            )
        )
    readers = tuple(r for r in (_accuracy(code, pairs) for code in codes) if r is not None)
    return Comparison(
        model=model,
        champion=champion,
        challenger=challenger,
        pairs=len(pairs),
        findings=tuple(findings),
        champion_ood_pass=Proportion(sum(1 for p in pairs if p.champion.assessable), len(pairs)),
        challenger_ood_pass=Proportion(sum(1 for p in pairs if p.challenger.assessable), len(pairs)),
        readers=readers,
        reader_verdicts=sum(len(p.truth) for p in pairs),
    )
