"""UIDs: validation of what comes in, deterministic derivation of what goes out.

Every UID a writer emits is ``<org root>.<arc>.<digits>`` where the digits come from a SHA-256 of
what identifies the object (a result id, a finding code, a model version), so building the same
object twice gives the same UID and a re-send replaces rather than duplicates it in the PACS.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Final

from ._errors import InvalidUID

if TYPE_CHECKING:
    from ._inputs import AlgorithmInfo

_UID: Final = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
MAX_UID_LENGTH: Final = 64
MIN_SUFFIX_DIGITS: Final = 20
"""Fewest hash digits in a derived UID (about 66 bits): collisions stay negligible."""
MAX_SUFFIX_DIGITS: Final = 30
"""Most hash digits (about 100 bits): enough, and shorter UIDs are kinder to older PACS."""

# One arc per kind of object under the org root, so UIDs of different kinds never collide.
ARC_DEVICE: Final = 1
ARC_SR_SERIES: Final = 2
ARC_SR_INSTANCE: Final = 3
ARC_TRACKING: Final = 4
ARC_SC_SERIES: Final = 5
ARC_SC_INSTANCE: Final = 6


def check_uid(value: object, what: str) -> str:
    """Return ``value`` as a clean UID string, or raise.

    Trailing spaces and NULs (DICOM padding) are removed; the rest must be digits and dots, each
    component without a leading zero, at most 64 characters.

    Args:
        value: The candidate UID.
        what: What it is, for the error message (which never shows the value).

    Raises:
        InvalidUID: When it is not a valid UID.
    """
    text = str(value).rstrip(" \x00") if value is not None else ""
    if len(text) > MAX_UID_LENGTH or not _UID.fullmatch(text):
        # The value is left out: a source UID identifies a patient's study.
        raise InvalidUID(
            f"The {what} is not a valid DICOM UID ({len(text)} characters); a UID has at most 64 "
            "characters, digits and dots only, and no component starting with 0."
        )
    return text


def check_org_root(org_root: str) -> str:
    """Validate the organisation root that every emitted UID extends.

    Raises:
        InvalidUID: When it is not a UID or leaves too little room for the derived digits.
    """
    root = check_uid(org_root, "organisation root")
    room = MAX_UID_LENGTH - len(root) - len(f".{ARC_SC_INSTANCE}.")
    if room < MIN_SUFFIX_DIGITS:
        raise InvalidUID(
            f"The organisation root is {len(root)} characters long; at most "
            f"{MAX_UID_LENGTH - MIN_SUFFIX_DIGITS - 3} are accepted so that derived UIDs stay unique "
            "within 64 characters."
        )
    return root


def derive_uid(org_root: str, arc: int, *parts: str) -> str:
    """A UID under ``org_root.arc`` derived from ``parts`` (same parts, same UID).

    Args:
        org_root: Organisation root (validated here).
        arc: Kind of object (one of the ``ARC_*`` constants).
        parts: What identifies the object; joined unambiguously before hashing.

    Returns:
        A valid UID of at most 64 characters.
    """
    prefix = f"{check_org_root(org_root)}.{arc}."
    digits = min(MAX_UID_LENGTH - len(prefix), MAX_SUFFIX_DIGITS)
    # Length-prefix each part so ("ab", "c") and ("a", "bc") hash differently.
    message = "".join(f"{len(p)}:{p};" for p in parts).encode("utf-8")
    number = int.from_bytes(hashlib.sha256(message).digest(), "big")
    # Exactly `digits` digits with a non-zero first digit (a UID component has no leading zero).
    low = 10 ** (digits - 1)
    suffix = low + number % (9 * low)
    return check_uid(prefix + str(suffix), "derived UID")


def device_uid(org_root: str, algorithm: AlgorithmInfo) -> str:
    """The Device UID of one model version: changes whenever name, version or weights change.

    Args:
        org_root: Organisation root.
        algorithm: The algorithm that made the result.

    Returns:
        A UID under ``org_root.1``.
    """
    return derive_uid(org_root, ARC_DEVICE, algorithm.name, algorithm.version, algorithm.sha256.lower())
