"""The promotion gate and rollback against a real MLflow store."""

from __future__ import annotations

import pytest
from _registry_testkit import LABELS, Store

from model_registry import (
    NotFound,
    PromotionRefused,
    RegisteredVersion,
    RegistryError,
    evaluate_gate,
)


def _aurocs(value: float, **overrides: float) -> dict[str, float]:
    figures = {f"val_auroc_{c}": value for c in LABELS}
    figures.update({f"val_auroc_{k}": v for k, v in overrides.items()})
    return figures


def test_first_version_becomes_champion_without_comparison(store: Store) -> None:
    store.register("gate-first")

    decision = store.client.promote("gate-first", "1")

    assert decision.passed
    assert decision.previous_champion is None
    assert "first champion" in decision.reason
    version = store.client.get_version("gate-first", 1)
    # Promotion consumes the challenger alias: the version is no longer a candidate.
    assert version.aliases == ("champion",)


def test_drop_beyond_tolerance_is_refused_with_the_failing_figure(store: Store) -> None:
    store.register("gate-drop", aurocs=_aurocs(0.90))
    store.client.promote("gate-drop", 1)
    store.register("gate-drop", aurocs=_aurocs(0.91, pneumothorax=0.88))

    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-drop", 2)

    reason = refused.value.reason
    assert "val_auroc_pneumothorax is 0.8800 against 0.9000" in reason
    assert "champion version 1" in reason
    assert "0.01" in reason
    assert reason.endswith(".")
    assert refused.value.decision is not None
    assert not refused.value.decision.passed
    assert store.client.resolve("gate-drop", "champion") == "1"
    assert store.client.resolve("gate-drop", "challenger") == "2"


def test_small_drop_is_accepted_and_previous_champion_recorded(store: Store) -> None:
    store.register("gate-small", aurocs=_aurocs(0.90))
    store.client.promote("gate-small", 1)
    store.register("gate-small", aurocs=_aurocs(0.92, nodule=0.895))

    decision = store.client.promote("gate-small", 2)

    assert decision.passed
    assert decision.previous_champion == "1"
    nodule = next(c for c in decision.comparisons if c.figure == "val_auroc_nodule")
    assert nodule.candidate == pytest.approx(0.895)
    assert nodule.passed
    assert store.client.resolve("gate-small", "champion") == "2"
    assert store.client.get_version("gate-small", 2).tags["previous_champion"] == "1"
    # Promoting the champion again changes nothing.
    assert "already the champion" in store.client.promote("gate-small", 2).reason


def test_failed_parity_check_is_refused(store: Store) -> None:
    store.register("gate-parity", parity_passed=False)

    with pytest.raises(PromotionRefused, match="parity check"):
        store.client.promote("gate-parity", 1)
    assert store.client.resolve("gate-parity", "champion") is None


def test_rollback_restores_the_previous_champions_in_order(store: Store) -> None:
    for _ in range(3):
        store.register("gate-rollback", aurocs=_aurocs(0.9))
    for version in ("1", "2", "3"):
        store.client.promote("gate-rollback", version)

    assert store.client.rollback("gate-rollback") == "2"
    assert store.client.resolve("gate-rollback", "champion") == "2"
    assert store.client.rollback("gate-rollback") == "1"
    with pytest.raises(NotFound, match="nothing to roll back"):
        store.client.rollback("gate-rollback")
    assert store.client.resolve("gate-rollback", "champion") == "1"


def test_champion_moves_only_through_the_gate(store: Store) -> None:
    store.register("gate-alias")
    store.client.set_alias("gate-alias", "shadow", 1)
    assert store.client.resolve("gate-alias", "shadow") == "1"
    with pytest.raises(RegistryError, match="promote"):
        store.client.set_alias("gate-alias", "champion", 1)


def _version(version: str, metrics: dict[str, float], **kwargs: object) -> RegisteredVersion:
    return RegisteredVersion(
        name="vitals-triage",
        version=version,
        run_id=None,
        sha256=str(kwargs.get("sha256", "a" * 64)),
        parity_passed=bool(kwargs.get("parity_passed", True)),
        metrics=metrics,
    )


def test_gate_refuses_a_candidate_missing_a_figure_the_champion_has() -> None:
    champion = _version("1", {"val_auroc": 0.8})
    decision = evaluate_gate(_version("2", {}), champion)
    assert not decision.passed
    assert "val_auroc is missing" in decision.reason


