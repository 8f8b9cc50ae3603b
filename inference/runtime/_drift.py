"""Drift of a served model version: rolling score distributions against the version's validation reference.

Each imaging model carries in ``dxassist.drift_reference`` the distribution of its OOD score and of every
finding's calibrated probability on its validation images, as ten quantile bins (edges and the share of
validation images in each). In service, the last ``window`` results of a version are binned on the same
edges and compared with the population stability index,

    PSI = sum_b (a_b - e_b) * ln(a_b / e_b)

(``e`` the reference shares, ``a`` the served ones, both floored at 1e-4 so an empty bin stays finite).
By the usual reading, under 0.1 is stable, 0.1-0.25 a moderate shift and above 0.25 a significant
one. Quantile bins make every reference bin hold about a tenth of the validation images, so the index
reacts to a shift anywhere in the distribution, not only in the tails.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Gauge

logger = logging.getLogger(__name__)

OOD_SIGNAL = "ood"
"""Name of the OOD score among the drift signals; the others are ``p_<finding code>``."""

_FLOOR = 1e-4

DRIFT_PSI = Gauge(
    "dxassist_drift_psi",
    "Population stability index of a score over the rolling window vs the version's validation reference.",
    ["model", "version", "signal"],
    multiprocess_mode="livemax",  # with `serve --workers`: each worker's window, the worst shown
)
DRIFT_ALERT = Gauge(
    "dxassist_drift_alert",
    "1 while some signal's PSI is at or above the alert level (after the minimum observations), else 0.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
DRIFT_OBSERVATIONS = Gauge(
    "dxassist_drift_window_observations",
    "Results in the rolling drift window.",
    ["model", "version"],
    multiprocess_mode="livesum",
)


def probability_signal(code: str) -> str:
    """Drift signal name of a finding's calibrated probability."""
    return f"p_{code}"


@dataclass(frozen=True)
class SignalReference:
    """Quantile bins of one signal on the validation images: ``len(fractions) == len(edges) + 1``."""

    edges: tuple[float, ...]
    fractions: tuple[float, ...]

    def psi(self, values: Sequence[float] | np.ndarray) -> float:
        """PSI of ``values`` (non-finite values count in the top bin: beyond anything validated)."""
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return math.nan
        v = np.where(np.isfinite(v), v, np.inf)
        counts = np.bincount(np.searchsorted(self.edges, v, side="right"), minlength=len(self.fractions))
        actual = np.maximum(counts / v.size, _FLOOR)
        expected = np.maximum(np.asarray(self.fractions), _FLOOR)
        return float(np.sum((actual - expected) * np.log(actual / expected)))

    @classmethod
    def from_sample(cls, values: Sequence[float] | np.ndarray, bins: int = 10) -> SignalReference:
        """Quantile bins of a sample (e.g. the champion's scores, to measure a challenger's shift from them).

        Tied quantiles collapse into one edge, so a sample with few distinct values gets fewer bins.
        """
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(edges=(), fractions=(1.0,))
        edges = tuple(float(e) for e in np.unique(np.quantile(v, np.arange(1, bins) / bins)))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return cls(edges=edges, fractions=tuple(float(c) for c in counts / v.size))


@dataclass(frozen=True)
class DriftReference:
    """The validation reference of a model version: one :class:`SignalReference` per signal, and ``n``."""

    signals: Mapping[str, SignalReference]
    n: int

    @classmethod
    def from_metadata(cls, raw: object) -> DriftReference:
        """Parse ``dxassist.drift_reference``; ``ValueError`` names what is wrong."""
        if not isinstance(raw, dict) or not isinstance(raw.get("signals"), dict) or not raw["signals"]:
            raise ValueError("it must be a JSON object with 'signals' (name -> {edges, fractions}) and 'n'.")
        signals = {}
        for name, spec in raw["signals"].items():
            edges = tuple(float(e) for e in spec["edges"])
            fractions = tuple(float(f) for f in spec["fractions"])
            if len(fractions) != len(edges) + 1 or any(b < a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"signal '{name}' needs sorted edges and one more fraction than edges.")
            if not math.isclose(sum(fractions), 1.0, abs_tol=1e-3):
                raise ValueError(f"the fractions of signal '{name}' must sum to 1.")
            signals[str(name)] = SignalReference(edges=edges, fractions=fractions)
        return cls(signals=signals, n=int(raw.get("n", 0)))


