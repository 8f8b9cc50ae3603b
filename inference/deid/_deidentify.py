"""De-identifying one DICOM dataset: keyed pseudonyms, consistent UID remapping, per-patient date shifts.

Everything derived from an original value (pseudonym, new UIDs, date shift) is an HMAC-SHA256 of it
under a secret kept in ``DXASSIST_HOME/keys``: the same patient or UID maps to the same value in every
export made with that secret, and nobody without the secret can go back, or test a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.deid._errors import DeidError
from inference.deid._profile import (
    CLEAN_ITEMS,
    CODE_MEANINGS,
    DICOM_ROOT,
    DUMMY,
    EMPTY,
    METHOD_TEXT,
    NEW_UID,
    REMOVE,
    SHIFT_DATE,
    applied_action,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SECRET_FILE: Final = "deid-secret.bin"
MAX_SHIFT_DAYS: Final = 3650
_TEXT_DUMMY: Final = "ANONYMOUS"
_DUMMY: Final[dict[str, Any]] = {
    "AS": "000D",
    "DS": "0",
    "IS": "0",
    "UR": "urn:dxassist:removed",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "AT"), 0),
    **dict.fromkeys(("FL", "FD"), 0.0),
    **dict.fromkeys(("OB", "OW", "OD", "OF", "OL", "OV", "UN"), b"\x00\x00"),
}
_lock = threading.Lock()


class BurnedInAnnotation(DeidError, ValueError):
    """The image declares text burned into its pixels, which header de-identification cannot remove."""


def deid_secret(keys_dir: Path) -> bytes:
    """The export secret (32 random bytes, mode 0600), created on first use.

    Replacing it breaks the link between exports made before and after (new pseudonyms and UIDs).
    """
    path = keys_dir / SECRET_FILE
    with _lock:
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        secret = path.read_bytes()
    if len(secret) < 16:
        raise ValueError(f"The de-identification secret {path} is too short; remove it to make a new one.")
    return secret


class Deidentifier:
    """Applies the profile of :mod:`inference.deid._profile` (PS3.15 Table E.1-1) with one secret.

    Args:
        secret: The HMAC key (see :func:`deid_secret`).
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, *parts: str) -> bytes:
        message = "\x00".join((purpose, *parts)).encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def pseudonym(self, identifier: str, issuer: str | None) -> str:
        """The pseudonymous patient id: ``DX`` and 20 hex digits."""
        return "DX" + self._mac("patient", issuer or "", identifier).hex()[:20].upper()

    def shift_days(self, identifier: str, issuer: str | None) -> int:
        """Days every date of this patient moves back: 1 to 3650, fixed per patient."""
        return 1 + int.from_bytes(self._mac("dates", issuer or "", identifier)[:4], "big") % MAX_SHIFT_DAYS

    def uid(self, value: str) -> str:
        """The new UID of ``value`` (``2.25.`` + a 128-bit integer); standard DICOM UIDs are kept."""
        value = value.strip().rstrip("\x00")
        if not value or value.startswith(DICOM_ROOT):
            return value
        return "2.25." + str(int.from_bytes(self._mac("uid", value)[:16], "big"))

    def deidentify(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (file meta rebuilt) and return it.

        Raises:
            BurnedInAnnotation: The image says it has burned-in text (BurnedInAnnotation YES).
        """
        from pydicom.dataset import Dataset as PydicomDataset
        from pydicom.dataset import FileMetaDataset
        from pydicom.sequence import Sequence

        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise BurnedInAnnotation("The image has burned-in annotation; it is not exported.")
        identifier = str(ds.get("PatientID", "") or "")
        issuer = str(ds.get("IssuerOfPatientID", "") or "") or None
        pseudonym = self.pseudonym(identifier, issuer)
        shift = self.shift_days(identifier, issuer)
        self._clean(ds, shift)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD_TEXT[:64]
        items = []
        for code, meaning in CODE_MEANINGS.items():
            item = PydicomDataset()
            item.CodeValue = code
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        old_meta = getattr(ds, "file_meta", None)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if old_meta is not None and "TransferSyntaxUID" in old_meta:
            meta.TransferSyntaxUID = old_meta.TransferSyntaxUID
        ds.file_meta = meta
        return ds

    def _clean(self, ds: Dataset, shift: int) -> None:
        for element in list(ds):
            action = applied_action(int(element.tag), element.VR)
            if action == REMOVE:
                del ds[element.tag]
            elif action == EMPTY:
                element.value = [] if element.VR == "SQ" else ""
            elif action == DUMMY:
                element.value = _DUMMY.get(element.VR, _TEXT_DUMMY)
            elif action == NEW_UID:
                element.value = _map_values(element.value, self.uid)
            elif action == CLEAN_ITEMS:
                for item in element.value or []:
                    self._clean(item, shift)
            elif action == SHIFT_DATE:
                shifter = _shift_da if element.VR == "DA" else _shift_dt
                element.value = _map_values(element.value, lambda v, f=shifter: f(v, shift))
            # KEEP: left as it is.


def _map_values(value: Any, fn: Any) -> Any:
    from pydicom.multival import MultiValue

    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) for v in value]
    return fn(str(value)) if value not in (None, "") else value


def _shift_da(value: str, days: int) -> str:
    text = value.strip()
    if "-" in text:  # a range (query form): shift both ends
        return "-".join(_shift_da(part, days) if part else "" for part in text.split("-", 1))
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return ""  # unreadable: emptied, never kept as it was
    if len(text) != 8:
        return ""
    return (day - timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str:
    text = value.strip()
    if len(text) < 8:
        return ""
    shifted = _shift_da(text[:8], days)
    return shifted + text[8:] if shifted else ""