def test_gate_accepts_a_drop_of_exactly_the_tolerance() -> None:
    decision = evaluate_gate(_version("2", {"val_auroc": 0.79}), _version("1", {"val_auroc": 0.80}))
    assert decision.passed


def test_gate_refuses_a_version_without_sha256() -> None:
    decision = evaluate_gate(_version("1", {"val_auroc": 0.9}, sha256=""), None)
    assert not decision.passed
    assert "sha256" in decision.reason


def test_gate_refuses_implausible_per_sign_shapes() -> None:
    # A vital sign whose risk falls as it moves away from normal is refused, whatever its AUROC.
    implausible = _version("2", {"val_auroc": 0.95, "shape_monotonicity_violation": 0.4})
    decision = evaluate_gate(
        implausible, _version("1", {"val_auroc": 0.8, "shape_monotonicity_violation": 0.0})
    )
    assert not decision.passed
    assert "further from normal lowers its risk" in decision.reason
    assert not evaluate_gate(implausible, None).passed
    plausible = _version("2", {"val_auroc": 0.8, "shape_monotonicity_violation": 2e-7})
    assert evaluate_gate(
        plausible, _version("1", {"val_auroc": 0.8, "shape_monotonicity_violation": 0.0})
    ).passed


def test_gate_refuses_a_candidate_that_cannot_show_plausible_shapes() -> None:
    champion = _version("1", {"val_auroc": 0.8, "shape_monotonicity_violation": 0.0})
    decision = evaluate_gate(_version("2", {"val_auroc": 0.85}), champion)
    assert not decision.passed and "shape_monotonicity_violation" in decision.reason


def test_plausibility_figure_travels_as_a_tag_and_blocks_promotion(store: Store) -> None:
    store.register("gate-shapes", extra_metrics={"shape_monotonicity_violation": 0.25})
    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-shapes", 1)
    assert "not clinically plausible" in refused.value.reason
    assert store.client.get_version("gate-shapes", 1).metrics["shape_monotonicity_violation"] == 0.25


def _calibrated(
    *,
    auroc: float,
    median: float,
    threshold: float,
    sensitivity: float,
    specificity: float,
    ece: float = 0.03,
) -> dict[str, float]:
    """Gate figures of an imaging version on the fixed validation set, the same for every finding."""
    figures: dict[str, float] = {"val_ece": ece, "ood_test_pass_rate": 0.995, "ood_auroc": 0.99}
    for c in LABELS:
        figures |= {
            f"val_auroc_{c}": auroc,
            f"val_score_median_{c}": median,
            f"threshold_{c}": threshold,
            f"val_sensitivity_{c}": sensitivity,
            f"val_specificity_{c}": specificity,
        }
    return figures


CHAMPION = _calibrated(auroc=0.90, median=0.35, threshold=0.40, sensitivity=0.86, specificity=0.80)


def test_a_score_shift_with_stale_thresholds_is_refused_even_with_a_better_auroc(store: Store) -> None:
    """The published incident: AUROC up slightly, median score 0.35 -> 0.61, thresholds left as they were,
    so the operating point moved silently. The gate refuses and says why; recalibrated, it passes."""
    store.register("gate-shift", aurocs=CHAMPION)
    store.client.promote("gate-shift", 1)
    stale = _calibrated(auroc=0.91, median=0.61, threshold=0.40, sensitivity=0.99, specificity=0.52)
    store.register("gate-shift", aurocs=stale)

    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-shift", 2)
    reason = refused.value.reason
    assert "not recalibrated" in reason and "median probability 0.35 -> 0.61" in reason
    assert "specificity 0.800 -> 0.520" in reason
    assert "val_specificity_nodule at its own threshold is 0.520 against 0.800" in reason
    assert store.client.resolve("gate-shift", "champion") == "1"

    recalibrated = _calibrated(auroc=0.91, median=0.61, threshold=0.66, sensitivity=0.87, specificity=0.81)
    store.register("gate-shift", aurocs=recalibrated)
    decision = store.client.promote("gate-shift", 3)
    assert decision.passed and "calibration" in decision.reason
    assert store.client.resolve("gate-shift", "champion") == "3"


