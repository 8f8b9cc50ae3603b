"""Coded concepts in DICOM form: the vocabulary's concepts as pydicom ``Code`` values, the 99DXA scheme.

The concepts themselves, and why each was chosen, are in :mod:`inference.vocabulary`; this module only
writes them the way DICOM wants (Coding Scheme Designator, Code Value at most 16 characters, the
private scheme declared in the Coding Scheme Identification Sequence so a reader can tell where our own
codes come from).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from inference.vocabulary import LOCAL, PRIVATE_SCHEME, PRIVATE_SCHEME_NAME, Concept, finding_concept

if TYPE_CHECKING:
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from pydicom.sr.coding import Code

logger = logging.getLogger(__name__)


def code(concept: Concept) -> Code:
    """A pydicom ``Code`` of a vocabulary concept."""
    from pydicom.sr.coding import Code

    return Code(concept.code, concept.designator, concept.display)


def finding_code(finding_code: str, display: str) -> Code:
    """The DICOM code of a model finding: SNOMED CT when known, else a private ``99DXA`` code.

    Args:
        finding_code: Model finding code (``pneumothorax``, ...).
        display: Display name used when the finding has no SNOMED CT concept.
    """
    concept = finding_concept(finding_code, display)
    if concept.system == LOCAL:
        logger.warning("finding %s has no SNOMED CT concept; writing a private 99DXA code", finding_code)
        # Code Value is SH (16 characters at most), Code Meaning LO (64).
        concept = Concept(LOCAL, finding_code.upper()[:16], display[:64])
    return code(concept)


def private_scheme_item() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item declaring ``99DXA``."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name=PRIVATE_SCHEME_NAME,
        responsible_organization="dxassist",
    )
