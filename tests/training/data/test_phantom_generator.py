"""Synthetic chest phantoms: determinism, findings and their masks, heart size."""

import numpy as np
import pytest

from training.data import FINDINGS, PhantomError, generate_phantom, sample_findings


def _phantom(seed: int, **kw):
    return generate_phantom(np.random.default_rng(seed), size_range=(320, 400), **kw)


def test_same_seed_gives_identical_phantoms_and_other_seeds_differ():
    a, b, c = _phantom(11), _phantom(11), _phantom(12)
    assert np.array_equal(a.image, b.image)
    assert a.findings == b.findings
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in FINDINGS)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("view", ["PA", "AP", "LL"])
@pytest.mark.parametrize("finding", FINDINGS)
def test_mask_is_non_empty_exactly_for_the_planted_finding_and_inside_the_body(view, finding):
    p = _phantom(FINDINGS.index(finding) + 100, findings={finding: True}, view=view, with_anatomy=True)
    assert p.findings == {k: k == finding for k in FINDINGS}
    assert p.view == view
    for name in FINDINGS:
        assert p.masks[name].shape == p.image.shape
        assert p.masks[name].dtype == np.bool_
        assert p.masks[name].any() == (name == finding), name
    mask = p.masks[finding]
    assert not (mask & ~p.anatomy["body"]).any()
    if finding != "cardiomegaly":  # lung findings lie in the lung fields
        assert (mask & p.anatomy["lungs"]).sum() >= 0.8 * mask.sum()


def test_normal_phantom_has_no_masks_and_a_plausible_image():
    p = _phantom(5, findings={}, with_anatomy=True)
    assert not any(m.any() for m in p.masks.values())
    assert p.image.dtype == np.float32 and 0.0 <= p.image.min() and p.image.max() <= 1.0
    lungs, body = p.anatomy["lungs"], p.anatomy["body"]
    # Air-filled lungs are darker than the rest of the body, and the body is brighter than the air outside.
    assert p.image[lungs].mean() < p.image[body & ~lungs].mean() - 0.15
    assert p.image[~body].mean() < p.image[lungs].mean()


def _measured_ctr(p) -> float:
    heart_cols = np.nonzero(p.anatomy["heart"].any(axis=0))[0]
    lung_cols = np.nonzero(p.anatomy["lungs"].any(axis=0))[0]
    return (heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1)


def test_cardiomegaly_enlarges_the_heart_beyond_a_ctr_of_055():
    big = [_phantom(200 + i, findings={"cardiomegaly": True}, with_anatomy=True) for i in range(6)]
    normal = [_phantom(300 + i, findings={}, with_anatomy=True) for i in range(6)]
    assert all(p.ctr > 0.55 and _measured_ctr(p) > 0.55 for p in big)
    assert all(0.4 <= p.ctr < 0.52 and _measured_ctr(p) < 0.52 for p in normal)
    # The cardiomegaly mask is the heart silhouette.
    assert all(np.array_equal(p.masks["cardiomegaly"], p.anatomy["heart"]) for p in big)


def test_sizes_follow_the_requested_range():
    for seed in range(8):
        p = generate_phantom(np.random.default_rng(seed), size_range=(320, 360), findings={})
        assert 320 <= max(p.image.shape) <= 360
        assert min(p.image.shape) >= 0.8 * 320 - 1


def test_sampled_findings_have_the_configured_prevalence_and_normal_fraction():
    rng = np.random.default_rng(0)
    draws = [sample_findings(rng, prevalence=0.25, normal_fraction=0.35) for _ in range(6000)]
    matrix = np.array([[d[k] for k in FINDINGS] for d in draws])
    assert abs((~matrix.any(axis=1)).mean() - 0.35) < 0.025
    assert np.all(np.abs(matrix.mean(axis=0) - 0.25) < 0.025)


def test_bad_arguments_are_refused_with_a_clear_message():
    rng = np.random.default_rng(0)
    with pytest.raises(PhantomError, match="Unknown finding"):
        generate_phantom(rng, findings={"fracture": True})
    with pytest.raises(PhantomError, match="Unknown view"):
        generate_phantom(rng, view="CT")
    with pytest.raises(PhantomError, match="cannot be reached"):
        sample_findings(rng, prevalence=0.8, normal_fraction=0.5)