def test_gate_refuses_worse_calibration_and_an_ood_guard_that_refuses_ordinary_images() -> None:
    champion = RegisteredVersion(
        name="cxr-findings", version="1", run_id=None, sha256="a" * 64, parity_passed=True, metrics=CHAMPION
    )
    worse = {**CHAMPION, "val_ece": 0.09, "ood_test_pass_rate": 0.9}
    decision = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings", version="2", run_id=None, sha256="b" * 64, parity_passed=True, metrics=worse
        ),
        champion,
    )
    assert not decision.passed
    assert "val_ece is 0.0900 against 0.0300" in decision.reason
    assert "lets only 0.900 of in-distribution test images through" in decision.reason
    # A better-ranking model whose scores moved but whose operating point held is not "stale".
    moved = {**CHAMPION, **{f"val_score_median_{c}": 0.45 for c in LABELS}}
    ok = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings", version="3", run_id=None, sha256="c" * 64, parity_passed=True, metrics=moved
        ),
        champion,
    )
    assert ok.passed, ok.reason


_FIRST_KINDS = (
    "limb",
    "skull",
    "rotated_chest",
    "photo",
    "texture",
    "noise",
    "gradient",
    "other_modality",
    "artefact",
)


def _ood(per_kind: dict[str, float]) -> dict[str, float]:
    """The OOD guard's figures as training logs them: the pooled refusal AUROC (the refusal set has as many
    images of every kind, so it is the mean of the per-kind figures) and one ``ood_auroc_<kind>`` per kind."""
    pooled = sum(per_kind.values()) / len(per_kind)
    return {"ood_auroc": pooled, **{f"ood_auroc_{k}": v for k, v in per_kind.items()}}


def test_ood_auroc_is_compared_on_the_refusal_kinds_both_versions_faced(store: Store) -> None:
    """The refusal set gained a ``lateral`` kind the champion never faced: the candidate's pooled figure
    (0.961, dragged down by the new, hard kind) is not held against the champion's (0.99 without it).
    The gate compares the kinds both faced, says which, and reports the new kind without comparing it."""
    store.register("gate-ood-kinds", aurocs={**CHAMPION, **_ood(dict.fromkeys(_FIRST_KINDS, 0.99))})
    store.client.promote("gate-ood-kinds", 1)

    # Worse on the kinds both faced: refused, naming what was compared, even with a perfect lateral figure.
    worse = {**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 0.96), "lateral": 1.0})}
    store.register("gate-ood-kinds", aurocs=worse)
    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-ood-kinds", 2)
    assert (
        "ood_auroc on the 9 refusal-set kinds both versions faced is 0.9600 against 0.9900 for champion "
        "version 1" in refused.value.reason
    )

    with_lateral = {**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 0.99), "lateral": 0.70})}
    store.register("gate-ood-kinds", aurocs=with_lateral)
    decision = store.client.promote("gate-ood-kinds", 3)

    assert decision.passed, decision.reason
    assert "ood_auroc compared on the 9 refusal-set kinds both versions faced" in decision.reason
    assert "not compared: lateral (0.7000; champion version 1 never faced it)" in decision.reason
    shared = [c for c in decision.comparisons if c.figure.startswith("ood_auroc")]
    # The mean over the shared kinds, then each shared kind on its own; lateral is not compared.
    assert [c.figure for c in shared] == [
        "ood_auroc_shared_kinds",
        *(f"ood_auroc_{kind}" for kind in sorted(_FIRST_KINDS)),
    ]
    assert shared[0].candidate == pytest.approx(0.99) and shared[0].champion == pytest.approx(0.99)


def test_a_candidate_not_evaluated_on_a_kind_the_champion_faced_is_refused() -> None:
    champion = RegisteredVersion(
        name="cxr-findings",
        version="1",
        run_id=None,
        sha256="a" * 64,
        parity_passed=True,
        metrics={**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 0.99), "lateral": 0.9})},
    )
    without_lateral = {**CHAMPION, **_ood(dict.fromkeys(_FIRST_KINDS, 0.99))}
    decision = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings",
            version="2",
            run_id=None,
            sha256="b" * 64,
            parity_passed=True,
            metrics=without_lateral,
        ),
        champion,
    )
    assert not decision.passed
    assert "ood_auroc_lateral is missing" in decision.reason


