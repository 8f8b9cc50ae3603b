"""The ``dxassist.training_data`` line an export writes: what the model learned from, not where from.

Servers show the line to every user (``GET /v1/models``, each result's warnings): the folder the data was
read from on the ML engineer's machine stays out of that line (``dxassist.config`` keeps only its name).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from training.data import generate_vitals
from training.pipeline import ImagingConfig, TriageConfig, _imaging, _triage

FOLDER = Path("/home/ml-eng/exports/hopital-nord-2025")


def test_the_imaging_line_names_the_data_set_without_its_folder(tmp_path: Path) -> None:
    cfg = ImagingConfig.from_profile("quick", out_dir=tmp_path, dataset="dxassist-export", data=FOLDER)
    line = _imaging.training_data_line(cfg, 1840)
    assert line == "dxassist-export data set (n=1840 frontal images)"


def test_the_triage_line_names_the_data_set_without_its_folder() -> None:
    cfg = TriageConfig(dataset="mimic-iv-ed", data=FOLDER)
    train = dataclasses.replace(
        generate_vitals(50, seed=1), source="MIMIC-IV-ED triage vital signs (50 ED stays)"
    )
    line = _triage.training_data_line(cfg, train)
    assert line == "MIMIC-IV-ED triage vital signs (50 ED stays), training split (n=50)"
    assert str(FOLDER) not in line
