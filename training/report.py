"""The models' figures as Markdown tables, read from the runs the registry holds (the README's tables).

``dxassist registry report`` prints them (``python -m training.report`` does the same), so published
figures are regenerated from the registered runs rather than typed by hand. Nothing here needs torch:
it reads the registry through :mod:`model_registry` only.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence

from inference.vocabulary import FINDINGS, finding_display
from model_registry import CHAMPION, RegisteredVersion, RegistryClient

IMAGING_MODEL = "cxr-findings"
TRIAGE_MODEL = "vitals-triage"
SERVED: tuple[str, ...] = (IMAGING_MODEL, TRIAGE_MODEL)

_AUROC_PREFIX = "test_auroc_"
_CI_SUFFIXES = ("_ci_low", "_ci_high")
_NOT_FINDINGS = frozenset({"news2_subset"})

Figures = Mapping[str, float]


def fmt(value: float | None, digits: int = 3) -> str:
    """A figure as the tables print it: ``digits`` decimals, ``n/a`` when missing or not a number."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def with_ci(metrics: Figures, key: str, digits: int = 3) -> str:
    """``value (low–high)`` from ``key`` and its ``_ci_low``/``_ci_high`` companions (value alone without)."""
    value = fmt(metrics.get(key), digits)
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return value
    return f"{value} ({fmt(low, digits)}–{fmt(high, digits)})"


def findings(metrics: Figures) -> list[str]:
    """The findings a ``cxr-findings`` run reports a test AUROC for, in the served order."""
    names = {
        key.removeprefix(_AUROC_PREFIX)
        for key in metrics
        if key.startswith(_AUROC_PREFIX) and not key.endswith(_CI_SUFFIXES)
    } - _NOT_FINDINGS
    known = [n for n in FINDINGS if n in names]  # the model's output order, then any others
    return known + sorted(names - set(known))


def _count(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{int(value):,}".replace(",", " ")


def _source(version: RegisteredVersion) -> str:
    return (
        f"Version {version.version} of `{version.name}` (run `{version.run_id}`, ONNX sha256 "
        f"`{(version.sha256 or '-')[:12]}`), data: {version.dataset or 'not recorded'}."
    )


def imaging_report(version: RegisteredVersion, metrics: Figures) -> str:
    """The ``cxr-findings`` table: test AUROC with CI and pointing game per finding, then the macro row."""
    lines = [
        f"| `{version.name}` ({_count(metrics.get('test_n'))} test studies) "
        "| AUROC (95% CI) | pointing game |",
        "|---|---|---|",
    ]
    for name in findings(metrics):
        lines.append(
            f"| {finding_display(name)} | {with_ci(metrics, _AUROC_PREFIX + name)} "
            f"| {fmt(metrics.get(f'test_pointing_game_{name}'), 2)} |"
        )
    tolerant = metrics.get("test_pointing_game_tolerant")
    lines.append(
        f"| **macro** | **{fmt(metrics.get('test_macro_auroc'))}** "
        f"| **{fmt(metrics.get('test_pointing_game'), 2)}**"
        + (f" ({fmt(tolerant, 2)} within half a CAM cell)" if tolerant is not None else "")
        + " |"
    )
    text = "\n".join(lines)
    text += (
        f"\n\nCalibration: ECE {fmt(metrics.get('test_ece'))} after temperature scaling "
        f"({fmt(metrics.get('test_ece_uncalibrated'))} before)."
    )
    if "ood_auroc" in metrics:
        text += (
            f" Out-of-distribution guard: AUROC {fmt(metrics.get('ood_auroc'), 4)} between the test split "
            f"and the refusal set ({_count(metrics.get('ood_eval_n'))} images), "
            f"{_percent(metrics.get('ood_refusal_rate'))} of the refusal set refused"
            f"{_short_kinds(metrics)}, {_percent(metrics.get('ood_test_pass_rate'))} of the "
            "in-distribution test split passes."
        )
    return f"{text}\n\n{_source(version)}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _short_kinds(metrics: Figures) -> str:
    """The refusal-set kinds refused less than always, e.g. `` (every kind 100% but rotated chest 92.0%)``."""
    prefix = "ood_refusal_rate_"
    rates = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
    short = sorted((kind, rate) for kind, rate in rates.items() if rate < 1.0)
    if not rates or len(short) == len(rates):
        return ""
    listed = ", ".join(f"{kind.replace('_', ' ')} {_percent(rate)}" for kind, rate in short)
    return " (every kind 100%" + (f" but {listed}" if listed else "") + ")"


def triage_report(version: RegisteredVersion, metrics: Figures) -> str:
    """The ``vitals-triage`` table: the model beside NEWS2 on the same rows, with signs hidden too."""
    masked = metrics.get("test_masked_rate")
    hidden = "n/a" if masked is None else f"{100 * masked:.0f}%"
    rows = [
        ("model, all test rows", "test_auroc"),
        (
            f"model, rows where NEWS2 is complete ({_count(metrics.get('test_news2_n'))})",
            "test_auroc_news2_subset",
        ),
        ("NEWS2, same rows", "test_news2_auroc"),
        (f"model, {hidden} of signs hidden at random", "test_masked_auroc"),
        ("NEWS2's measured part, same rows", "test_masked_news2_auroc"),
    ]
    lines = [
        f"| `{version.name}` ({_count(metrics.get('test_n'))} test observations) | AUROC (95% CI) |",
        "|---|---|",
        *(f"| {label} | {with_ci(metrics, key)} |" for label, key in rows if key in metrics),
    ]
    text = "\n".join(lines)
    text += (
        f"\n\nECE {fmt(metrics.get('test_ece'))} ({fmt(metrics.get('test_masked_ece'))} with signs hidden); "
        f"sensitivity {fmt(metrics.get('test_sensitivity'))}, specificity "
        f"{fmt(metrics.get('test_specificity'))} at the threshold chosen on validation."
    )
    return f"{text}\n\n{_source(version)}"


_RENDERERS: dict[str, Callable[[RegisteredVersion, Figures], str]] = {
    IMAGING_MODEL: imaging_report,
    TRIAGE_MODEL: triage_report,
}


def report(client: RegistryClient, names: Sequence[str] = SERVED, *, alias: str = CHAMPION) -> str:
    """The Markdown figures of the version ``alias`` points at, for each model of ``names``.

    Raises:
        model_registry.NotFound: A model has no such alias, or its version has no run.
        model_registry.RegistryError: The registry cannot be asked.
    """
    from model_registry import NotFound

    parts: list[str] = []
    for name in names:
        number = client.resolve(name, alias)
        if number is None:
            raise NotFound(
                f"{name} has no '{alias}' version; run `dxassist bootstrap` or name another alias."
            )
        version = client.get_version(name, number)
        metrics = client.run_metrics(name, number)
        render = _RENDERERS.get(name, _generic_report)
        parts.append(render(version, metrics))
    return "\n\n".join(parts) + "\n"


def _generic_report(version: RegisteredVersion, metrics: Figures) -> str:
    """Every ``test_*`` figure of a model this module has no table for."""
    lines = [f"| `{version.name}` | value |", "|---|---|"]
    lines += [
        f"| {key} | {fmt(value)} |" for key, value in sorted(metrics.items()) if key.startswith("test_")
    ]
    return "\n".join(lines) + f"\n\n{_source(version)}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.report [NAME ...]``: the same as ``dxassist registry report``."""
    from inference.cli import main as cli_main

    return cli_main(["registry", "report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
