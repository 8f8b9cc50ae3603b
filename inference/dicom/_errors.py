"""The one exception callers of :mod:`inference.dicom` need: :class:`DicomRejected` and its children.

Every refusal carries a stable machine ``code``, an HTTP ``status`` and a full-sentence ``message`` that
says what was wrong and what is accepted. Messages never contain patient data: only attribute names,
transfer syntax UIDs, sizes and limits.
"""

from __future__ import annotations

# code -> (HTTP status, default sentence). The codes are part of the HTTP API (error.code).
_CODES: dict[str, tuple[int, str]] = {
    "not_dicom": (
        415,
        "The file is not a DICOM Part-10 file; send files with a 128-byte preamble and 'DICM'.",
    ),
    "truncated": (400, "The DICOM file ends before the data it declares; send the complete file."),
    "malformed_header": (400, "The DICOM header could not be parsed; send a well-formed DICOM Part-10 file."),
    "missing_attribute": (400, "A required DICOM attribute is missing."),
    "invalid_uid": (400, "A DICOM UID is not a valid UID (digits and dots, at most 64 characters)."),
    "pixel_length_mismatch": (
        400,
        "The length of Pixel Data does not match Rows x Columns x Bits Allocated; send a consistent file.",
    ),
    "codestream_mismatch": (400, "The compressed image does not match the Rows and Columns of the header."),
    "unsupported_transfer_syntax": (415, "The transfer syntax is not supported."),
    "not_grayscale": (422, "Only grayscale images (MONOCHROME1 or MONOCHROME2) are accepted."),
    "multi_frame": (422, "Only single-frame images are accepted."),
    "unsupported_modality": (
        422,
        "Only chest radiographs (Modality CR or DX, or secondary capture) are accepted.",
    ),
    "unsupported_sop_class": (422, "Only CR, DX and grayscale secondary capture images are accepted."),
    "not_chest": (422, "Only chest images are accepted (Body Part Examined CHEST or THORAX, or absent)."),
    "too_large": (413, "The image has more pixels than the configured limit."),
    "instance_too_large": (413, "The DICOM file is larger than the configured limit."),
    "too_many_instances": (413, "The study has more instances than the configured limit."),
    "deflate_bomb": (413, "The deflated DICOM file inflates beyond the configured limit."),
    "mixed_studies": (400, "The files belong to more than one study; send one study per request."),
    "invalid_characters": (400, "A text attribute holds control characters."),
    "value_too_long": (400, "A text attribute is longer than its value representation allows."),
    "mixed_patients": (400, "The instances of one study name more than one patient."),
    "empty_study": (400, "No DICOM file was sent; send at least one file."),
    "no_pixel_data": (400, "The DICOM file has no Pixel Data."),
    "bad_pixel_attributes": (400, "The pixel description attributes are inconsistent."),
    "decode_failed": (400, "The pixel data could not be decoded."),
    "nesting_too_deep": (400, "The DICOM file nests sequences deeper than accepted."),
    "invalid_rescale": (400, "Rescale Slope and Intercept must be finite numbers, the slope non-zero."),
    "implausible_rescale": (422, "Rescale Slope and Rescale Intercept are outside the plausible range."),
    "invalid_window": (400, "Window Center and Window Width must be finite numbers."),
    "implausible_window": (422, "Window Center and Window Width would show the image as one flat grey."),
    "implausible_voi_lut": (422, "The VOI LUT would show the image as one flat grey."),
    "image_too_small": (422, "The image has too few rows or columns to be a radiograph."),
    "blank_image": (422, "The image is blank or nearly empty; a radiograph is expected."),
    "no_frontal_view": (
        422,
        "The study has only lateral views; a frontal (PA or AP) chest radiograph is needed.",
    ),
}


class DicomRejected(ValueError):
    """A DICOM file or study that dxassist refuses, with the reason.

    Attributes:
        code: Stable machine code (e.g. ``"unsupported_transfer_syntax"``), used as the API error code.
        message: Full sentence saying what was wrong and what is accepted; never holds patient data.
        status: The HTTP status the API answers with (400, 413, 415 or 422).
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        if code not in _CODES:
            raise KeyError(f"Unknown DicomRejected code {code!r}.")
        self.code = code
        self.status, default = _CODES[code]
        self.message = message or default
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"


class DicomMalformed(DicomRejected):
    """The bytes are broken or inconsistent (HTTP 400)."""


class DicomTooLarge(DicomRejected):
    """A size limit was exceeded before any decoding (HTTP 413)."""


class DicomUnsupportedMedia(DicomRejected):
    """Not DICOM Part-10, or a transfer syntax dxassist does not decode (HTTP 415)."""


class DicomUnsupportedContent(DicomRejected):
    """Valid DICOM, but not a single-frame grayscale chest radiograph (HTTP 422)."""


_BY_STATUS: dict[int, type[DicomRejected]] = {
    400: DicomMalformed,
    413: DicomTooLarge,
    415: DicomUnsupportedMedia,
    422: DicomUnsupportedContent,
}


def reject(code: str, message: str | None = None) -> DicomRejected:
    """Build the :class:`DicomRejected` child matching the status of ``code``.

    Args:
        code: One of the known codes.
        message: Full sentence; the default sentence of ``code`` when omitted.

    Returns:
        The exception, ready to raise.
    """
    status = _CODES[code][0]
    return _BY_STATUS[status](code, message)


def known_codes() -> frozenset[str]:
    """Return every code a :class:`DicomRejected` can carry."""
    return frozenset(_CODES)
