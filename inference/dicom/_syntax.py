"""The transfer syntaxes dxassist decodes, and how their datasets are encoded."""

from __future__ import annotations

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"

NATIVE = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE})
JPEG_FAMILY = frozenset(
    {JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_LS_NEAR}
)
J2K_FAMILY = frozenset({J2K_LOSSLESS, J2K})
SUPPORTED = NATIVE | JPEG_FAMILY | J2K_FAMILY | {RLE}

SUPPORTED_NAMES = (
    "Implicit VR Little Endian, Explicit VR Little/Big Endian, Deflated Explicit VR Little Endian, "
    "RLE Lossless, JPEG Baseline, JPEG Extended, JPEG Lossless (Process 14, SV1), "
    "JPEG-LS (lossless, near-lossless) and JPEG 2000 (lossless, lossy)"
)


def encoding(transfer_syntax_uid: str) -> tuple[bool, bool]:
    """Return ``(implicit_vr, little_endian)`` of the dataset for a supported transfer syntax."""
    return transfer_syntax_uid == IMPLICIT_LE, transfer_syntax_uid != EXPLICIT_BE
