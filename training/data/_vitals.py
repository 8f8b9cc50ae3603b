"""Synthetic ward vital signs grounded in physiology, deterministic under a seed.

Each simulated patient has a latent acute severity ``s`` (most patients mild, a tail severe) and a
few factors: age, chronic obstructive lung disease with hypercapnic failure (charted on NEWS2 SpO2
scale 2), a phenotype (sepsis, hypovolaemia, respiratory, other) and beta-blockade. Vital signs are
smooth nonlinear functions of ``s`` and those factors plus measurement noise, rounded as nurses chart
them (RR, HR, SBP, DBP and SpO2 to integers, temperature to one decimal), with missing entries more
frequent in busy records and in well-looking patients.

Deterioration within 24 h is drawn from ``sigmoid(f(s, age, phenotype))``. Because the vitals are
curved, noisy functions of ``s``, the best additive score is smooth where NEWS2 is stepwise, so a
learned additive model can beat NEWS2 honestly while NEWS2 stays a decent baseline.

The data are SYNTHETIC: they exercise the pipeline and the API; they say nothing about real patients.

Run ``python -m training.data._vitals --seed-file seeds/vitals.json`` to write the example requests.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inference.triage import (
    CONSCIOUSNESS_LEVELS,
    FEATURES,
    News2,
    VitalSigns,
    compute_news2,
)

logger = logging.getLogger(__name__)

_CONTINUOUS = ("respiratory_rate", "spo2", "systolic_bp", "diastolic_bp", "heart_rate", "temperature")


@dataclass
class VitalsTable:
    """Columns of vital signs, one row per observation.

    Attributes:
        columns: One float64 array per name in :data:`inference.triage.FEATURES`, NaN where missing,
            already encoded as the model sees it (``on_oxygen`` 0/1, ``consciousness`` A=0 … U=4).
        spo2_scale: NEWS2 SpO2 scale per row (1 or 2), int8.
        label: Deterioration within 24 h (0/1), int8.
        group: A number per patient so splits keep a patient's rows together (synthetic: row index).
        source: One line naming the data set.
        synthetic: Whether the rows are simulated.
        extra: Per-row ground truth the simulator knows and a model must not see (``severity``, ``risk``).
    """

    columns: dict[str, NDArray[np.float64]]
    spo2_scale: NDArray[np.int8]
    label: NDArray[np.int8]
    group: NDArray[np.int64]
    source: str = "synthetic"
    synthetic: bool = True
    extra: dict[str, NDArray[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [name for name in FEATURES if name not in self.columns]
        if missing:
            raise ValueError(f"A vitals table needs every feature column; missing: {', '.join(missing)}.")
        n = self.label.shape[0]
        for name, column in {**self.columns, "spo2_scale": self.spo2_scale, "group": self.group}.items():
            if column.shape != (n,):
                raise ValueError(
                    f"Column '{name}' has shape {column.shape}; every column must have {n} rows."
                )

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> VitalsTable:
        """The rows selected by an integer index or a boolean mask."""
        return VitalsTable(
            columns={k: v[index] for k, v in self.columns.items()},
            spo2_scale=self.spo2_scale[index],
            label=self.label[index],
            group=self.group[index],
            source=self.source,
            synthetic=self.synthetic,
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def arrays(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(values, present)``, float32 ``[N, F]`` in :data:`FEATURES` order, as the ONNX model takes.

        SpO2 charted on NEWS2 Scale 2 is not present, as the server does not give it to the model
        (:func:`inference.triage.model_inputs`): the model has no scale input, and the low target
        saturations of hypercapnic patients would teach it that hypoxaemia matters less for everyone.
        """
        stacked = np.stack([self.columns[name] for name in FEATURES], axis=1)
        present = ~np.isnan(stacked)
        present[:, FEATURES.index("spo2")] &= self.spo2_scale != 2
        values = np.where(present, stacked, 0.0)
        return values.astype(np.float32), present.astype(np.float32)

    def news2(self) -> list[News2]:
        """NEWS2 per row (the known part where a parameter is missing; see ``News2.complete``)."""
        return [compute_news2(to_vital_signs(self, i)) for i in range(len(self))]

    def news2_totals(self, *, known_part: bool = False) -> NDArray[np.float64]:
        """NEWS2 total per row; NaN where a sign is missing, unless ``known_part`` (then a lower bound)."""
        return np.array(
            [float(s.total) if s.complete or known_part else np.nan for s in self.news2()], dtype=np.float64
        )

    def masked(self, fraction: float, seed: int | tuple[int, ...]) -> VitalsTable:
        """A copy where each measured feature is independently dropped with probability ``fraction``.

        Dropping is missing completely at random, which is how the evaluation tests robustness to an
        unmeasured sign; ``spo2_scale`` and the labels are kept.
        """
        rng = np.random.default_rng(seed)
        columns = {}
        for name in FEATURES:
            column = self.columns[name].copy()
            column[rng.random(column.shape[0]) < fraction] = np.nan
            columns[name] = column
        return VitalsTable(
            columns=columns,
            spo2_scale=self.spo2_scale.copy(),
            label=self.label,
            group=self.group,
            source=self.source,
            synthetic=self.synthetic,
            extra=dict(self.extra),
        )


