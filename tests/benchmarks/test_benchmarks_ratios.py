"""The benchmark's ratios: the issue's targets, and the two figures that bound what a server can score."""

from __future__ import annotations

from typing import Any

from benchmarks import _report


def _results(
    *, loop_explicit: float, loop_j2k: float | None, server_explicit: float, server_j2k: float
) -> Any:
    paired = {"explicit": {"median_ms": loop_explicit}}
    if loop_j2k is not None:
        paired["j2k"] = {"median_ms": loop_j2k}
    return {
        "run": {"input_size": 160},
        "models": {"160": {"ort": {"median_ms": 1.0}, "torch": {"median_ms": 8.0}}},
        "syntaxes": {"explicit": {"loop": {"median_ms": loop_explicit}}},
        "server": {
            "latency": {"explicit": {"median_ms": server_explicit}, "j2k": {"median_ms": server_j2k}},
            "paired_loop": paired,
        },
    }


def _by_key(results: Any) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in _report.ratios(results)}


def test_a_decoder_slower_than_both_budgets_is_reported_as_making_the_targets_incompatible() -> None:
    # The uncompressed loop takes 40 ms: the latency target lets the server take 50 ms, and the JPEG 2000
    # target twice that, 100 ms. The JPEG 2000 loop alone takes 120 ms: 1.2 times that budget.
    rows = _by_key(_results(loop_explicit=40.0, loop_j2k=120.0, server_explicit=50.0, server_j2k=130.0))
    assert rows["e2e_vs_bare_loop"]["value"] == 1.25 and rows["e2e_vs_bare_loop"]["met"] is True
    assert rows["j2k_vs_uncompressed_e2e"]["value"] == 2.6 and rows["j2k_vs_uncompressed_e2e"]["met"] is False
    assert rows["j2k_vs_uncompressed_loop"]["value"] == 3.0
    assert rows["j2k_loop_vs_latency_budget"]["value"] == 1.2
    for key in ("j2k_vs_uncompressed_loop", "j2k_loop_vs_latency_budget"):
        assert rows[key]["target"] is None and rows[key]["met"] is None  # informative, never a target


def test_a_decoder_within_the_budget_leaves_both_targets_possible() -> None:
    rows = _by_key(_results(loop_explicit=40.0, loop_j2k=80.0, server_explicit=48.0, server_j2k=90.0))
    assert rows["j2k_loop_vs_latency_budget"]["value"] == 0.8
    assert rows["j2k_vs_uncompressed_e2e"]["met"] is True and rows["e2e_vs_bare_loop"]["met"] is True


def test_without_a_jpeg_2000_loop_the_bounds_are_not_measured() -> None:
    rows = _by_key(_results(loop_explicit=40.0, loop_j2k=None, server_explicit=50.0, server_j2k=130.0))
    assert rows["j2k_vs_uncompressed_loop"]["value"] is None
    assert rows["j2k_loop_vs_latency_budget"]["value"] is None
