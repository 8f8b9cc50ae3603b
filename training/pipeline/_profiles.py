"""``ImagingConfig``: typed defaults, profile presets, YAML and keyword overrides (as timm ``train.py``).

Precedence, lowest first: the dataclass defaults, the profile preset, a YAML file, keyword arguments
(the command-line flags). The resolved config travels with every artifact (checkpoint, ONNX
metadata, model card, MLflow params; :func:`config_record`: without the training machine's folders), so a
model can always be traced back to how it was trained.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from training.errors import TrainingError

_C = TypeVar("_C")


class ConfigError(TrainingError, ValueError):
    """A training configuration names an unknown profile or field, or holds a value of the wrong kind."""


@dataclass
class ImagingConfig:
    """Everything that decides how ``cxr-findings`` is trained, evaluated and exported.

    Attributes:
        profile: the preset these values started from (``quick`` or ``full``).
        dataset: ``synthetic`` (generated phantoms) or a ``training.data.load_dataset`` adapter name.
        data: dataset location for non-synthetic datasets; ignored for ``synthetic``.
        seed: seeds data generation, the split and training. Keep it fixed within a profile: the
            validation split, which the promotion gate compares versions on, depends on it.
        out_dir: where data, checkpoint, ONNX, plots, metrics and model card are written.
        n_images: synthetic images to generate.
        size_range: smallest and largest side of the generated images, in pixels.
        lateral_fraction: share of generated lateral views (the loader keeps frontal ones).
        acquisition_variation: strength of the acquisition variation drawn on every generated image
            (exposure, noise, collimation, side markers, positioning: ``training.data.vary_acquisition``),
            so neither the classifier nor the OOD guard learns one perfect film; 0 turns it off.
        input_size: model input side ``S`` in pixels (also written to the preprocessing metadata).
        widths: channels per residual stage of ``CxrNet``.
        depths: residual blocks per stage.
        strides: stride of each stage; with the stem's 2, the CAM side is ``S / (2 * prod)``.
        pooling: how the CAM becomes a logit: ``mean`` (global average, as Zhou et al.) or ``lse``
            (log-sum-exp, a smooth maximum that small findings such as nodules are not drowned in).
        lse_r: sharpness of ``lse`` pooling (towards the mean as it falls to 0, the maximum as it grows).
        epochs: training epochs.
        batch_size: images per optimisation step.
        lr: peak AdamW learning rate (cosine schedule after warm-up).
        weight_decay: AdamW weight decay.
        warmup_epochs: linear warm-up length in epochs.
        max_shift: largest random translation in pixels (augmentation).
        intensity_jitter: half-width of random gain/offset on normalised intensities (augmentation).
        pos_weight: weight positives by the inverse prevalence of each finding in the loss.
        loc_weight: weight of the localisation loss that teaches the CAM where findings are, used only
            when the data set has finding masks (synthetic phantoms do); 0 turns it off.
        pointing_tolerance: margin in model pixels for the tolerant pointing game
            (``test_pointing_game_tolerant``); None means half a CAM cell. The strict
            ``test_pointing_game`` has no margin.
        sensitivity_target: sensitivity each finding's operating threshold reaches on validation.
        ood_pass_rate: share of in-distribution validation images the OOD guard lets through; the OOD
            threshold is that quantile of the validation OOD scores.
        ood_shrinkage: weight of the scaled identity in the shrunk feature covariance of the OOD guard.
        ood_eval_per_kind: images per kind in the generated out-of-distribution evaluation set.
        ood_contrast_laterals: lateral phantoms (drawn apart from the evaluation set) whose mean features
            the OOD guard learns to tell frontal films from (``training.models._ood``, "A known
            neighbour"); 0 turns the term off. Synthetic data only: a model trained on another data set
            would need that set's own laterals.
        ood_contrast_weight: weight of that term in the OOD score.
        ood_mirror_weight: weight in the OOD score of the mirrored-frontal neighbour (the training images
            flipped left-right: a film with the heart on the wrong side); 0 turns the term off.
        n_boot: bootstrap resamples for AUROC confidence intervals.
        workers: processes decoding DICOM files when loading the data set.
        threads: torch intra-op threads.
        progress: show tqdm progress bars.
    """

    profile: str = "quick"
    dataset: str = "synthetic"
    data: Path | None = None
    seed: int = 0
    out_dir: Path = Path("var/runs/cxr-findings")
    n_images: int = 2400
    size_range: tuple[int, int] = (320, 640)
    lateral_fraction: float = 0.0
    acquisition_variation: float = 1.0
    input_size: int = 160
    widths: tuple[int, ...] = (16, 32, 48, 64)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    strides: tuple[int, ...] = (2, 2, 1, 1)
    pooling: str = "lse"
    lse_r: float = 1.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    max_shift: int = 8
    intensity_jitter: float = 0.1
    pos_weight: bool = False
    loc_weight: float = 0.2
    pointing_tolerance: int | None = None
    sensitivity_target: float = 0.85
    ood_pass_rate: float = 0.995
    ood_shrinkage: float = 0.01
    ood_eval_per_kind: int = 24
    ood_contrast_laterals: int = 160
    ood_contrast_weight: float = 10.0
    ood_mirror_weight: float = 40.0
    n_boot: int = 1000
    workers: int = 2
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        # Coerce what YAML and flags deliver (lists, strings) into the declared types.
        self.out_dir = Path(self.out_dir)
        self.data = Path(self.data) if self.data is not None else None
        self.size_range = (int(self.size_range[0]), int(self.size_range[1]))
        self.widths = tuple(int(v) for v in self.widths)
        self.depths = tuple(int(v) for v in self.depths)
        self.strides = tuple(int(v) for v in self.strides)
        if not (len(self.widths) == len(self.depths) == len(self.strides)):
            raise ConfigError(
                f"widths, depths and strides must have one entry per stage; got {len(self.widths)}, "
                f"{len(self.depths)} and {len(self.strides)}."
            )
        cam_stride = 2
        for s in self.strides:
            cam_stride *= s
        if self.input_size % cam_stride:
            raise ConfigError(
                f"input_size {self.input_size} must be a multiple of the network stride {cam_stride} "
                "so the CAM covers the image exactly."
            )
        if self.loc_weight < 0 or (self.pointing_tolerance is not None and self.pointing_tolerance < 0):
            raise ConfigError("loc_weight and pointing_tolerance must not be negative.")
        if not 0.5 <= self.ood_pass_rate < 1.0 or not 0.0 < self.ood_shrinkage < 1.0:
            raise ConfigError(
                "ood_pass_rate must lie in [0.5, 1) and ood_shrinkage strictly between 0 and 1; got "
                f"{self.ood_pass_rate} and {self.ood_shrinkage}."
            )
        if self.ood_eval_per_kind < 1:
            raise ConfigError("ood_eval_per_kind must be a positive integer.")
        if self.ood_contrast_laterals < 0 or not self.ood_contrast_weight > 0:
            raise ConfigError(
                "ood_contrast_laterals must not be negative and ood_contrast_weight must be positive; got "
                f"{self.ood_contrast_laterals} and {self.ood_contrast_weight}."
            )
        if not self.ood_mirror_weight >= 0:
            raise ConfigError(f"ood_mirror_weight must not be negative; got {self.ood_mirror_weight}.")
        if self.pooling not in ("mean", "lse") or self.lse_r <= 0:
            raise ConfigError(
                f"pooling must be 'mean' or 'lse' and lse_r positive; got {self.pooling!r}, {self.lse_r}."
            )
        if self.acquisition_variation < 0:
            raise ConfigError("acquisition_variation must not be negative.")
        if self.epochs < 1 or self.batch_size < 1 or self.n_images < 1:
            raise ConfigError("epochs, batch_size and n_images must be positive integers.")
        if self.dataset != "synthetic" and self.data is None:
            raise ConfigError(
                f"Dataset {self.dataset!r} needs a data path (--data); only 'synthetic' is generated."
            )

    @property
    def cam_stride(self) -> int:
        """Input pixels per CAM cell."""
        stride = 2
        for s in self.strides:
            stride *= s
        return stride

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_record(self) -> dict[str, Any]:
        """The config as it travels with the model: see :func:`config_record`."""
        return config_record(self.to_dict())

    @classmethod
    def from_profile(
        cls, profile: str = "quick", *, yaml_path: Path | None = None, **overrides: Any
    ) -> ImagingConfig:
        """Resolve a config: defaults < ``profile`` preset < YAML file < ``overrides``.

        ``None`` overrides are ignored, so unset command-line flags keep the preset's value.
        """
        return resolve_config(cls, "imaging", IMAGING_PROFILES, profile, yaml_path, overrides)


def config_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config's :meth:`to_dict` values as they travel with the model (ONNX ``dxassist.config``, model
    card, checkpoint, MLflow params), without the training machine's folders.

    ``data`` keeps only its folder's name (the data set's own name, an export's ``2026-12``); ``out_dir``,
    where the run wrote its files, is left out. What reproduction needs stays: ``dataset``, ``seed`` and
    every training setting. A model is read on other machines (registry, servers, other sites), and the
    folders of the machine that trained it are of no use there and none of their business.
    """
    record = {key: value for key, value in values.items() if key != "out_dir"}
    if record.get("data") is not None:
        # abspath: a relative folder ("." or "exports/2026-12") is named as well, without touching disk.
        record["data"] = Path(os.path.abspath(record["data"])).name
    return record


def resolve_config(
    cls: type[_C],
    kind: str,
    profiles: Mapping[str, Mapping[str, Any]],
    profile: str,
    yaml_path: Path | None,
    overrides: Mapping[str, Any],
) -> _C:
    """Build a training config dataclass: defaults < ``profile`` preset < YAML file < ``overrides``.

    ``None`` overrides are ignored. Unknown profiles, unknown fields and wrongly typed values raise
    :class:`ConfigError` naming ``kind`` (``imaging`` or ``triage``).
    """
    if profile not in profiles:
        raise ConfigError(f"Unknown {kind} profile {profile!r}; choose one of {sorted(profiles)}.")
    values: dict[str, Any] = {"profile": profile, **profiles[profile]}
    if yaml_path is not None:
        values.update(_read_yaml(Path(yaml_path)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"Unknown {kind} config field(s) {unknown}; accepted fields are {sorted(known)}.")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"The {kind} config has a value of the wrong type: {e}.") from e


def _read_yaml(path: Path) -> Mapping[str, Any]:
    import yaml

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"Could not read the config file {path}: {e}.") from e
    if content is None:
        return {}
    if not isinstance(content, Mapping):
        raise ConfigError(
            f"The config file {path} must hold a mapping of field: value; got {type(content).__name__}."
        )
    return content


# ``quick`` is what `dxassist bootstrap` trains: sized to finish in a few minutes on 2 CPU cores.
# ``full`` trades time for margin (more images, a larger input, a wider and deeper network): about an
# hour on a workstation CPU, minutes on a GPU.
IMAGING_PROFILES: dict[str, dict[str, Any]] = {
    "quick": {},
    "full": {
        "n_images": 6000,
        "input_size": 224,
        "widths": (24, 48, 96, 128),
        "depths": (1, 1, 2, 2),
        "epochs": 20,
        "lr": 3e-3,
        "threads": 4,
        "workers": 4,
        "n_boot": 2000,
    },
}