def test_a_champion_registered_before_the_per_kind_tags_is_compared_on_its_runs_kinds(store: Store) -> None:
    """A champion registered before the per-kind figures travelled as version tags still has them in its
    training run's metrics: the gate reads them there and compares on the kinds both versions faced."""
    store.register("gate-ood-old", aurocs={**CHAMPION, **_ood(dict.fromkeys(_FIRST_KINDS, 0.99))})
    store.client.promote("gate-ood-old", 1)
    mlflow = store.client.mlflow_client
    for kind in _FIRST_KINDS:
        mlflow.delete_model_version_tag("gate-ood-old", "1", f"ood_auroc_{kind}")
    assert not any(k.startswith("ood_auroc_") for k in store.client.get_version("gate-ood-old", 1).metrics)
    store.register(
        "gate-ood-old", aurocs={**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 0.99), "lateral": 0.70})}
    )

    decision = store.client.promote("gate-ood-old", 2)

    assert decision.passed, decision.reason
    assert "ood_auroc compared on the 9 refusal-set kinds both versions faced" in decision.reason
    assert "not compared: lateral" in decision.reason


def test_the_gate_says_when_the_two_versions_were_validated_on_different_data_sets() -> None:
    """A version retrained on the hospital's export is validated on the hospital's studies, the champion on
    its own set: the figures are not measured on the same images, and the gate's reason must not say
    they are."""
    champion = RegisteredVersion(
        name="cxr-findings",
        version="1",
        run_id=None,
        sha256="a" * 64,
        parity_passed=True,
        metrics=CHAMPION,
        dataset="synthetic",
    )
    stale = _calibrated(auroc=0.91, median=0.61, threshold=0.40, sensitivity=0.99, specificity=0.52)
    decision = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings",
            version="2",
            run_id=None,
            sha256="b" * 64,
            parity_passed=True,
            metrics=stale,
            dataset="dicom-export",
        ),
        champion,
    )
    assert not decision.passed
    assert "fixed validation set" not in decision.reason
    assert (
        "the validation figures were measured on different data sets (candidate: dicom-export; champion "
        "version 1: synthetic), not on the same images" in decision.reason
    )
    recalibrated = _calibrated(auroc=0.91, median=0.61, threshold=0.66, sensitivity=0.87, specificity=0.81)
    passed = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings",
            version="3",
            run_id=None,
            sha256="c" * 64,
            parity_passed=True,
            metrics=recalibrated,
            dataset="dicom-export",
        ),
        champion,
    )
    assert passed.passed and "measured on different data sets" in passed.reason


def test_the_gate_compares_data_sets_by_their_content_digest_when_both_versions_carry_one(
    store: Store,
) -> None:
    """Two exports share the name ``dxassist-export``; only their content digests (tagged on the
    versions) say whether the figures were measured on the same images."""
    first, later = "1" * 64, "2" * 64
    store.register("gate-digest", dataset="dxassist-export", dataset_digest=first)
    store.client.promote("gate-digest", 1)
    assert store.client.get_version("gate-digest", 1).dataset_digest == first

    store.register("gate-digest", dataset="dxassist-export", dataset_digest=later)
    decision = store.client.promote("gate-digest", 2)
    assert decision.passed
    assert (
        "the validation figures were measured on different data sets (candidate: dxassist-export, content "
        "sha256 222222222222...; champion version 1: dxassist-export, content sha256 111111111111...)"
        in decision.reason
    )

    # The same content under two names is the same data set; without a digest on both, names decide.
    store.register("gate-digest", dataset="hospital-export-march", dataset_digest=later)
    assert "different data sets" not in store.client.promote("gate-digest", 3).reason
    store.register("gate-digest", dataset="hospital-export-april")
    assert "different data sets" in store.client.promote("gate-digest", 4).reason


def test_a_drop_on_one_refusal_kind_does_not_hide_behind_gains_on_the_others(store: Store) -> None:
    """Same refusal kinds on both sides: the pooled figure (the mean) barely moves when one kind falls
    from 0.99 to 0.90 and the eight others rise to 1.0, yet the guard now lets far more limb films
    through. Each kind is held to the pooled check's tolerance, and the reason names the kind."""
    store.register("gate-ood-per-kind", aurocs={**CHAMPION, **_ood(dict.fromkeys(_FIRST_KINDS, 0.99))})
    store.client.promote("gate-ood-per-kind", 1)
    hidden = {**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 1.0), "limb": 0.90})}
    assert hidden["ood_auroc"] >= 0.99 - 0.02  # the pooled check alone lets it through
    store.register("gate-ood-per-kind", aurocs=hidden)

    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-ood-per-kind", 2)

    reason = refused.value.reason
    assert "ood_auroc_limb is 0.9000 against 0.9900 for champion version 1" in reason
    assert "skull" not in reason.split("OOD guard:")[0]
    assert store.client.resolve("gate-ood-per-kind", "champion") == "1"
    assert refused.value.decision is not None
    limb = next(c for c in refused.value.decision.comparisons if c.figure == "ood_auroc_limb")
    assert not limb.passed and limb.champion == pytest.approx(0.99)

    # A drop of at most the tolerance on one kind is accepted.
    small = {**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 0.99), "limb": 0.97})}
    store.register("gate-ood-per-kind", aurocs=small)
    assert store.client.promote("gate-ood-per-kind", 3).passed


