"""The one exception callers of :mod:`inference.dicom` need: :class:`DicomRejected` and its children.

Every refusal carries a stable machine ``code``, a ``kind`` (malformed, too large, unsupported media,
unsupported content: what the API maps to 400, 413, 415 and 422, the DIMSE listener to its failure
statuses) and a full-sentence ``message`` that says what was wrong and what is accepted. Messages never
contain patient data: only attribute names, transfer syntax UIDs, sizes and limits.
"""

from __future__ import annotations

from typing import Final

from inference.errors import InferenceError

MALFORMED: Final = "malformed"
TOO_LARGE: Final = "too_large"
UNSUPPORTED_MEDIA: Final = "unsupported_media"
UNSUPPORTED_CONTENT: Final = "unsupported_content"
KINDS: Final = frozenset({MALFORMED, TOO_LARGE, UNSUPPORTED_MEDIA, UNSUPPORTED_CONTENT})

# code -> (kind, default sentence). The codes are part of the HTTP API (error.code).
_CODES: dict[str, tuple[str, str]] = {
    "not_dicom": (
        UNSUPPORTED_MEDIA,
        "The file is not a DICOM Part-10 file; send files with a 128-byte preamble and 'DICM'.",
    ),
    "truncated": (MALFORMED, "The DICOM file ends before the data it declares; send the complete file."),
    "malformed_header": (
        MALFORMED,
        "The DICOM header could not be parsed; send a well-formed DICOM Part-10 file.",
    ),
    "missing_attribute": (MALFORMED, "A required DICOM attribute is missing."),
    "invalid_uid": (MALFORMED, "A DICOM UID is not a valid UID (digits and dots, at most 64 characters)."),
    "pixel_length_mismatch": (
        MALFORMED,
        "The length of Pixel Data does not match Rows x Columns x Bits Allocated; send a consistent file.",
    ),
    "codestream_mismatch": (
        MALFORMED,
        "The compressed image does not match the Rows and Columns of the header.",
    ),
    "unsupported_transfer_syntax": (UNSUPPORTED_MEDIA, "The transfer syntax is not supported."),
    "not_grayscale": (
        UNSUPPORTED_CONTENT,
        "Only grayscale images (MONOCHROME1 or MONOCHROME2) are accepted.",
    ),
    "multi_frame": (UNSUPPORTED_CONTENT, "Only single-frame images are accepted."),
    "unsupported_modality": (
        UNSUPPORTED_CONTENT,
        "Only chest radiographs (Modality CR or DX, or secondary capture) are accepted.",
    ),
    "unsupported_sop_class": (
        UNSUPPORTED_CONTENT,
        "Only CR, DX and grayscale secondary capture images are accepted.",
    ),
    "not_chest": (
        UNSUPPORTED_CONTENT,
        "Only chest images are accepted (Body Part Examined CHEST or THORAX, or absent).",
    ),
    "too_large": (TOO_LARGE, "The image has more pixels than the configured limit."),
    "instance_too_large": (TOO_LARGE, "The DICOM file is larger than the configured limit."),
    "too_many_instances": (TOO_LARGE, "The study has more instances than the configured limit."),
    "deflate_bomb": (TOO_LARGE, "The deflated DICOM file inflates beyond the configured limit."),
    "mixed_studies": (MALFORMED, "The files belong to more than one study; send one study per request."),
    "invalid_characters": (MALFORMED, "A text attribute holds control characters."),
    "value_too_long": (MALFORMED, "A text attribute is longer than its value representation allows."),
    "multi_valued_identifier": (
        MALFORMED,
        "An identifier the standard allows once (Patient ID, Issuer of Patient ID) holds several values.",
    ),
    "multi_valued_attribute": (
        MALFORMED,
        "An attribute the standard allows once (a UID, the modality, the view, a date...) holds several "
        "values.",
    ),
    "mixed_patients": (MALFORMED, "The instances of one study name more than one patient."),
    "empty_study": (MALFORMED, "No DICOM file was sent; send at least one file."),
    "no_pixel_data": (MALFORMED, "The DICOM file has no Pixel Data."),
    "bad_pixel_attributes": (MALFORMED, "The pixel description attributes are inconsistent."),
    "decode_failed": (MALFORMED, "The pixel data could not be decoded."),
    "nesting_too_deep": (MALFORMED, "The DICOM file nests sequences deeper than accepted."),
    "invalid_rescale": (MALFORMED, "Rescale Slope and Intercept must be finite numbers, the slope non-zero."),
    "implausible_rescale": (
        UNSUPPORTED_CONTENT,
        "Rescale Slope and Rescale Intercept are outside the plausible range.",
    ),
    "invalid_window": (MALFORMED, "Window Center and Window Width must be finite numbers."),
    "implausible_window": (
        UNSUPPORTED_CONTENT,
        "Window Center and Window Width would show the image as one flat grey.",
    ),
    "implausible_voi_lut": (UNSUPPORTED_CONTENT, "The VOI LUT would show the image as one flat grey."),
    "image_too_small": (UNSUPPORTED_CONTENT, "The image has too few rows or columns to be a radiograph."),
    "blank_image": (UNSUPPORTED_CONTENT, "The image is blank or nearly empty; a radiograph is expected."),
    "no_frontal_view": (
        UNSUPPORTED_CONTENT,
        "The study has only lateral views; a frontal (PA or AP) chest radiograph is needed.",
    ),
    "paediatric_study": (
        UNSUPPORTED_CONTENT,
        "The patient was a child at the time of the study; the imaging model is for adults only.",
    ),
}


