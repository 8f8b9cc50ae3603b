"""The promotion gate's live-traffic requirements: shadow-scored inputs and readers' verdicts."""

from __future__ import annotations

import pytest
from _registry_testkit import Store

from model_registry import PromotionRefused, ShadowEvidence


def test_too_little_shadow_evidence_is_refused_with_the_counts(store: Store) -> None:
    store.register("ev-few")
    store.client.promote("ev-few", 1)
    store.register("ev-few")
    with pytest.raises(PromotionRefused) as refused:
        store.client.promote(
            "ev-few",
            2,
            evidence=ShadowEvidence(shadow_studies=12, reader_verdicts=3),
            min_shadow_studies=20,
            min_reader_verdicts=5,
        )
    reason = refused.value.reason
    assert "shadow-scored on 12 live input(s)" in reason and "requires 20" in reason
    assert "3 verdict(s)" in reason and "requires 5" in reason
    checks = {c.figure: c for c in refused.value.decision.evidence}
    assert (checks["shadow_studies"].value, checks["shadow_studies"].required) == (12, 20)
    assert not checks["reader_verdicts"].passed
    assert store.client.aliases("ev-few")["champion"] == "1"


def test_enough_evidence_passes_shows_the_counts_and_tags_the_version(store: Store) -> None:
    store.register("ev-enough")
    store.client.promote("ev-enough", 1)
    store.register("ev-enough")
    decision = store.client.promote(
        "ev-enough",
        2,
        evidence=ShadowEvidence(shadow_studies=25, reader_verdicts=7),
        min_shadow_studies=20,
        min_reader_verdicts=5,
    )
    assert decision.passed and [c.passed for c in decision.evidence] == [True, True]
    version = store.client.get_version("ev-enough", 2)
    assert version.tags["shadow_studies"] == "25" and version.tags["reader_verdicts"] == "7"
    assert store.client.aliases("ev-enough")["champion"] == "2"


def test_a_requirement_without_evidence_refuses_but_a_first_champion_needs_none(store: Store) -> None:
    store.register("ev-none")
    # No champion yet: nothing could have been shadow-scored beside it.
    assert store.client.promote("ev-none", 1, min_shadow_studies=20).passed
    store.register("ev-none")
    with pytest.raises(PromotionRefused, match="shadow-scored on 0 live input"):
        store.client.promote("ev-none", 2, min_shadow_studies=20)
