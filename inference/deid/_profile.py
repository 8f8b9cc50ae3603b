"""The DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, as dxassist applies it.

**The table.** PS3.15 Table E.1-1 of the **2026c** edition, every attribute with its Basic Profile
action, as transcribed from the standard by the maintained ``dicom-anonymizer`` package (Kitware,
BSD-3-Clause; module ``dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c``, pinned in
``pyproject.toml``). Nothing is downloaded at run time, and nothing of the table is retyped here: a new
edition is a new pin and a new :data:`EDITION`. The tests iterate the whole table.

**Actions** (PS3.15 E.1.1): ``D`` dummy value, ``Z`` zero length, ``X`` remove, ``U`` new UID,
consistent within the export. Where the table leaves a choice, dxassist takes the strictest that keeps
the exported radiograph (CR, DX, Secondary Capture IODs) valid:

- ``Z/D`` -> ``Z``; ``X/D`` -> ``X``; ``X/Z/D`` -> ``X`` (none of those is type 1 in these IODs);
- ``X/Z`` -> ``X``, except ``Z`` for :data:`TYPE_2_IN_RADIOGRAPHS` (type 2 in the DX IOD);
- ``X/Z/U*`` -> the sequence is kept, each item cleaned by these same rules and every UID in it
  replaced (``U``);
- ``D`` on a sequence: each item cleaned; ``D`` on a UID: a new UID.

**Options** claimed (DeidentificationMethodCodeSequence):

- *Retain Longitudinal Temporal Information with Modified Dates* (113107): every date (DA) and
  date-time (DT), listed in the table or not, is moved back by a whole number of days fixed per
  patient, so intervals between one patient's studies survive; times of day (TM) are kept, which a
  whole-day shift leaves consistent. The patient's birth date and birth time are not retained: they
  get their Basic Profile action (``Z`` and ``X``). (The package ships the Basic Profile column only;
  this is the rule dxassist applies for the option's column, stated here rather than transcribed.)

Beyond the table: private attributes, curves (50xx) and overlays (60xx) are removed as whole groups,
every other person name (PN) is removed, every UID that is not a DICOM-defined one (``1.2.840.10008.``)
is replaced, and sequences are cleaned item by item. PatientName and PatientID (``Z`` in the table) are
then set to the keyed pseudonym, so one patient's exports stay linked.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Final

from inference.deid._errors import DeidError

EDITION: Final = "2026c"
TABLE_MODULE: Final = "dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c"

BASIC_PROFILE: Final = "113100"
RETAIN_LONGITUDINAL_MODIFIED_DATES: Final = "113107"
METHOD_TEXT: Final = f"PS3.15 E.1-1 {EDITION} Basic Profile 113100 + 113107; dxassist"
CODE_MEANINGS: Final[dict[str, str]] = {
    BASIC_PROFILE: "Basic Application Confidentiality Profile",
    RETAIN_LONGITUDINAL_MODIFIED_DATES: "Retain Longitudinal Temporal Information Modified Dates Option",
}

# The package's group names for the actions of the table's Basic Profile column.
_GROUPS: Final[dict[str, str]] = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
_CHOICE: Final[dict[str, str]] = {"Z/D": "Z", "X/D": "X", "X/Z/D": "X", "X/Z": "X", "X/Z/U*": "C"}

TYPE_2_IN_RADIOGRAPHS: Final[frozenset[int]] = frozenset({0x00400555})  # AcquisitionContextSequence
PATIENT_BIRTH: Final[frozenset[int]] = frozenset({0x00100030, 0x00100032})  # birth date, birth time
DICOM_ROOT: Final = "1.2.840.10008."

# What dxassist does to one element (the values of applied_action):
REMOVE, EMPTY, DUMMY, NEW_UID, CLEAN_ITEMS, SHIFT_DATE, KEEP = "X", "Z", "D", "U", "C", "S", "K"


class ProfileUnavailable(DeidError, RuntimeError):
    """The package that ships Table E.1-1 is not installed."""


@cache
def table() -> dict[int, str]:
    """Table E.1-1: tag (as an int) -> Basic Profile action (``D``, ``Z``, ``X``, ``U``, ``X/Z`` ...).

    Raises:
        ProfileUnavailable: When ``dicom-anonymizer`` is missing.
    """
    rows, _masked = _load()
    return rows


@cache
def masked_table() -> tuple[tuple[int, int, str], ...]:
    """The table's rows for repeating groups: (tag, mask, action); ``tag & mask`` identifies a row."""
    _rows, masked = _load()
    return masked


def _load() -> tuple[dict[int, str], tuple[tuple[int, int, str], ...]]:
    try:
        module = importlib.import_module(TABLE_MODULE)
    except ImportError as e:
        raise ProfileUnavailable(
            "De-identification needs PS3.15 Table E.1-1 from the dicom-anonymizer package; "
            "install dxassist with its dependencies (pip install dicom-anonymizer)."
        ) from e
    rows: dict[int, str] = {}
    masked: list[tuple[int, int, str]] = []
    for group, action in _GROUPS.items():
        for entry in getattr(module, group):
            tag = (entry[0] << 16) | entry[1]
            if len(entry) == 4:
                masked.append((tag, (entry[2] << 16) | entry[3], action))
            elif rows.setdefault(tag, action) != action:
                raise ProfileUnavailable(f"Table E.1-1 lists ({tag >> 16:04X},{tag & 0xFFFF:04X}) twice.")
    return rows, tuple(masked)


def basic_action(tag: int) -> str | None:
    """The table's Basic Profile action for ``tag``, or None when the table does not list it."""
    found = table().get(tag)
    if found is not None:
        return found
    for row, mask, action in masked_table():
        if tag & mask == row:
            return action
    return None


def applied_action(tag: int, vr: str) -> str:
    """What dxassist does to an element: one of ``X Z D U C S K`` (see the constants above).

    Args:
        tag: The element's tag as an int.
        vr: Its value representation.
    """
    group = tag >> 16
    if group % 2 or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
        return REMOVE  # private, curves, overlays: anything can be in there
    basic = basic_action(tag)
    if tag not in PATIENT_BIRTH and vr in ("DA", "DT"):
        return SHIFT_DATE  # option 113107, listed or not
    if basic is not None and tag not in PATIENT_BIRTH and vr == "TM":
        return KEEP  # option 113107: a whole-day shift leaves times of day consistent
    if basic is None:
        if vr == "PN":
            return REMOVE
        if vr == "UI":
            return NEW_UID
        return CLEAN_ITEMS if vr == "SQ" else KEEP
    if basic == "X/Z" and tag in TYPE_2_IN_RADIOGRAPHS:
        basic = "Z"
    action = _CHOICE.get(basic, basic)
    if action == DUMMY and vr == "SQ":
        return CLEAN_ITEMS
    if action in (DUMMY, NEW_UID) and vr == "UI":
        return NEW_UID
    return action