class DicomRejected(InferenceError, ValueError):
    """A DICOM file or study that dxassist refuses, with the reason.

    Attributes:
        code: Stable machine code (e.g. ``"unsupported_transfer_syntax"``), used as the API error code.
        message: Full sentence saying what was wrong and what is accepted; never holds patient data.
        kind: ``malformed`` (broken or inconsistent bytes), ``too_large`` (over a size limit),
            ``unsupported_media`` (not Part-10, or a transfer syntax not decoded) or ``unsupported_content``
            (valid DICOM, but not a single-frame grayscale chest radiograph).
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        if code not in _CODES:
            raise KeyError(f"Unknown DicomRejected code {code!r}.")
        self.code = code
        self.kind, default = _CODES[code]
        self.message = message or default
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, kind={self.kind!r})"


class DicomMalformed(DicomRejected):
    """The bytes are broken or inconsistent (kind ``malformed``)."""


class DicomTooLarge(DicomRejected):
    """A size limit was exceeded before any decoding (kind ``too_large``)."""


class DicomUnsupportedMedia(DicomRejected):
    """Not DICOM Part-10, or a transfer syntax dxassist does not decode (kind ``unsupported_media``)."""


class DicomUnsupportedContent(DicomRejected):
    """Valid DICOM, but not a single-frame grayscale chest radiograph (kind ``unsupported_content``)."""


_BY_KIND: dict[str, type[DicomRejected]] = {
    MALFORMED: DicomMalformed,
    TOO_LARGE: DicomTooLarge,
    UNSUPPORTED_MEDIA: DicomUnsupportedMedia,
    UNSUPPORTED_CONTENT: DicomUnsupportedContent,
}


def reject(code: str, message: str | None = None) -> DicomRejected:
    """Build the :class:`DicomRejected` child matching the kind of ``code``.

    Args:
        code: One of the known codes.
        message: Full sentence; the default sentence of ``code`` when omitted.

    Returns:
        The exception, ready to raise.
    """
    return _BY_KIND[_CODES[code][0]](code, message)


def known_codes() -> frozenset[str]:
    """Return every code a :class:`DicomRejected` can carry."""
    return frozenset(_CODES)
