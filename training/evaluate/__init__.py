"""Honest evaluation: discrimination with CIs, operating points, calibration, localisation."""

from training.evaluate._metrics import (
    BinaryReport,
    auroc,
    binary_report,
    bootstrap_auroc_ci,
    expected_calibration_error,
    fit_temperature,
    pointing_game,
    roc_curve,
    sigmoid,
    threshold_for_sensitivity,
)
from training.evaluate._plots import plot_calibration, plot_roc
from training.evaluate._shapes import MONOTONICITY_TOLERANCE, ShapeCheck, check_shapes

__all__ = [
    "MONOTONICITY_TOLERANCE",
    "ShapeCheck",
    "BinaryReport",
    "auroc",
    "binary_report",
    "bootstrap_auroc_ci",
    "check_shapes",
    "expected_calibration_error",
    "fit_temperature",
    "plot_calibration",
    "plot_roc",
    "pointing_game",
    "roc_curve",
    "sigmoid",
    "threshold_for_sensitivity",
]
