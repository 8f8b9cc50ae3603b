"""A generated DICOM archive for the batch-scoring tests and benchmark: one small chest film per study.

Every ``refuse_every``-th study is a CT (refused with ``unsupported_modality``); every third film has the
bright square that the tiny imaging model calls positive. Studies sit in nested folders with a
non-DICOM file among them, as a real export does. The patient names are distinctive so the tests can
look for them in the command's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "api"))
from _api_dicom import chest_dicom, uid  # noqa: E402

PATIENT_NAME = "Vandermolen^Ottilie"


def write_archive(root: Path, studies: int, *, refuse_every: int = 10, size: int = 64) -> tuple[int, int]:
    """Write the archive; returns (studies the model can score, studies refused)."""
    refused = 0
    for i in range(studies):
        folder = root / f"site-{i % 3}" / f"study-{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        ct = refuse_every > 0 and i % refuse_every == refuse_every - 1
        refused += ct
        blob = chest_dicom(
            study=uid(77, i),
            sop=uid(77, i, 1),
            modality="CT" if ct else "CR",
            size=size,
            seed=i,
            blob=i % 3 == 0,
            patient_id=f"IPP-BATCH-{i:05d}",
            patient_name=PATIENT_NAME,
        )
        (folder / "IM0001").write_bytes(blob)
    (root / "site-0" / "DICOMDIR.txt").write_text("an index, not a DICOM file\n")
    return studies - refused, refused