@dataclass(frozen=True)
class DriftReport:
    """Drift of one model version now.

    Attributes:
        model: model name.
        version: model version.
        observations: results in the window.
        window: the window's capacity.
        psi: PSI per signal (NaN until there is an observation).
        alert_level: the configured PSI alert level.
        min_observations: results needed before an alert is raised.
        alert: some signal is at or above ``alert_level`` with at least ``min_observations`` results.
    """

    model: str
    version: str
    observations: int
    window: int
    psi: Mapping[str, float]
    alert_level: float
    min_observations: int
    alert: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (NaN as None)."""
        return {
            "model": self.model,
            "version": self.version,
            "observations": self.observations,
            "window": self.window,
            "alert_level": self.alert_level,
            "min_observations": self.min_observations,
            "alert": self.alert,
            "psi": {k: (None if math.isnan(v) else round(v, 6)) for k, v in self.psi.items()},
            "drifting": sorted(k for k, v in self.psi.items() if not math.isnan(v) and v >= self.alert_level),
        }


def compute_report(
    *,
    model: str,
    version: str,
    reference: DriftReference,
    labels: Sequence[str],
    rows: Iterable[tuple[float | None, Sequence[float]]],
    window: int,
    alert_level: float,
    min_observations: int,
) -> DriftReport:
    """Drift of ``rows`` (``(ood score or None, probabilities in label order)``, newest last)."""
    data = list(rows)[-window:] if window > 0 else []
    ood = [math.inf if s is None else float(s) for s, _ in data]
    probs = np.asarray([list(p) for _, p in data], dtype=np.float64).reshape(len(data), len(labels))
    psi: dict[str, float] = {}
    for name, ref in reference.signals.items():
        if name == OOD_SIGNAL:
            psi[name] = ref.psi(ood)
        elif name.startswith("p_") and name[2:] in labels:
            psi[name] = ref.psi(probs[:, list(labels).index(name[2:])])
    over = [name for name, v in psi.items() if not math.isnan(v) and v >= alert_level]
    alert = len(data) >= min_observations and bool(over)
    return DriftReport(
        model=model,
        version=version,
        observations=len(data),
        window=window,
        psi=psi,
        alert_level=alert_level,
        min_observations=min_observations,
        alert=alert,
    )


@dataclass
class _Window:
    rows: deque[tuple[float | None, tuple[float, ...]]]
    alert: bool = False
    last: DriftReport | None = None


class DriftMonitor:
    """Rolling drift windows per served model version, exported to Prometheus; logs alert transitions.

    Args:
        window: results kept per version.
        alert_level: PSI at or above which a signal drifts.
        min_observations: results needed before an alert can be raised.
    """

    def __init__(self, *, window: int = 500, alert_level: float = 0.25, min_observations: int = 50) -> None:
        self.window = window
        self.alert_level = alert_level
        self.min_observations = min_observations
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        *,
        model: str,
        version: str,
        reference: DriftReference | None,
        labels: Sequence[str],
        ood_score: float,
        probabilities: Sequence[float],
    ) -> DriftReport | None:
        """Add one result; return the version's report (None when the model carries no reference)."""
        if reference is None:
            return None
        score = float(ood_score) if math.isfinite(ood_score) else None
        with self._lock:
            w = self._windows.setdefault((model, version), _Window(rows=deque(maxlen=self.window)))
            w.rows.append((score, tuple(float(p) for p in probabilities)))
            report = compute_report(
                model=model,
                version=version,
                reference=reference,
                labels=labels,
                rows=w.rows,
                window=self.window,
                alert_level=self.alert_level,
                min_observations=self.min_observations,
            )
            changed = report.alert != w.alert
            w.alert, w.last = report.alert, report
        for signal, value in report.psi.items():
            DRIFT_PSI.labels(model, version, signal).set(value)
        DRIFT_ALERT.labels(model, version).set(1.0 if report.alert else 0.0)
        DRIFT_OBSERVATIONS.labels(model, version).set(report.observations)
        if changed:
            drifting = report.to_dict()["drifting"]
            worst = max(report.psi, key=lambda k: -1.0 if math.isnan(report.psi[k]) else report.psi[k])
            log = logger.warning if report.alert else logger.info
            log(
                "drift alert raised: %s version %s, signals %s over PSI %.2f"
                if report.alert
                else "drift alert cleared: %s version %s%s back under PSI %.2f",
                model,
                version,
                drifting if report.alert else "",
                self.alert_level,
                extra={
                    "event": "drift_alert" if report.alert else "drift_recovered",
                    "model": model,
                    "model_version": version,
                    "drift_signal": worst,
                    "drift_statistic": "psi",
                    "drift_value": round(report.psi[worst], 4),
                    "drift_level": self.alert_level,
                    "drift_window": report.observations,
                },
            )
        return report

    def reports(self) -> list[DriftReport]:
        """The latest report of every version observed by this process."""
        with self._lock:
            return [w.last for w in self._windows.values() if w.last is not None]
