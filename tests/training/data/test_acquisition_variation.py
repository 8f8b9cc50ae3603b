"""Acquisition variation: bounded, deterministic, masks move with the anatomy, phantoms unchanged."""

import json

import numpy as np

from training.data import FINDINGS, build_synthetic_imaging, generate_phantom, load_masks, vary_acquisition


def _phantom(seed: int, **kw):
    return generate_phantom(np.random.default_rng(seed), size_range=(320, 400), **kw)


def test_same_stream_gives_the_same_variation_and_another_stream_another():
    p = _phantom(3, findings={"nodule": True})
    a = vary_acquisition(np.random.default_rng(1), p)
    b = vary_acquisition(np.random.default_rng(1), p)
    c = vary_acquisition(np.random.default_rng(2), p)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks["nodule"], b.masks["nodule"])
    assert not np.array_equal(a.image, c.image)
    # the phantom passed in is not modified
    assert np.array_equal(p.image, _phantom(3, findings={"nodule": True}).image)


def test_varied_images_stay_chest_films_with_their_findings_and_labels():
    changed = 0
    for i in range(12):
        p = _phantom(40 + i, findings={"nodule": True, "pleural_effusion": i % 2 == 0})
        v = vary_acquisition(np.random.default_rng([9, i]), p)
        assert v.image.shape == p.image.shape and v.image.dtype == np.float32
        assert 0.0 <= float(v.image.min()) and float(v.image.max()) <= 1.0
        assert v.findings == p.findings and v.view == p.view
        for name in FINDINGS:
            # a planted finding keeps a mask of about its size (it moved, it was not cut off)
            before, after = int(p.masks[name].sum()), int(v.masks[name].sum())
            assert (after > 0) == (before > 0), (i, name)
            if before:
                assert 0.6 * before <= after <= 1.6 * before, (i, name, before, after)
        # the films still look alike: most of the image is within a small difference
        changed += float(np.mean(np.abs(v.image - p.image) > 0.02)) > 0.05
    assert changed >= 6  # variation is not a no-op


def test_strength_zero_leaves_the_image_as_it_was():
    p = _phantom(5)
    v = vary_acquisition(np.random.default_rng(0), p, strength=0.0)
    assert np.array_equal(v.image, p.image)


def test_builder_varies_acquisitions_without_changing_labels_or_splits(tmp_path):
    plain = build_synthetic_imaging(tmp_path / "plain", n=6, seed=4, size_range=(160, 200))
    varied = build_synthetic_imaging(
        tmp_path / "varied", n=6, seed=4, size_range=(160, 200), acquisition_variation=1.0
    )
    assert (plain / "labels.csv").read_text() == (varied / "labels.csv").read_text()
    assert json.loads((varied / "dataset.json").read_text())["acquisition_variation"] == 1.0
    differ = sum(
        (plain / "images" / f"{i:06d}.dcm").read_bytes() != (varied / "images" / f"{i:06d}.dcm").read_bytes()
        for i in range(6)
    )
    assert differ >= 3
    for i in range(6):
        a = load_masks(plain / "masks" / f"{i:06d}.npz")
        b = load_masks(varied / "masks" / f"{i:06d}.npz")
        assert {k for k in FINDINGS if a[k].any()} == {k for k in FINDINGS if b[k].any()}
