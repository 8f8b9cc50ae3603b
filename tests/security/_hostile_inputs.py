"""Hostile DICOM inputs shared by the HTTP and DIMSE hostile-input tests: each with its expected refusal.

``BAD_IMAGES`` maps a name to ``(build(study_uid) -> Part-10 bytes, HTTP status, error code)``; the STOW-RS
failure reason and the DIMSE C-STORE status follow from the status (422: 0xA900, 400: 0xC000).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from io import BytesIO
from typing import Any

import numpy as np
from _security_env import chest_dicom


def edit(blob: bytes, **attributes: Any) -> bytes:
    """``blob`` with DICOM attributes replaced (pydicom's warnings about invalid values silenced)."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we mean to send
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_pixels(blob: bytes, pixels: np.ndarray) -> bytes:
    """``blob`` with other pixels (16-bit), Rows and Columns to match."""
    rows, columns = pixels.shape
    return edit(blob, Rows=rows, Columns=columns, PixelData=pixels.astype("<u2").tobytes())


def chest(study: str, **attributes: Any) -> bytes:
    """A valid chest CR of a new instance ``{study}.1``, with ``attributes`` replaced."""
    blob = chest_dicom(study=study, sop=f"{study}.1")
    return edit(blob, **attributes) if attributes else blob


BAD_IMAGES: dict[str, tuple[Callable[[str], bytes], int, str]] = {
    "RescaleSlope 1e308, RescaleIntercept -1e308": (
        lambda s: chest(s, RescaleSlope="1e308", RescaleIntercept="-1e308"),
        422,
        "implausible_rescale",
    ),
    "RescaleSlope NaN": (lambda s: chest(s, RescaleSlope="NaN"), 400, "invalid_rescale"),
    "RescaleIntercept -inf": (lambda s: chest(s, RescaleIntercept="-inf"), 400, "invalid_rescale"),
    "RescaleSlope not a number": (
        # pydicom will not write 'abc' as a DS: write a placeholder and change its bytes.
        lambda s: chest(s, RescaleSlope="9.75").replace(b"9.75", b"abc "),
        400,
        "invalid_rescale",
    ),
    "RescaleSlope 1e-300": (lambda s: chest(s, RescaleSlope="1e-300"), 422, "implausible_rescale"),
    "WindowCenter/Width 1e300": (
        lambda s: chest(s, WindowCenter="1e300", WindowWidth="1e300"),
        422,
        "implausible_window",
    ),
    "WindowWidth NaN": (lambda s: chest(s, WindowCenter=200, WindowWidth="NaN"), 400, "invalid_window"),
    "window far above every pixel": (
        lambda s: chest(s, WindowCenter=60000, WindowWidth=10),
        422,
        "implausible_window",
    ),
    "1x1 image": (lambda s: with_pixels(chest(s), np.array([[100]])), 422, "image_too_small"),
    "all-zero image": (lambda s: with_pixels(chest(s), np.zeros((128, 128))), 422, "blank_image"),
    "constant image": (lambda s: with_pixels(chest(s), np.full((128, 128), 700)), 422, "blank_image"),
    "nearly empty image": (
        lambda s: with_pixels(chest(s), np.pad(np.full((8, 8), 4000), 60)),
        422,
        "blank_image",
    ),
    "VOI LUT giving every pixel one grey": (
        lambda s: edit(chest(s), VOILUTSequence=[_flat_lut()]),
        422,
        "implausible_voi_lut",
    ),
}


def _flat_lut() -> object:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = np.full(4096, 2000, dtype="<u2").tobytes()
    item["LUTData"].VR = "OW"
    return item


# Identifying text an attacker shapes to break the record (PostgreSQL refuses NUL; columns have sizes).
BAD_TEXT: dict[str, tuple[Callable[[str], bytes], int, str]] = {
    "NUL inside Patient ID": (lambda s: edit(chest(s), PatientID="IPP\x00X"), 400, "invalid_characters"),
    "line feed inside Issuer": (
        lambda s: edit(chest(s), IssuerOfPatientID="A\nB"),
        400,
        "invalid_characters",
    ),
    "Patient ID of 1000 characters": (lambda s: edit(chest(s), PatientID="P" * 1000), 400, "value_too_long"),
    "Patient Name of 5000 characters": (
        lambda s: edit(chest(s), PatientName="N" * 5000),
        400,
        "value_too_long",
    ),
    "Accession Number of 1000 characters": (
        lambda s: edit(chest(s), AccessionNumber="A" * 1000),
        400,
        "value_too_long",
    ),
    "View Position of 300 characters": (
        lambda s: edit(chest(s), ViewPosition="P" * 300),
        400,
        "value_too_long",
    ),
}

REFUSED: dict[str, tuple[Callable[[str], bytes], int, str]] = {**BAD_IMAGES, **BAD_TEXT}
"""Every hostile instance above: ``(build(study_uid), HTTP status, error code)``."""