def to_vital_signs(table: VitalsTable, i: int) -> VitalSigns:
    """Row ``i`` of ``table`` as :class:`~inference.triage.VitalSigns` (NaN → not measured)."""

    def get(name: str) -> float | None:
        value = float(table.columns[name][i])
        return None if np.isnan(value) else value

    on_oxygen = get("on_oxygen")
    consciousness = get("consciousness")
    return VitalSigns(
        respiratory_rate=get("respiratory_rate"),
        spo2=get("spo2"),
        spo2_scale=int(table.spo2_scale[i]),
        on_oxygen=None if on_oxygen is None else bool(on_oxygen >= 0.5),
        systolic_bp=get("systolic_bp"),
        diastolic_bp=get("diastolic_bp"),
        heart_rate=get("heart_rate"),
        temperature=get("temperature"),
        consciousness=None if consciousness is None else CONSCIOUSNESS_LEVELS[int(consciousness)],
    )


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def generate_vitals(n: int, seed: int | Sequence[int]) -> VitalsTable:
    """Simulate ``n`` ward observations; the same ``(n, seed)`` always gives the same table.

    Args:
        n: Number of rows (one observation per simulated patient).
        seed: Seed of numpy's PCG64 generator; a sequence of ints (e.g. ``(seed, stream)``) gives
            independent streams for training, validation and test.

    Returns:
        A :class:`VitalsTable` with deterioration prevalence around 12 %.
    """
    if n < 1:
        raise ValueError(f"The number of rows must be at least 1; got {n}.")
    rng = np.random.default_rng(seed)

    # --- patient factors -------------------------------------------------------------------
    age = np.clip(rng.normal(64.0, 17.0, n), 18.0, 100.0)
    # Hypercapnic COPD is charted on SpO2 scale 2; commoner with age.
    copd = rng.random(n) < _sigmoid(-3.2 + 0.04 * (age - 65.0))
    phenotype = rng.choice(4, size=n, p=[0.22, 0.10, 0.23, 0.45])  # sepsis, hypovolaemia, respiratory, other
    sepsis, hypovol, resp = phenotype == 0, phenotype == 1, phenotype == 2
    beta_blocker = rng.random(n) < _sigmoid(-2.2 + 0.05 * (age - 65.0))
    # Chronic confusion (dementia) is often charted as "C" although it is not new: NEWS2 scores it 3,
    # yet it says little about the next 24 h.
    elderly_delirium = rng.random(n) < _sigmoid(-1.6 + 0.10 * (age - 80.0))
    hypertensive = rng.random(n) < _sigmoid(-1.0 + 0.04 * (age - 64.0))
    # Pain, anxiety or rate-controlled atrial fibrillation raise the pulse without acute illness.
    other_tachycardia = rng.random(n) < 0.18

    # --- latent acute severity: a mild majority and a severe tail --------------------------------
    severe = rng.random(n) < 0.18
    s = np.where(severe, rng.gamma(4.0, 0.55, n), rng.gamma(1.3, 0.35, n))
    s = s * (1.0 + 0.004 * (age - 64.0))  # older patients decompensate further

    # --- vital signs as curved functions of s and phenotype, plus measurement noise ------------------
    rr = 15.0 + 2.6 * s**1.35 * (1.0 + 0.6 * resp + 0.3 * sepsis) + 2.0 * copd + rng.normal(0.0, 2.0, n)

    spo2_base = np.where(copd, 90.0, 97.4 - 0.02 * (age - 64.0))
    spo2_raw = spo2_base - 1.6 * s**1.5 * (1.0 + 1.5 * resp + 0.3 * copd) + rng.normal(0.0, 1.3, n)
    # Oxygen is started when saturation is below target, with some slack and some patients already on it.
    target_low = np.where(copd, 88.0, 94.0)
    on_oxygen = (spo2_raw < target_low - rng.exponential(1.5, n)) | (rng.random(n) < 0.08 + 0.03 * s)
    # Oxygen lifts saturation towards (and in COPD often above) the target, less so when lungs are worse.
    lift = np.where(
        on_oxygen, np.clip(target_low + 3.0 - spo2_raw, 0.0, None) * rng.uniform(0.4, 1.0, n), 0.0
    )
    lift = lift + np.where(on_oxygen & copd, rng.exponential(2.5, n), 0.0)
    spo2 = np.minimum(spo2_raw + lift, 100.0)

    # Stress raises pressure a little at moderate severity; shock drops it at high severity.
    shock = s**1.6 * (2.5 + 9.0 * hypovol + 6.0 * sepsis)
    sbp = (
        118.0
        + 0.25 * (age - 64.0)
        + 24.0 * hypertensive
        + 10.0 * s * np.exp(-s / 1.2)
        - shock
        + rng.normal(0.0, 14.0, n)
    )
    # Sepsis dilates vessels: diastolic falls more than systolic.
    dbp = 0.55 * sbp + 8.0 - sepsis * (10.0 + 6.0 * s) + rng.normal(0.0, 6.0, n)

    hr_rise = 4.5 * s**1.2 * (1.0 + 0.8 * sepsis + 1.5 * hypovol)
    hr_rise = np.where(beta_blocker, 0.45 * hr_rise, hr_rise)
    fever = np.where(
        sepsis,
        2.0 * np.tanh(0.9 * s) - 1.2 * np.clip(s - 2.3, 0.0, None) ** 1.3 * (rng.random(n) < 0.4),
        0.25 * np.tanh(s),
    )
    # A benign fever (post-operative, viral) scores on NEWS2 without predicting deterioration.
    benign_fever = (phenotype == 3) & (rng.random(n) < 0.25)
    temp = 36.8 + fever + benign_fever * rng.normal(1.3, 0.4, n) + rng.normal(0.0, 0.3, n)
    hr = (
        76.0
        - 6.0 * beta_blocker
        + hr_rise
        + other_tachycardia * rng.normal(30.0, 12.0, n)
        + 8.0 * np.clip(temp - 37.0, 0.0, None)
        + rng.normal(0.0, 11.0, n)
    )

    # ACVPU: confusion first, then voice, pain, unresponsive as severity climbs.
    depth = s - 3.0 + 0.02 * (age - 70.0) + rng.normal(0.0, 0.6, n)
    acvpu = np.select([depth > 2.2, depth > 1.5, depth > 0.9, depth > 0.0], [4, 3, 2, 1], default=0).astype(
        float
    )
    acvpu = np.where((acvpu == 0) & elderly_delirium, 1.0, acvpu)

    # --- rounding and plausible limits, as charted -----------------------------------------------
    rr = np.clip(np.round(rr), 4, 60)
    spo2 = np.clip(np.round(spo2), 60, 100)
    sbp = np.clip(np.round(sbp), 50, 240)
    dbp = np.clip(np.round(dbp), 20, None)
    dbp = np.minimum(dbp, sbp - 10)
    hr = np.clip(np.round(hr), 25, 220)
    temp = np.clip(np.round(temp, 1), 32.0, 42.0)

    # --- outcome: deterioration within 24 h ------------------------------------------------------
    # Smooth in s, steeper once s passes the shock range; age and sepsis add risk the vitals miss;
    # COPD patients look worse on SpO2 than their risk warrants (hence scale 2).
    logit = (
        -4.3
        + 1.5 * s
        + 0.3 * np.clip(s - 2.0, 0.0, None) ** 1.5
        + 0.03 * (age - 64.0)
        + 1.2 * sepsis
        + 0.2 * hypovol
        - 0.4 * resp
        - 0.3 * copd
    )
    label = (rng.random(n) < _sigmoid(logit)).astype(np.int8)

    # --- missingness: busier records miss more; well-looking patients get fewer observations ---------
    busy = rng.random(n) < 0.3
    scale = np.where(busy, 2.0, 0.7) * np.exp(-0.25 * s)
    rates = {
        "respiratory_rate": 0.04,
        "spo2": 0.02,
        "on_oxygen": 0.04,
        "systolic_bp": 0.02,
        "diastolic_bp": 0.08,
        "heart_rate": 0.015,
        "temperature": 0.10,
        "consciousness": 0.05,
    }
    columns: dict[str, NDArray[np.float64]] = {
        "respiratory_rate": rr,
        "spo2": spo2,
        "on_oxygen": on_oxygen.astype(np.float64),
        "systolic_bp": sbp,
        "diastolic_bp": dbp,
        "heart_rate": hr,
        "temperature": temp,
        "consciousness": acvpu,
    }
    for name in FEATURES:
        drop = rng.random(n) < np.clip(rates[name] * scale, 0.0, 0.9)
        columns[name] = np.where(drop, np.nan, columns[name]).astype(np.float64)
    # A saturation without its scale is charted on scale 1; without oxygen status it is still a reading.
    spo2_scale = np.where(copd & (rng.random(n) < 0.85), 2, 1).astype(np.int8)

    return VitalsTable(
        columns=columns,
        spo2_scale=spo2_scale,
        label=label,
        group=np.arange(n, dtype=np.int64),
        source=f"SYNTHETIC ward vital signs (training.data._vitals, n={n}, seed={seed})",
        synthetic=True,
        extra={"severity": s, "risk": _sigmoid(logit)},
    )


