"""``dxassist registry compare NAME``: the champion and its challenger on the inputs both answered.

Kept apart from :mod:`inference.cli` (argument parsing) so the report's layout lives in one place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.record import Record
    from inference.services._comparison import Comparison, Proportion

Echo = Callable[[str], None]


def _aliases(settings: Settings, name: str) -> dict[str, str]:
    """The model's aliases: from the registry when it answers, else the local cache's last known map."""
    from model_registry import ModelCache, RegistryClient, RegistryError

    uri = settings.tracking_uri
    # No embedded store yet: asking would create an empty one as a side effect of a report.
    if not (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()):
        try:
            return dict(RegistryClient(uri, settings.artifact_root).aliases(name))
        except (RegistryError, ValueError):
            pass
    found = {}
    cache = ModelCache(settings.model_cache)
    for alias in ("champion", "challenger"):
        try:
            found[alias] = cache.resolve_cached(name, alias).version
        except Exception:  # noqa: BLE001 - nothing cached for this alias
            continue
    return found


def resolve_pair(
    settings: Settings, record: Record, name: str, champion: str | None, challenger: str | None
) -> tuple[str, str] | None:
    """The versions to compare: those given, else ``champion`` and ``challenger`` now, else the newest pair
    the record has shadow outputs of (after a promotion the challenger alias is gone: the pair whose
    challenger became champion comes first)."""
    from inference.services._shadow import shadow_store

    aliases: dict[str, str] = {}
    if champion is None or challenger is None:
        aliases = _aliases(settings, name)
    if champion is None and challenger is None and "champion" in aliases and "challenger" in aliases:
        return aliases["champion"], aliases["challenger"]
    if champion is not None and challenger is not None:
        return champion, challenger
    pairs = [
        v
        for v in shadow_store(record).versions(model_name=name)
        if champion in (None, v.champion_version) and challenger in (None, v.challenger_version)
    ]
    promoted = [v for v in pairs if v.challenger_version == aliases.get("champion")]
    for v in promoted or pairs:
        return v.champion_version, v.challenger_version
    return None


def _rate(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _proportion(p: Proportion) -> str:
    if p.total == 0:
        return "-"
    low, high = p.interval or (0.0, 0.0)
    return f"{p.successes}/{p.total} {p.value:.2f} [{low:.2f}-{high:.2f}]"


def render(comparison: Comparison, echo: Echo) -> None:
    """Print a comparison as the operator reads it."""
    from inference._common_cli import format_table

    c = comparison
    echo(
        f"{c.model}: champion version {c.champion} vs challenger version {c.challenger} on {c.pairs} "
        "input(s) both answered (shadow scoring; the challenger's outputs were never shown or sent)."
    )
    if not c.pairs:
        echo("No shadow-scored input yet: the challenger sees live traffic only while it is registered.")
        return
    rows = [
        [f.code, f.n, f.both_positive, f.champion_only, f.challenger_only, f.both_negative,
         _rate(f.positive_agreement), _rate(f.negative_agreement), _rate(f.kappa),
         _rate(f.mean_abs_difference), _rate(f.psi)]
        for f in c.findings
    ]  # fmt: skip
    echo("\nAgreement, each version at its own threshold:")
    echo(
        format_table(
            ["FINDING", "N", "BOTH+", "CHAMPION+ ONLY", "CHALLENGER+ ONLY", "BOTH-", "POS AGREE",
             "NEG AGREE", "KAPPA", "MEAN |DIFF|", "PSI"],
            rows,
        )
    )  # fmt: skip
    echo(
        f"\nOOD guard pass rate: champion {_proportion(c.champion_ood_pass)}, "
        f"challenger {_proportion(c.challenger_ood_pass)}."
    )
    if not c.readers:
        echo("No reader has given a verdict on these inputs yet; no sensitivity or specificity is claimed.")
        return
    echo(f"\nAgainst the readers' verdicts ({c.reader_verdicts}; proportion [Wilson 95% interval]):")
    rows = [
        [r.code, r.verdicts, _proportion(r.champion_sensitivity), _proportion(r.champion_specificity),
         _proportion(r.challenger_sensitivity), _proportion(r.challenger_specificity)]
        for r in c.readers
    ]  # fmt: skip
    echo(
        format_table(
            ["FINDING", "VERDICTS", "CHAMPION SENS", "CHAMPION SPEC", "CHALLENGER SENS", "CHALLENGER SPEC"],
            rows,
        )
    )


def as_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-able data (every derived figure included)."""
    data = asdict(comparison)
    for finding, raw in zip(comparison.findings, data["findings"], strict=True):
        raw.update(
            positive_agreement=finding.positive_agreement,
            negative_agreement=finding.negative_agreement,
            kappa=finding.kappa,
        )
    for reader, raw in zip(comparison.readers, data["readers"], strict=True):
        for key in ("champion_sensitivity", "champion_specificity", "challenger_sensitivity",
                    "challenger_specificity"):  # fmt: skip
            p = getattr(reader, key)
            raw[key].update(value=p.value, interval=p.interval)
    for key in ("champion_ood_pass", "challenger_ood_pass"):
        p = getattr(comparison, key)
        data[key].update(value=p.value, interval=p.interval)
    return data


def compare_command(
    settings: Settings,
    record: Record,
    *,
    name: str,
    champion: str | None,
    challenger: str | None,
    json_output: bool,
    echo: Echo,
) -> int:
    """Run ``registry compare``; 0 with a report, 1 when no pair of versions can be found."""
    from inference.services._shadow import compare_versions

    pair = resolve_pair(settings, record, name, champion, challenger)
    if pair is None:
        echo(
            f"{name} has no champion/challenger pair to compare: register a challenger "
            f"(`dxassist train ... --register`) and let it shadow-score live traffic first."
        )
        return 1
    comparison = compare_versions(record, model=name, champion=pair[0], challenger=pair[1])
    if json_output:
        echo(json.dumps(as_json(comparison), indent=2, sort_keys=True, default=str))
    else:
        render(comparison, echo)
    return 0


def promotion_evidence(settings: Settings, client: Any, name: str, version: str) -> Any:
    """The candidate's live-traffic evidence for the gate (``model_registry.ShadowEvidence``), counted in
    the patient record against the current champion; None when the record cannot be read."""
    from inference.record import Record
    from inference.services._shadow import shadow_evidence
    from model_registry import ShadowEvidence

    champion = client.aliases(name).get("champion")
    record = Record(settings.record_url)
    try:
        record.migrate()
        studies, verdicts = shadow_evidence(record, model=name, champion=champion, challenger=str(version))
    except Exception:  # noqa: BLE001 - no record here: the gate judges without live evidence
        return None
    finally:
        record.close()
    return ShadowEvidence(shadow_studies=studies, reader_verdicts=verdicts)
