"""The training-data line a server shows (``GET /v1/models``, each result's warnings, the FHIR Device) of a
model exported before exports left the folder out: the folder the data was read from goes, however the
ML engineer gave it (``--data`` is taken as typed: often relative to where the training ran).
"""

from __future__ import annotations

import pytest

from inference.runtime._meta import public_training_data


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        (
            "dxassist-export data set at exports/hopital-nord-2025 (n=4200 frontal images)",
            "dxassist-export data set (n=4200 frontal images)",
        ),
        (
            "dxassist-export data set at ../data/hopital nord 2025 (n=4200 frontal images)",
            "dxassist-export data set (n=4200 frontal images)",
        ),
        (
            "MIMIC-IV-ED triage vital signs (50 ED stays), training split of the data at data/mimic-iv-ed",
            "MIMIC-IV-ED triage vital signs (50 ED stays), training split of the data",
        ),
        (  # the absolute form, as before
            "dxassist-export data set at /home/ml-eng/exports/hopital-nord-2025 (n=4200 frontal images)",
            "dxassist-export data set (n=4200 frontal images)",
        ),
        (  # a line without a folder is left as written
            "chest-radiographs data set of Hopital Nord, 2025 export (n=4200 frontal images)",
            "chest-radiographs data set of Hopital Nord, 2025 export (n=4200 frontal images)",
        ),
    ],
)
def test_an_earlier_exports_folder_is_left_out_of_the_line_shown(written: str, shown: str) -> None:
    assert public_training_data(written) == shown