# --- example requests for seeds/vitals.json ---------------------------------------------------------

_SEED_WANTED = (("low", 3), ("low-medium", 2), ("medium", 2), ("high", 2), ("missing", 2))


def example_requests(seed: int = 2026) -> list[dict[str, Any]]:
    """Eleven example ``POST /v1/vitals`` bodies with obviously fake patients.

    Three low, two low-medium, two medium and two high NEWS2 bands, and two with missing fields
    (NEWS2 not computable). Deterministic under ``seed``.
    """
    table = generate_vitals(4000, seed)
    chosen: list[tuple[str, int]] = []
    counts = dict.fromkeys((k for k, _ in _SEED_WANTED), 0)
    wanted = dict(_SEED_WANTED)
    for i in range(len(table)):
        score = compute_news2(to_vital_signs(table, i))
        kind = "missing" if not score.complete else score.band
        if counts[kind] < wanted[kind]:
            counts[kind] += 1
            chosen.append((kind, i))
        if counts == wanted:
            break
    order = {k: j for j, (k, _) in enumerate(_SEED_WANTED)}
    chosen.sort(key=lambda item: (order[item[0]], item[1]))
    requests = []
    for k, (_, i) in enumerate(chosen, start=1):
        v = to_vital_signs(table, i)
        body: dict[str, Any] = {
            "patient": {
                "identifier": f"IPP-SYN-{k:06d}",
                "name": f"SYNTHETIC Testpatient {k:02d}",
                "birth_date": f"19{40 + 3 * k:02d}-0{1 + k % 9}-1{k % 10}",
                "sex": "female" if k % 2 else "male",
            },
            "observed_at": f"2026-11-22T{8 + k // 6:02d}:{(k * 5) % 60:02d}:00Z",
        }
        for name, value in v.as_dict().items():
            if value is None:
                continue  # a missing field is left out of the request, as clients do
            if isinstance(value, float) and name != "temperature":
                value = int(value)
            body[name] = value
        requests.append(body)
    return requests


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--seed-file PATH`` writes :func:`example_requests` as JSON."""
    parser = argparse.ArgumentParser(description="Synthetic vital signs (SYNTHETIC data, not real patients).")
    parser.add_argument("--seed-file", type=Path, required=True, help="where to write the example requests")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    requests = example_requests(args.seed)
    args.seed_file.parent.mkdir(parents=True, exist_ok=True)
    args.seed_file.write_text(json.dumps(requests, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("Wrote %d example vital-sign requests to %s.", len(requests), args.seed_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
