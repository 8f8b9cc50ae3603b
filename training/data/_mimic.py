"""MIMIC-IV-ED adapter: triage vital signs and an outcome file → :class:`VitalsTable`.

Expected files (MIMIC-IV-ED is credentialed data from PhysioNet; dxassist never ships it):

``triage.csv`` (or ``triage.csv.gz``), as distributed in ``mimic-iv-ed/ed/``, with the columns
``subject_id, stay_id, temperature, heartrate, resprate, o2sat, sbp, dbp, pain, acuity, chiefcomplaint``.
``temperature`` is in degrees **Fahrenheit** there and is converted to °C (one decimal). ``pain``,
``acuity`` and ``chiefcomplaint`` are not used (the acuity is itself a triage decision, so using it
would leak the answer).

``outcome.csv`` (which you derive, e.g. admission to intensive care or death within 24 h of the ED
stay), with the columns ``stay_id, outcome`` where ``outcome`` is 0 or 1.

Stays without an outcome row are dropped. Empty, non-numeric or implausible values become missing
(the plausible ranges are those of :data:`inference.triage.PLAUSIBLE_RANGES`, so every row converts to
valid :class:`~inference.triage.VitalSigns`); a diastolic pressure not below the systolic is dropped.
``on_oxygen`` and consciousness are not recorded at ED triage, so they are missing in every row and
NEWS2 (which needs both) cannot be computed on this data set.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from inference.triage import FEATURES, PLAUSIBLE_RANGES
from training.data._vitals import VitalsTable
from training.errors import TrainingError

logger = logging.getLogger(__name__)

TRIAGE_COLUMNS = (
    "subject_id",
    "stay_id",
    "temperature",
    "heartrate",
    "resprate",
    "o2sat",
    "sbp",
    "dbp",
    "pain",
    "acuity",
    "chiefcomplaint",
)
OUTCOME_COLUMNS = ("stay_id", "outcome")

# MIMIC-IV-ED column → dxassist feature
_MAPPING = {
    "resprate": "respiratory_rate",
    "o2sat": "spo2",
    "sbp": "systolic_bp",
    "dbp": "diastolic_bp",
    "heartrate": "heart_rate",
    "temperature": "temperature",
}


class MimicFormatError(TrainingError, ValueError):
    """A MIMIC-IV-ED file is missing, unreadable or lacks the expected columns."""


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MimicFormatError(f"Could not read {path}: {e.strerror or e}.") from e
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise MimicFormatError(f"{path} is not a valid gzip file.") from e
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
    header = set(reader.fieldnames or ())
    absent = [c for c in required if c not in header]
    if absent:
        raise MimicFormatError(
            f"{path.name} lacks the column(s) {', '.join(absent)}; "
            f"expected the columns {', '.join(required)}."
        )
    yield from reader


def _number(text: str | None) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def fahrenheit_to_celsius(value: float) -> float:
    """°F → °C rounded to one decimal (the resolution NEWS2 and charts use)."""
    return round((value - 32.0) * 5.0 / 9.0, 1)


def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MimicFormatError(
        f"{directory} holds no {name} (or {name}.gz); see training.data._mimic for the format."
    )


def load_mimic_ed(triage_csv: Path, outcome_csv: Path) -> VitalsTable:
    """Read MIMIC-IV-ED triage vital signs and their outcomes.

    Args:
        triage_csv: ``triage.csv`` or ``triage.csv.gz`` in the MIMIC-IV-ED layout.
        outcome_csv: ``stay_id, outcome`` (0/1) per ED stay.

    Returns:
        A :class:`VitalsTable` with one row per stay that has an outcome, grouped by ``subject_id`` so
        splits keep a patient's stays together.

    Raises:
        MimicFormatError: A file is missing, unreadable or lacks a required column, or an outcome is not 0/1.
    """
    outcomes: dict[str, int] = {}
    for line, row in enumerate(_rows(Path(outcome_csv), OUTCOME_COLUMNS), start=2):
        value = (row["outcome"] or "").strip()
        if value not in ("0", "1"):
            raise MimicFormatError(f"{Path(outcome_csv).name} line {line}: 'outcome' must be 0 or 1.")
        outcomes[(row["stay_id"] or "").strip()] = int(value)

    columns: dict[str, list[float]] = {name: [] for name in FEATURES}
    labels: list[int] = []
    groups: list[int] = []
    dropped = 0
    for row in _rows(Path(triage_csv), TRIAGE_COLUMNS):
        stay = (row["stay_id"] or "").strip()
        if stay not in outcomes:
            dropped += 1
            continue
        values: dict[str, float] = {}
        for source, name in _MAPPING.items():
            value = _number(row[source])
            if name == "temperature" and not np.isnan(value):
                value = fahrenheit_to_celsius(value)
            lo, hi, _ = PLAUSIBLE_RANGES[name]
            values[name] = value if lo <= value <= hi else float("nan")  # NaN compares False: stays NaN
        if not values["diastolic_bp"] < values["systolic_bp"] and not np.isnan(values["systolic_bp"]):
            values["diastolic_bp"] = float("nan")
        values["on_oxygen"] = float("nan")
        values["consciousness"] = float("nan")
        for name in FEATURES:
            columns[name].append(values[name])
        labels.append(outcomes[stay])
        subject = _number(row["subject_id"])
        groups.append(int(subject) if not np.isnan(subject) else -len(groups) - 1)
    if dropped:
        logger.warning("%d MIMIC-IV-ED triage rows have no outcome row and were left out.", dropped)
    if not labels:
        raise MimicFormatError(
            "No triage row has a matching outcome row; check that both files use the same stay_id."
        )
    n = len(labels)
    return VitalsTable(
        columns={name: np.asarray(v, dtype=np.float64) for name, v in columns.items()},
        spo2_scale=np.ones(n, dtype=np.int8),  # the scale is not recorded at ED triage
        label=np.asarray(labels, dtype=np.int8),
        group=np.asarray(groups, dtype=np.int64),
        source=f"MIMIC-IV-ED triage vital signs ({n} ED stays)",
        synthetic=False,
    )


def load_mimic_ed_dir(directory: Path) -> VitalsTable:
    """:func:`load_mimic_ed` on ``directory/triage.csv[.gz]`` and ``directory/outcome.csv[.gz]``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MimicFormatError(
            f"{directory} is not a directory; pass the folder holding triage.csv and outcome.csv."
        )
    return load_mimic_ed(_find(directory, "triage.csv"), _find(directory, "outcome.csv"))