def test_a_drop_on_one_shared_kind_is_refused_when_the_candidate_faced_a_new_kind_too() -> None:
    champion = RegisteredVersion(
        name="cxr-findings",
        version="1",
        run_id=None,
        sha256="a" * 64,
        parity_passed=True,
        metrics={**CHAMPION, **_ood(dict.fromkeys(_FIRST_KINDS, 0.99))},
    )
    hidden = {**CHAMPION, **_ood({**dict.fromkeys(_FIRST_KINDS, 1.0), "photo": 0.90, "lateral": 0.8})}
    decision = evaluate_gate(
        RegisteredVersion(
            name="cxr-findings", version="2", run_id=None, sha256="b" * 64, parity_passed=True, metrics=hidden
        ),
        champion,
    )
    assert not decision.passed
    assert "ood_auroc_photo is 0.9000 against 0.9900 for champion version 1" in decision.reason
    assert "not compared: lateral" in decision.reason


def test_a_first_champion_is_held_to_the_ood_pass_rate_floor(store: Store) -> None:
    """The 98 % floor is absolute (docs/ml-engineer.md, section 6): a guard that refuses one ordinary
    film in ten does not become the first champion just because there is nothing to compare it with."""
    store.register("gate-first-floor", extra_metrics={"ood_test_pass_rate": 0.90})

    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-first-floor", 1)

    assert "lets only 0.900 of in-distribution test images through (at least 0.98 required)" in (
        refused.value.reason
    )
    assert store.client.resolve("gate-first-floor", "champion") is None

    store.register("gate-first-floor", extra_metrics={"ood_test_pass_rate": 0.99})
    decision = store.client.promote("gate-first-floor", 2)
    assert decision.passed and "first champion" in decision.reason


def _imaging(version: str, metrics: dict[str, float]) -> RegisteredVersion:
    return RegisteredVersion(
        name="cxr-findings",
        version=version,
        run_id=None,
        sha256=version * 64,
        parity_passed=True,
        metrics=metrics,
    )


@pytest.mark.parametrize(
    "figure",
    ["val_score_median_nodule", "threshold_nodule", "val_sensitivity_nodule", "val_ece", "val_auroc_nodule"],
)
def test_a_candidate_figure_that_is_not_a_number_is_refused_by_name(figure: str) -> None:
    """NaN fails every comparison, so a NaN median or threshold made the score-shift check see no shift
    and pass, and a NaN elsewhere was refused as "nan against 0.0300". It is refused, by name."""
    decision = evaluate_gate(_imaging("2", {**CHAMPION, figure: float("nan")}), _imaging("1", CHAMPION))

    assert not decision.passed
    assert f"{figure} is not a number" in decision.reason
    assert "measure" in decision.reason


def test_a_champion_figure_that_is_not_a_number_refuses_with_the_champion_named() -> None:
    decision = evaluate_gate(_imaging("2", CHAMPION), _imaging("1", {**CHAMPION, "val_ece": float("nan")}))

    assert not decision.passed
    assert "val_ece of champion version 1 is not a number" in decision.reason


def test_a_first_champion_whose_figure_is_not_a_number_is_refused() -> None:
    decision = evaluate_gate(_imaging("1", {**CHAMPION, "ood_test_pass_rate": float("nan")}), None)

    assert not decision.passed
    assert "ood_test_pass_rate is not a number" in decision.reason


def test_a_nan_gate_tag_in_the_registry_refuses_promotion(store: Store) -> None:
    store.register("gate-nan", aurocs=CHAMPION)
    store.client.promote("gate-nan", 1)
    store.register("gate-nan", aurocs=CHAMPION)
    store.client.mlflow_client.set_model_version_tag("gate-nan", "2", "val_score_median_nodule", "nan")

    with pytest.raises(PromotionRefused) as refused:
        store.client.promote("gate-nan", 2)

    assert "val_score_median_nodule is not a number" in refused.value.reason
    assert store.client.resolve("gate-nan", "champion") == "1"
