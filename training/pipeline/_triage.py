"""``train_triage``: data → split → train → calibrate → evaluate against NEWS2 → ONNX export → model card.

The validation set depends only on the profile (synthetic: a fixed seed and size; MIMIC-IV-ED: a fixed
hash of the patient), never on ``cfg.seed``, so the promotion gate compares every run of a profile on
the same observations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inference.triage import FEATURES, REFERENCE
from training.data._vitals import VitalsTable
from training.pipeline._outcome import TrainingOutcome
from training.pipeline._profiles import ConfigError, config_record, resolve_config

logger = logging.getLogger(__name__)

MODEL_NAME = "vitals-triage"
ONNX_FILE = "vitals-triage.onnx"
DATASETS = ("synthetic", "mimic-iv-ed")

# Fixed streams for the synthetic validation and test sets: the same rows for every run of a profile.
VALIDATION_SEED = 20261122
TEST_SEED = 20261123
MASK_SEED = 20261124


@dataclass
class TriageConfig:
    """Everything that decides how ``vitals-triage`` is trained, evaluated and exported.

    Attributes:
        profile: The preset these values started from (``tiny``, ``quick`` or ``full``).
        dataset: ``synthetic`` (generated) or ``mimic-iv-ed`` (needs ``data``).
        data: Folder with ``triage.csv`` and ``outcome.csv`` for ``mimic-iv-ed``; ignored for ``synthetic``.
        seed: Seeds the synthetic training rows, initialisation and shuffling (not validation or test).
        out_dir: Where the ONNX file, plots, metrics and model card are written.
        n_train: Synthetic training rows.
        n_val: Synthetic validation rows (part of the profile: changing it changes the validation set).
        n_test: Synthetic test rows.
        hidden: Width of each feature's subnetwork.
        epochs: Training epochs.
        batch_size: Rows per optimisation step.
        lr: Peak AdamW learning rate (cosine-annealed).
        weight_decay: AdamW weight decay.
        sensitivity_target: Sensitivity the operating threshold reaches on validation.
        mask_rate: Probability with which training hides each measured sign at each step, so the risk
            stays calibrated when signs are missing.
        eval_mask_rate: Fraction of signs hidden at random in the second test evaluation ("with randomly
            missing signs", reported beside NEWS2's known part on the same rows).
        n_boot: Bootstrap resamples for the confidence intervals.
        threads: torch intra-op threads.
        progress: Show tqdm progress bars (``None``: only on a terminal).
    """

    profile: str = "quick"
    dataset: str = "synthetic"
    data: Path | None = None
    seed: int = 0
    out_dir: Path = Path("var/runs/vitals-triage")
    n_train: int = 50_000
    n_val: int = 5_000
    n_test: int = 10_000
    hidden: int = 16
    epochs: int = 12
    batch_size: int = 256
    lr: float = 1e-2
    weight_decay: float = 1e-4
    sensitivity_target: float = 0.8
    mask_rate: float = 0.1
    eval_mask_rate: float = 0.3
    n_boot: int = 1000
    threads: int = 1
    progress: bool | None = None

    def __post_init__(self) -> None:
        # Coerce what YAML and flags deliver (strings) into the declared types.
        self.out_dir = Path(self.out_dir)
        self.data = Path(self.data) if self.data is not None else None
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"Unknown triage dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}."
            )
        if self.dataset != "synthetic" and self.data is None:
            raise ConfigError(
                f"Dataset {self.dataset!r} needs a data path (--data); only 'synthetic' is generated."
            )
        if (
            min(
                self.n_train, self.n_val, self.n_test, self.epochs, self.batch_size, self.hidden, self.threads
            )
            < 1
        ):
            raise ConfigError(
                "n_train, n_val, n_test, epochs, batch_size, hidden and threads must be positive."
            )
        if not (0.0 <= self.mask_rate < 1.0 and 0.0 < self.eval_mask_rate < 1.0):
            raise ConfigError(
                f"mask_rate must lie in [0, 1) and eval_mask_rate in (0, 1); got {self.mask_rate} and "
                f"{self.eval_mask_rate}."
            )
        if not 0.0 < self.sensitivity_target < 1.0:
            raise ConfigError(
                f"sensitivity_target must lie strictly between 0 and 1; got {self.sensitivity_target}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as flat JSON-ready values (paths as strings)."""
        return {
            f.name: (str(v) if isinstance(v, Path) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    def to_record(self) -> dict[str, Any]:
        """The config as it travels with the model: see :func:`config_record`."""
        return config_record(self.to_dict())

    @classmethod
    def from_profile(
        cls, profile: str = "quick", *, yaml_path: Path | None = None, **overrides: Any
    ) -> TriageConfig:
        """Resolve a config: defaults < ``profile`` preset < YAML file < ``overrides``.

        ``None`` overrides are ignored, so unset command-line flags keep the preset's value.
        """
        return resolve_config(cls, "triage", TRIAGE_PROFILES, profile, yaml_path, overrides)


# ``tiny`` is for tests (seconds); ``quick`` is what `dxassist bootstrap` trains (well under a minute on
# 2 CPU cores); ``full`` trades time for tighter confidence intervals and smoother shape functions.
TRIAGE_PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {"n_train": 4_000, "n_val": 2_000, "n_test": 3_000, "epochs": 3, "n_boot": 200},
    "quick": {},
    "full": {
        "n_train": 100_000,
        "n_val": 20_000,
        "n_test": 40_000,
        "hidden": 32,
        "epochs": 20,
        "n_boot": 2_000,
    },
}


def _bucket(group: NDArray[np.int64]) -> NDArray[np.int64]:
    """A stable 0–99 bucket per patient, independent of row order, seed and Python's hash salt."""
    unique, inverse = np.unique(group, return_inverse=True)
    buckets = np.array(
        [
            int.from_bytes(hashlib.blake2b(str(int(g)).encode(), digest_size=8).digest(), "big") % 100
            for g in unique
        ],
        dtype=np.int64,
    )
    return buckets[inverse]


def load_splits(cfg: TriageConfig) -> tuple[VitalsTable, VitalsTable, VitalsTable]:
    """Training, validation and test tables for ``cfg`` (deterministic).

    Synthetic: three independent streams; validation and test use fixed seeds. MIMIC-IV-ED: 70/15/15 by
    a hash of ``subject_id``, so a patient's stays never straddle two splits.
    """
    from training.data._vitals import generate_vitals

    if cfg.dataset == "synthetic":
        return (
            generate_vitals(cfg.n_train, (cfg.seed, 0)),
            generate_vitals(cfg.n_val, (VALIDATION_SEED, 1)),
            generate_vitals(cfg.n_test, (TEST_SEED, 2)),
        )
    from training.data._mimic import load_mimic_ed_dir

    assert cfg.data is not None  # TriageConfig refuses a non-synthetic dataset without a path
    table = load_mimic_ed_dir(cfg.data)
    bucket = _bucket(table.group)
    return table.take(bucket < 70), table.take((bucket >= 70) & (bucket < 85)), table.take(bucket >= 85)


def training_data_line(cfg: TriageConfig, train: VitalsTable) -> str:
    """One line naming the training data (``dxassist.training_data``).

    Servers show it to every user (``GET /v1/models``, each result's warnings), so it names the data set,
    never the folder it was read from on the training machine (``dxassist.config`` keeps only its name).
    """
    if cfg.dataset == "synthetic":
        return (
            f"SYNTHETIC ward vital signs generated by dxassist training.data "
            f"(n={len(train)}, seed={cfg.seed}); "
            "no real patient data"
        )
    return f"{train.source}, training split (n={len(train)})"


def _ci(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key, math.nan)
    lo = metrics.get(f"{key}_ci_low", math.nan)
    hi = metrics.get(f"{key}_ci_high", math.nan)
    return f"{_fmt(value)} ({_fmt(lo)}–{_fmt(hi)})"


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _evaluate(
    cfg: TriageConfig,
    *,
    val_logit: NDArray[np.float32],
    y_val: NDArray[np.int8],
    test_logit: NDArray[np.float32],
    y_test: NDArray[np.int8],
    news2_test: NDArray[np.float64],
) -> tuple[dict[str, float], NDArray[np.float64]]:
    """Calibrate and pick the threshold on validation; report on test, next to NEWS2 on the same rows."""
    from training.evaluate import (
        auroc,
        binary_report,
        bootstrap_auroc_ci,
        expected_calibration_error,
        fit_temperature,
        sigmoid,
        threshold_for_sensitivity,
    )

    temperature = fit_temperature(val_logit, y_val)
    p_val = sigmoid(val_logit / temperature)
    p_test = sigmoid(test_logit / temperature)
    # A triage assist prefers a second look over a missed deterioration: the threshold is the highest one
    # reaching the target sensitivity on validation.
    threshold = threshold_for_sensitivity(y_val, p_val, cfg.sensitivity_target)
    # n_boot=0: the report's own bootstrap is slow; the same interval comes from the vectorised one below.
    report = binary_report(y_test, p_test, threshold, n_boot=0, seed=cfg.seed)
    metrics: dict[str, float] = {
        "val_auroc": auroc(y_val, val_logit),
        "val_n": float(len(y_val)),
        "val_prevalence": float(np.mean(y_val)),
        "temperature": float(temperature),
        "threshold": float(threshold),
        **{k: v for k, v in report.as_metrics("test_").items() if k != "test_threshold"},
        "test_ece_uncalibrated": expected_calibration_error(y_test, sigmoid(test_logit)),
    }
    metrics["test_auroc_ci_low"], metrics["test_auroc_ci_high"] = bootstrap_auroc_ci(
        y_test, p_test, n_boot=cfg.n_boot, seed=cfg.seed
    )
    subset = ~np.isnan(news2_test)
    metrics["test_news2_n"] = float(subset.sum())
    y_sub = y_test[subset]
    if subset.any() and 0 < y_sub.sum() < y_sub.size:
        for key, scores in (
            ("test_news2_auroc", news2_test[subset]),
            ("test_auroc_news2_subset", p_test[subset]),
        ):
            metrics[key] = auroc(y_sub, scores)
            metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = bootstrap_auroc_ci(
                y_sub, scores, n_boot=cfg.n_boot, seed=cfg.seed
            )
        # NEWS2 >= 5 is the RCP trigger for an urgent clinical review: the usual operating point to beat.
        trigger = news2_test[subset] >= 5
        metrics["test_news2_ge5_sensitivity"] = float(
            (trigger & (y_sub == 1)).sum() / max(int(y_sub.sum()), 1)
        )
        metrics["test_news2_ge5_specificity"] = float(
            (~trigger & (y_sub == 0)).sum() / max(int((1 - y_sub).sum()), 1)
        )
    else:
        logger.warning(
            "NEWS2 cannot be compared on this test split: too few rows have every NEWS2 parameter."
        )
    return metrics, p_test


def _evaluate_masked(
    cfg: TriageConfig,
    *,
    logit: NDArray[np.float32],
    y: NDArray[np.int8],
    news2_known: NDArray[np.float64],
    temperature: float,
    threshold: float,
) -> dict[str, float]:
    """The test split with signs hidden at random: the model beside NEWS2's known part on the same rows."""
    from training.evaluate import auroc, bootstrap_auroc_ci, expected_calibration_error, sigmoid

    prob = sigmoid(logit / temperature)
    metrics: dict[str, float] = {"test_masked_rate": cfg.eval_mask_rate}
    for key, scores in (("test_masked_auroc", prob), ("test_masked_news2_auroc", news2_known)):
        metrics[key] = auroc(y, scores)
        metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = bootstrap_auroc_ci(
            y, scores, n_boot=cfg.n_boot, seed=cfg.seed
        )
    metrics["test_masked_ece"] = expected_calibration_error(y, prob)
    positive = prob >= threshold
    metrics["test_masked_sensitivity"] = float((positive & (y == 1)).sum() / max(int(y.sum()), 1))
    metrics["test_masked_specificity"] = float((~positive & (y == 0)).sum() / max(int((1 - y).sum()), 1))
    return metrics


def _plot_shapes(check: Any, reference: dict[str, float], path: Path) -> Path:
    """Each sign's contribution (logit units) over its accepted range, read from the exported ONNX."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.models._triage import CATEGORICAL_LEVELS

    fig, axes = plt.subplots(2, 4, figsize=(12, 5.5), dpi=100)
    for name, ax in zip(FEATURES, axes.ravel(), strict=True):
        grid, shape = check.grids[name]
        if name in CATEGORICAL_LEVELS:
            ticks = ["air", "O2"] if name == "on_oxygen" else ["A", "C", "V", "P", "U"]
            ax.bar(ticks, shape)
        else:
            ax.plot(grid, shape)
            ax.axvline(reference[name], color="grey", linestyle=":", linewidth=1, label="normal point")
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_title(f"{name} (drop {check.per_feature[name]:.1e})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(
        "vitals-triage: contribution to the logit per sign (0 at the normal point and when not measured)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def triage_metadata(
    cfg: TriageConfig,
    *,
    intercept: float,
    threshold: float,
    temperature: float,
    training_data: str,
    reference: dict[str, float],
) -> dict[str, str]:
    """The ``metadata_props`` of the ``vitals-triage`` ONNX file (docs/internals.md, "ONNX artifacts"),
    written by the server's own artifact module so export and loader agree on every key.
    """
    from inference.runtime import triage_metadata as artifact_metadata

    return artifact_metadata(
        model_name=MODEL_NAME,
        features=FEATURES,
        intercept=intercept,
        reference=reference,
        threshold=threshold,
        temperature=temperature,
        synthetic=cfg.dataset == "synthetic",
        training_data=training_data,
        config=cfg.to_record(),
    )


def _model_card(
    cfg: TriageConfig,
    *,
    metrics: dict[str, float],
    training_data: str,
    split_sizes: tuple[int, int, int],
    importance: dict[str, float],
    sha256: str,
) -> str:
    synthetic = cfg.dataset == "synthetic"
    n_train, n_val, n_test = split_sizes
    data_section = (
        "**SYNTHETIC DATA.** The model was trained and evaluated on simulated ward observations "
        "(`training.data._vitals`: a latent severity, patient factors such as age, COPD, sepsis, "
        "hypovolaemia and beta-blockade, nonlinear physiology, charting noise and missing values). "
        "No real patient record was used. **The figures below describe the simulator, not real patients**; "
        "every result this model produces carries a warning saying so."
        if synthetic
        else f"{training_data}. The outcome definition is the one in the outcome file supplied with the "
        "data; "
        "check the data set's documentation and licence before drawing conclusions."
    )
    rows = "\n".join(f"| {name} | {importance[name]:.3f} |" for name in FEATURES)
    news2_n = int(metrics.get("test_news2_n", 0))
    news2_section = (
        f"On the {news2_n} test observations where NEWS2 is computable (every NEWS2 parameter measured):\n\n"
        f"| score | AUROC (95% bootstrap CI) |\n|---|---|\n"
        f"| vitals-triage | {_ci(metrics, 'test_auroc_news2_subset')} |\n"
        f"| NEWS2 (RCP 2017) total | {_ci(metrics, 'test_news2_auroc')} |\n\n"
        f"NEWS2 >= 5 (urgent review trigger): sensitivity "
        f"{_fmt(metrics.get('test_news2_ge5_sensitivity', math.nan))}, "
        f"specificity {_fmt(metrics.get('test_news2_ge5_specificity', math.nan))}."
        if "test_news2_auroc" in metrics
        else "NEWS2 could not be computed on this test split (a NEWS2 parameter such as oxygen or "
        "consciousness is not recorded), so no comparison is reported."
    )
    return f"""# Model card: `{MODEL_NAME}`

ONNX sha256 `{sha256}`.

## Intended use
Decision support for ward and emergency staff: from one set of vital signs (respiratory rate, SpO2,
oxygen, blood pressure, pulse, temperature, ACVPU) the model estimates the probability of clinical
deterioration within 24 hours and shows how much each vital sign moved that estimate. It is shown next
to NEWS2 (RCP 2017), which stays the reference escalation tool. It is **not** a diagnostic device and
must not be used on its own to diagnose, to withhold escalation or to decide treatment; clinical
judgement and local escalation policy come first.

## Data
{data_section}

- Training data: {training_data}.
- Split: {n_train} training, {n_val} validation, {n_test} test observations. The validation set is the
  same for every run of the `{cfg.profile}` profile (the promotion gate compares `val_auroc` on it).
- Test prevalence of deterioration: {_fmt(metrics["test_prevalence"])}.

## Model
A neural additive model: one small network per vital sign (raw units in, contribution in logit units
out) and `logit = intercept + sum(contributions)`, computed in the exported graph. Each sign has a
normal point (`dxassist.reference`: {", ".join(f"{k} {v:g}" for k, v in REFERENCE.items())}) where its
contribution is 0; a sign that was not measured contributes exactly 0, so the intercept is the logit of a
patient whose signs are all normal or unmeasured, and a contribution reads as "how much this value moves
the risk compared with a normal value". Training hid each measured sign at random with probability
{cfg.mask_rate:g} at every step, so the risk stays calibrated when signs are missing.

**Plausible per-sign effects.** Each sign's function is monotone on each side of its normal point by
construction (non-negative weights on increasing units): moving further from normal never lowers the
risk. Checked on the exported ONNX over each sign's whole accepted range: largest drop
{metrics.get("shape_monotonicity_violation", math.nan):.1e} logit units (the promotion gate refuses more
than 1e-5); largest contribution of an unmeasured sign {metrics.get("missing_contribution_max", math.nan):g}.
Shape functions: `shapes.png`.

Mean absolute contribution on the test split (logit units):

| feature | mean abs contribution |
|---|---|
{rows}

## Performance on the held-out test split
AUROC **{_ci(metrics, "test_auroc")}** over all {n_test} test observations, missing values included
(validation AUROC {_fmt(metrics["val_auroc"])}, best epoch {int(metrics["best_epoch"])} of {cfg.epochs}).

{news2_section}

With signs missing at random ({_fmt(metrics.get("test_masked_rate", math.nan), 2)} of the signs of every
test row hidden, all {n_test} rows), beside the known part of NEWS2 (a lower bound) on the same rows:

| score | AUROC (95% bootstrap CI) |
|---|---|
| vitals-triage | {_ci(metrics, "test_masked_auroc")} |
| NEWS2 known part | {_ci(metrics, "test_masked_news2_auroc")} |

Expected calibration error with missing signs: {_fmt(metrics.get("test_masked_ece", math.nan))};
sensitivity {_fmt(metrics.get("test_masked_sensitivity", math.nan))}, specificity
{_fmt(metrics.get("test_masked_specificity", math.nan))} at the same threshold.

Confidence intervals: percentile bootstrap over test observations ({cfg.n_boot} resamples). ROC curves:
`roc.png`.

## Operating point
Threshold {_fmt(metrics["threshold"])} on the calibrated probability, the highest reaching a sensitivity
of {cfg.sensitivity_target:.2f} on the validation set. On test: sensitivity {
        _fmt(metrics["test_sensitivity"])
    },
specificity {_fmt(metrics["test_specificity"])}.

## Calibration
Temperature T = {_fmt(metrics["temperature"])} fitted on validation (probability = sigmoid(logit / T)).
Expected calibration error on test: {_fmt(metrics["test_ece"])} ({_fmt(metrics["test_ece_uncalibrated"])}
before scaling). Reliability diagram: `calibration.png`.

## Limits
- {
        "Trained on simulated data only: real physiology, charting habits, case mix and outcome definitions "
        "differ, and the model has never seen a real patient."
        if synthetic
        else "Performance depends on the population, setting and outcome definition; re-validate locally."
    }
- One observation at a time: history, diagnoses, medication and age are not inputs (the server reports
  a patient's trend beside the result, from the stored series, not through the model).
- Adults only; pregnancy, paediatrics and end-of-life care are out of scope, as for NEWS2.
- Additive by design: interactions between vital signs are not modelled, which keeps every contribution
  readable but limits what the model can express.
- Prevalence shifts change positive predictive values; the threshold was set on the validation set.

## Training configuration
```json
{json.dumps(cfg.to_record(), indent=2, sort_keys=True)}
```
"""


def train_triage(cfg: TriageConfig) -> TrainingOutcome:
    """Train, evaluate and export ``vitals-triage``; write every artifact into ``cfg.out_dir``.

    Args:
        cfg: The resolved configuration (see :meth:`TriageConfig.from_profile`).

    Returns:
        A :class:`TrainingOutcome` with the ONNX path, metrics (``val_auroc``; ``test_auroc`` with
        ``_ci_low``/``_ci_high``, ``test_sensitivity``, ``test_specificity``, ``test_ece``; on the rows
        where NEWS2 is computable, their count ``test_news2_n``, ``test_news2_auroc`` and
        ``test_auroc_news2_subset``), plots, the model card and the parity result.
    """
    import torch

    from training.evaluate import check_shapes, plot_calibration, plot_roc, sigmoid
    from training.export import export_onnx
    from training.loops import fit_triage, predict_triage, torch_threads
    from training.models._triage import AdditiveTriage

    started = time.perf_counter()
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(cfg.threads):
        # 1-2. data and deterministic split
        train, val, test = load_splits(cfg)
        logger.info(
            "Triage data: %d train, %d validation, %d test observations.", len(train), len(val), len(test)
        )
        for name, table in (("training", train), ("validation", val), ("test", test)):
            if len(table) == 0 or table.label.min() == table.label.max():
                raise ValueError(f"The {name} split needs both outcomes; it has {len(table)} rows.")
        v_train, p_train = train.arrays()
        v_val, p_val = val.arrays()
        v_test, p_test = test.arrays()

        # 3. train
        torch.manual_seed(cfg.seed)
        std = AdditiveTriage.standardisation(v_train, p_train)
        model = AdditiveTriage(std=std, hidden=cfg.hidden)
        with torch.no_grad():
            # Start at the training prevalence, so early epochs learn shapes rather than the base rate.
            prevalence = float(np.clip(train.label.mean(), 1e-3, 1 - 1e-3))
            model.intercept.fill_(math.log(prevalence / (1 - prevalence)))
        fit = fit_triage(
            model,
            (v_train, p_train, train.label),
            (v_val, p_val, val.label),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            mask_rate=cfg.mask_rate,
            progress=cfg.progress,
        )

        # 4-5. calibrate on validation, evaluate on test against NEWS2 on the same rows
        val_logit, _ = predict_triage(model, v_val, p_val)
        test_logit, test_contrib = predict_triage(model, v_test, p_test)
        news2_test = test.news2_totals()
        metrics, prob_test = _evaluate(
            cfg,
            val_logit=val_logit,
            y_val=val.label,
            test_logit=test_logit,
            y_test=test.label,
            news2_test=news2_test,
        )
        metrics["best_epoch"] = float(fit.best_epoch)
        masked = test.masked(cfg.eval_mask_rate, (MASK_SEED, 0))
        v_masked, p_masked = masked.arrays()
        masked_logit, _ = predict_triage(model, v_masked, p_masked)
        metrics.update(
            _evaluate_masked(
                cfg,
                logit=masked_logit,
                y=masked.label,
                news2_known=masked.news2_totals(known_part=True),
                temperature=metrics["temperature"],
                threshold=metrics["threshold"],
            )
        )
        importance = {name: float(np.abs(test_contrib[:, j]).mean()) for j, name in enumerate(FEATURES)}

        # 6. plots
        subset = ~np.isnan(news2_test)
        curves: dict[str, tuple[Any, Any]] = {f"{MODEL_NAME} (all test rows)": (test.label, prob_test)}
        if "test_news2_auroc" in metrics:
            curves[f"{MODEL_NAME} (NEWS2-computable rows)"] = (test.label[subset], prob_test[subset])
            curves["NEWS2 total (same rows)"] = (test.label[subset], news2_test[subset])
        roc_path = plot_roc(curves, out_dir / "roc.png", title="vitals-triage vs NEWS2 (test split)")
        calibration_path = plot_calibration(
            {"calibrated": (test.label, prob_test), "before scaling": (test.label, sigmoid(test_logit))},
            out_dir / "calibration.png",
            title="vitals-triage calibration (test split)",
        )
        # 7. export
        intercept = float(model.intercept.detach())
        data_line = training_data_line(cfg, train)
        example = slice(0, min(256, len(test)))
        report = export_onnx(
            model,
            {"values": v_test[example], "present": p_test[example]},
            ["logit", "contributions"],
            out_dir / ONNX_FILE,
            metadata=triage_metadata(
                cfg,
                intercept=intercept,
                threshold=metrics["threshold"],
                temperature=metrics["temperature"],
                training_data=data_line,
                reference=model.reference_values(),
            ),
            parity_outputs=["logit", "contributions"],
        )
        metrics["parity_max_abs_diff"] = report.parity_max_abs_diff
        # 7b. plausibility of the exported shapes (the promotion gate reads this figure)
        shapes = check_shapes(report.path)
        metrics["shape_monotonicity_violation"] = shapes.violation
        metrics["missing_contribution_max"] = shapes.missing_contribution
        shapes_path = _plot_shapes(shapes, model.reference_values(), out_dir / "shapes.png")
        metrics["seconds_total"] = time.perf_counter() - started

        # 8. model card and metrics file
        card = _model_card(
            cfg,
            metrics=metrics,
            training_data=data_line,
            split_sizes=(len(train), len(val), len(test)),
            importance=importance,
            sha256=report.sha256,
        )
        card_path = out_dir / "model_card.md"
        card_path.write_text(card, encoding="utf-8")
        metrics_path = out_dir / "metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")

    logger.info(
        "vitals-triage: test AUROC %.3f; on %d NEWS2-computable rows %.3f vs NEWS2 %.3f; %.1f s.",
        metrics["test_auroc"],
        int(metrics["test_news2_n"]),
        metrics.get("test_auroc_news2_subset", math.nan),
        metrics.get("test_news2_auroc", math.nan),
        metrics["seconds_total"],
    )
    return TrainingOutcome(
        model_name=MODEL_NAME,
        onnx_path=report.path,
        params=cfg.to_record(),
        metrics=metrics,
        artifacts=[roc_path, calibration_path, shapes_path, metrics_path, card_path],
        model_card=card,
        dataset=cfg.dataset,
        parity_passed=report.parity_passed,
        parity_max_abs_diff=report.parity_max_abs_diff,
        sha256=report.sha256,
        history=[
            {
                "epoch": float(s.epoch),
                "train_loss": s.train_loss,
                "val_loss": s.val_loss,
                "val_auroc": s.val_auroc,
                "seconds": s.seconds,
            }
            for s in fit.history
        ],
    )
