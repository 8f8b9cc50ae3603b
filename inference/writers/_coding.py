"""Coded concepts written into the SR and the secondary captures, and why each was chosen.

Standard codes first (SNOMED CT for findings, DICOM for document structure, LOINC for the procedure,
UCUM for units). Two concepts have no standard code for what the model reports, a calibrated
probability that a finding is present and the operating threshold it is compared with; they are
in the private coding scheme ``99DXA``, declared in the Coding Scheme Identification Sequence so a
reader can tell where they come from.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from inference.explain import FINDING_CODES, SNOMED_CT

if TYPE_CHECKING:
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from pydicom.sr.coding import Code

logger = logging.getLogger(__name__)

PRIVATE_SCHEME: Final = "99DXA"
PRIVATE_SCHEME_NAME: Final = "dxassist local codes"

# (value, scheme designator, meaning)
PROBABILITY: Final = ("PROBABILITY", PRIVATE_SCHEME, "Probability of finding")
THRESHOLD: Final = ("THRESHOLD", PRIVATE_SCHEME, "Operating threshold")
PERCENT: Final = ("%", "UCUM", "percent")
NO_UNITS: Final = ("1", "UCUM", "no units")
# The image-level statement of a result the algorithm refused as out of its training distribution.
ASSESSABILITY: Final = ("ASSESSABILITY", PRIVATE_SCHEME, "Assessability by the algorithm")
NOT_ASSESSABLE: Final = ("NOT_ASSESSABLE", PRIVATE_SCHEME, "Not assessable by the algorithm")
OOD_SCORE: Final = ("OOD_SCORE", PRIVATE_SCHEME, "Out-of-distribution score")
OOD_THRESHOLD: Final = ("OOD_THRESHOLD", PRIVATE_SCHEME, "Out-of-distribution threshold")
# CID 240 "Present/Absent" (SNOMED CT qualifier values).
PRESENT: Final = ("52101004", "SCT", "Present")
ABSENT: Final = ("272519000", "SCT", "Absent")
# LOINC procedure: the model reads one frontal chest radiograph (CID 100 is extensible).
CHEST_XR_SINGLE_VIEW: Final = ("36554-4", "LN", "XR Chest Single view")
# CID 7005: equipment that processed composite instances to create new ones.
PROCESSING_EQUIPMENT: Final = ("109102", "DCM", "Processing Equipment")

_SCHEMES: Final = {SNOMED_CT: "SCT"}


def code(concept: tuple[str, str, str]) -> Code:
    """A pydicom ``Code`` from a ``(value, scheme, meaning)`` triple."""
    from pydicom.sr.coding import Code

    value, scheme, meaning = concept
    return Code(value, scheme, meaning)


def finding_concept(finding_code: str, display: str) -> tuple[str, str, str]:
    """The coded concept of a model finding: SNOMED CT when known, else a private ``99DXA`` code.

    Args:
        finding_code: Model finding code (``pneumothorax``, ...).
        display: Display name used when the finding has no SNOMED CT concept.
    """
    known = FINDING_CODES.get(finding_code)
    if known is not None:
        system, value, meaning = known
        return (value, _SCHEMES.get(system, system), meaning)
    logger.warning("finding %s has no SNOMED CT concept; writing a private 99DXA code", finding_code)
    # Code Value is SH: 16 characters at most.
    return (finding_code.upper()[:16], PRIVATE_SCHEME, display[:64])


def private_scheme_item() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item declaring ``99DXA``."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name=PRIVATE_SCHEME_NAME,
        responsible_organization="dxassist",
    )
