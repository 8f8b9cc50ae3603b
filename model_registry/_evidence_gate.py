"""Evidence from live traffic the promotion gate can require: shadow-scored inputs and readers' verdicts.

The validation figures (``_gate``, ``_calibration_gate``) are measured on the fixed validation set the
candidate was trained next to. A hospital can also require that the candidate answered its own traffic
in the shadow of the champion (``DXASSIST_GATE_MIN_SHADOW_STUDIES``) and that readers judged enough of
those inputs (``DXASSIST_GATE_MIN_READER_VERDICTS``) before it becomes champion. The counts come from
the patient record (``inference`` measures them; this package only judges them), so the registry stays
the only place that talks to MLflow and knows nothing of the record.
"""

from __future__ import annotations

import dataclasses

from model_registry._types import EvidenceCheck, GateDecision, ShadowEvidence


def evidence_checks(
    evidence: ShadowEvidence | None, *, min_shadow_studies: int, min_reader_verdicts: int
) -> tuple[tuple[EvidenceCheck, ...], list[str]]:
    """The checks of ``evidence`` against the requirements, and a sentence per failed one."""
    studies = evidence.shadow_studies if evidence is not None else 0
    verdicts = evidence.reader_verdicts if evidence is not None else 0
    checks = (
        EvidenceCheck("shadow_studies", studies, min_shadow_studies, studies >= min_shadow_studies),
        EvidenceCheck("reader_verdicts", verdicts, min_reader_verdicts, verdicts >= min_reader_verdicts),
    )
    failures = []
    if studies < min_shadow_studies:
        failures.append(
            f"it was shadow-scored on {studies} live input(s) beside the champion, and this site requires "
            f"{min_shadow_studies}"
        )
    if verdicts < min_reader_verdicts:
        failures.append(
            f"readers gave {verdicts} verdict(s) on those inputs, and this site requires "
            f"{min_reader_verdicts}"
        )
    return checks, failures


def apply_evidence(
    decision: GateDecision,
    evidence: ShadowEvidence | None,
    *,
    min_shadow_studies: int,
    min_reader_verdicts: int,
) -> GateDecision:
    """``decision`` with the evidence checks shown, refused when a requirement is not met."""
    checks, failures = evidence_checks(
        evidence, min_shadow_studies=min_shadow_studies, min_reader_verdicts=min_reader_verdicts
    )
    if not decision.passed or not failures:
        return dataclasses.replace(decision, evidence=checks)
    reason = (
        f"Version {decision.version} of {decision.name} was refused by the promotion gate: "
        + "; ".join(failures)
        + ". Let the challenger shadow-score live studies and readers give their verdicts "
        "(`dxassist registry compare` shows the counts), then promote again."
    )
    return dataclasses.replace(decision, passed=False, reason=reason, evidence=checks)
