"""Rebuild the committed demo studies (``seeds/studies/``) from ``seeds/recipe.json``, byte for byte.

Usage::

    python -m training.data.seeds --out seeds/studies [--recipe seeds/recipe.json]

The recipe names every file with its view, planted findings and DICOM encoding; study ``i`` of the
recipe is drawn from ``numpy.random.default_rng([seed, i])``, so the output depends on nothing else
(no clock, no environment). The studies are synthetic phantoms, not patients.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.data._dicom_writer import DicomStyle, write_study
from training.data._imaging import DatasetError, save_masks, write_labels
from training.data._phantom import FINDINGS, generate_phantom

logger = logging.getLogger(__name__)

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "seeds" / "recipe.json"
_STYLE_KEYS = ("modality", "photometric", "bits_stored", "rescale_slope", "rescale_intercept", "voi_sigmoid",
               "transfer_syntax")  # fmt: skip


def load_recipe(path: Path = DEFAULT_RECIPE) -> dict[str, Any]:
    """Read and check a seed recipe."""
    try:
        recipe = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise DatasetError(f"The seed recipe {path} does not exist; pass --recipe with its path.") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"The seed recipe {path} is not valid JSON: {e}") from e
    for key in ("seed", "n", "size_range", "studies"):
        if key not in recipe:
            raise DatasetError(f"The seed recipe {path} lacks the key {key!r}.")
    if recipe["n"] != len(recipe["studies"]):
        raise DatasetError(
            f"The seed recipe says n={recipe['n']} but lists {len(recipe['studies'])} studies."
        )
    return recipe


def build_seeds(out_dir: Path, recipe: dict[str, Any]) -> list[Path]:
    """Write the recipe's studies, their masks and ``labels.csv`` into ``out_dir``.

    Returns:
        Every file written, relative paths sorted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(recipe["seed"])
    size_range = (int(recipe["size_range"][0]), int(recipe["size_range"][1]))
    rows = []
    written = []
    for i, spec in enumerate(recipe["studies"]):
        unknown = set(spec["findings"]) - set(FINDINGS)
        if unknown:
            raise DatasetError(f"Seed study {spec['file']} names unknown findings {sorted(unknown)}.")
        rng = np.random.default_rng([seed, i])
        phantom = generate_phantom(
            rng, findings=dict.fromkeys(spec["findings"], True), size_range=size_range, view=spec["view"]
        )
        style = DicomStyle(**{k: spec[k] for k in _STYLE_KEYS if k in spec})
        path = write_study(
            phantom, out / spec["file"], index=i, seed=seed, style=style, study_index=int(spec["study"]),
            series_number=int(spec.get("series", 1)),
        )  # fmt: skip
        mask_path = save_masks(out / "masks" / f"{Path(spec['file']).stem}.npz", phantom.masks)
        written += [path, mask_path]
        rows.append([spec["file"], "", spec["view"]] + [int(phantom.findings[k]) for k in FINDINGS])
    write_labels(out / "labels.csv", rows)
    written.append(out / "labels.csv")
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m training.data.seeds``)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.data.seeds", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the studies into")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="seed recipe JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = build_seeds(args.out, load_recipe(args.recipe))
    logger.info("Wrote %d files to %s", len(files), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
