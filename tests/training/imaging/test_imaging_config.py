"""ImagingConfig: defaults < profile < YAML < keyword overrides, with clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.pipeline import ConfigError, ImagingConfig


def test_profiles_differ_and_overrides_win(tmp_path: Path) -> None:
    quick = ImagingConfig.from_profile("quick")
    full = ImagingConfig.from_profile("full")
    assert quick.profile == "quick" and full.profile == "full"
    assert full.n_images > quick.n_images
    custom = ImagingConfig.from_profile("quick", epochs=3, data=None, out_dir=str(tmp_path))
    assert custom.epochs == 3 and custom.out_dir == tmp_path  # None means "flag not given"


def test_yaml_sits_between_profile_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "imaging.yaml"
    path.write_text("epochs: 7\nwidths: [8, 16, 32, 64]\nbatch_size: 16\n", encoding="utf-8")
    cfg = ImagingConfig.from_profile("quick", yaml_path=path, batch_size=8)
    assert cfg.epochs == 7
    assert cfg.widths == (8, 16, 32, 64)
    assert cfg.batch_size == 8


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = ImagingConfig.from_profile("quick", out_dir=tmp_path)
    again = ImagingConfig.from_profile(**{**json.loads(json.dumps(cfg.to_dict()))})
    assert again == cfg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "huge"}, "Unknown imaging profile"),
        ({"epochz": 3}, "Unknown imaging config field"),
        ({"input_size": 100}, "multiple of the network stride"),
        ({"dataset": "nih"}, "needs a data path"),
        ({"widths": (8, 16)}, "one entry per stage"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ImagingConfig.from_profile(**kwargs)


def test_unreadable_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        ImagingConfig.from_profile("quick", yaml_path=path)
