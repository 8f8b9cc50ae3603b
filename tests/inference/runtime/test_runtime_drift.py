"""Drift monitoring: a shifted stream of scores moves the PSI past the alert level, a reference-like one
does not; the alert is a Prometheus gauge with model and version labels and a log event."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from prometheus_client import REGISTRY

from inference.runtime import DriftMonitor, DriftReference, compute_report

LABELS = ("nodule", "pneumothorax")


def _reference_from(ood: np.ndarray, probs: np.ndarray) -> DriftReference:
    """What training writes (training.pipeline._imaging_ood.drift_reference), parsed as the server does."""
    from training.pipeline._imaging_ood import drift_reference

    return DriftReference.from_metadata(drift_reference(ood, probs, LABELS))


def _stream(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    ood = rng.lognormal(mean=0.0 + shift, sigma=0.4, size=n)
    probs = np.stack([rng.beta(2 + 4 * shift, 5, size=n), rng.beta(1, 8 - 5 * shift, size=n)], axis=1)
    return ood, probs


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return _reference_from(*_stream(np.random.default_rng(0), 360))


def _feed(monitor: DriftMonitor, reference: DriftReference, ood: np.ndarray, probs: np.ndarray, version: str):  # type: ignore[no-untyped-def]
    report = None
    for score, p in zip(ood, probs, strict=True):
        report = monitor.observe(
            model="cxr-findings",
            version=version,
            reference=reference,
            labels=LABELS,
            ood_score=score,
            probabilities=p,
        )
    return report


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_reference_like_stream_stays_under_the_alert_level(reference: DriftReference) -> None:
    monitor = DriftMonitor(window=200, alert_level=0.25, min_observations=50)
    report = _feed(monitor, reference, *_stream(np.random.default_rng(1), 300), version="like")
    assert report is not None and report.observations == 200 and not report.alert
    assert max(report.psi.values()) < 0.25
    assert set(report.psi) == {"ood", "p_nodule", "p_pneumothorax"}
    assert _gauge("dxassist_drift_alert", model="cxr-findings", version="like") == 0.0
    psi = _gauge("dxassist_drift_psi", model="cxr-findings", version="like", signal="ood")
    assert psi == pytest.approx(report.psi["ood"])


def test_a_shifted_stream_raises_the_alert_with_a_log_event_then_clears(
    reference: DriftReference, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = DriftMonitor(window=100, alert_level=0.25, min_observations=50)
    rng = np.random.default_rng(2)
    with caplog.at_level(logging.INFO, logger="inference.runtime"):
        shifted = _feed(monitor, reference, *_stream(rng, 120, shift=0.6), version="shifted")
    assert shifted is not None and shifted.alert
    assert shifted.psi["ood"] >= 0.25 and "ood" in shifted.to_dict()["drifting"]
    assert _gauge("dxassist_drift_alert", model="cxr-findings", version="shifted") == 1.0
    assert _gauge("dxassist_drift_window_observations", model="cxr-findings", version="shifted") == 100
    raised = [r for r in caplog.records if getattr(r, "event", None) == "drift_alert"]
    assert len(raised) == 1  # one event on the transition, not one per result
    assert raised[0].model_version == "shifted" and raised[0].drift_value >= 0.25
    # The inputs return to normal: once the window has turned over, the alert clears with its own event.
    with caplog.at_level(logging.INFO, logger="inference.runtime"):
        back = _feed(monitor, reference, *_stream(rng, 150), version="shifted")
    assert back is not None and not back.alert
    assert any(getattr(r, "event", None) == "drift_recovered" for r in caplog.records)
    assert _gauge("dxassist_drift_alert", model="cxr-findings", version="shifted") == 0.0


def test_no_alert_before_the_minimum_observations_and_refused_images_count_as_out_of_range(
    reference: DriftReference,
) -> None:
    few = compute_report(
        model="m", version="1", reference=reference, labels=LABELS,
        rows=[(50.0, [0.9, 0.9])] * 10, window=500, alert_level=0.25, min_observations=50,
    )  # fmt: skip
    assert not few.alert and few.psi["ood"] > 0.25
    non_finite = compute_report(
        model="m", version="1", reference=reference, labels=LABELS,
        rows=[(None, [0.2, 0.1])] * 60, window=500, alert_level=0.25, min_observations=50,
    )  # fmt: skip
    assert non_finite.alert and non_finite.psi["ood"] > 1.0
