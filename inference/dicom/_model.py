"""Plain data handed out by :mod:`inference.dicom`: limits, patient, decoded instance, study."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._digest import DigestField

if TYPE_CHECKING:
    from pydicom import Dataset


class _LimitSettings(Protocol):
    max_instance_bytes: int
    max_pixels: int
    max_instances: int


@dataclass(frozen=True)
class Limits:
    """Size limits enforced before anything is decoded.

    Attributes:
        max_instance_bytes: Largest accepted Part-10 file, and largest inflated deflated dataset.
        max_pixels: Largest accepted declared Rows x Columns.
        max_instances: Most instances accepted in one study.
        min_side: Fewest rows and columns accepted. The server uses ``MIN_SIDE`` (32), below which no
            chest anatomy can be resolved; 1 (no minimum) is the default for library use, where test
            and training code read small images.
    """

    max_instance_bytes: int
    max_pixels: int
    max_instances: int
    min_side: int = 1

    @classmethod
    def from_settings(cls, settings: _LimitSettings) -> Limits:
        """Take the limits from ``Settings.limits`` (:class:`inference.config.LimitsSettings`, or alike)."""
        from ._plausible import MIN_SIDE

        return cls(
            max_instance_bytes=int(settings.max_instance_bytes),
            max_pixels=int(settings.max_pixels),
            max_instances=int(settings.max_instances),
            min_side=MIN_SIDE,
        )


@dataclass(frozen=True)
class PatientInfo:
    """Who the image belongs to, as the DICOM header says.

    Attributes:
        patient_id: Patient ID (0010,0020).
        issuer: Issuer of Patient ID (0010,0021), if any.
        name: Patient's Name as the DICOM PN string (``Family^Given^Middle^Prefix^Suffix``), if any.
        birth_date: ISO date ``YYYY-MM-DD``, or None when absent or not a valid date.
        sex: ``male``, ``female``, ``other``, ``unknown``; None when absent.
    """

    patient_id: str
    issuer: str | None
    name: str | None
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True, eq=False)
class Instance:
    """One validated, decoded grayscale radiograph.

    ``rows`` and ``columns`` are always the original geometry of the header; ``pixels`` may be smaller
    when the codec decoded at reduced resolution (``reduction`` > 1), which
    :mod:`inference.preprocess` accounts for.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    view_position: str | None
    body_part: str | None
    laterality: str | None
    patient: PatientInfo
    accession_number: str | None
    study_date: str | None
    rows: int
    columns: int
    pixels: np.ndarray
    reduction: int
    photometric: str
    bits_stored: int
    pixel_representation: int
    rescale_slope: float
    rescale_intercept: float
    window_centers: tuple[float, ...]
    window_widths: tuple[float, ...]
    voi_lut_function: str
    voi_lut: tuple[int, int, np.ndarray] | None
    pixel_spacing: tuple[float, float] | None
    transfer_syntax_uid: str
    header: Dataset
    pixel_digest: DigestField = DigestField()
    """sha256 (hex) of the Pixel Data element's bytes as received (a resend must carry the same pixels).
    A large uncompressed one may still be under way on its own thread when the instance is handed out
    (:func:`inference.dicom.read_study` with ``digest_later``): reading it waits for the thread, and
    :meth:`digested` waits without holding up an event loop."""

    async def digested(self) -> None:
        """Wait until :attr:`pixel_digest` is known, without holding up the event loop."""
        pending = DigestField.pending(self)
        if pending is not None:
            await pending.wait()

    def abandon_digest(self) -> None:
        """Stop a digest still under way (the instance was refused or dropped; nobody will read it)."""
        pending = DigestField.pending(self)
        if pending is not None:
            pending.abandon()

    def describe(self) -> dict[str, Any]:
        """Return a log-safe summary (no patient data)."""
        return {
            "sop_class_uid": self.sop_class_uid,
            "modality": self.modality,
            "view_position": self.view_position,
            "rows": self.rows,
            "columns": self.columns,
            "decoded_shape": tuple(self.pixels.shape),
            "reduction": self.reduction,
            "transfer_syntax_uid": self.transfer_syntax_uid,
        }


@dataclass(frozen=True, eq=False)
class Study:
    """The accepted instances of one study and the frontal view chosen for analysis."""

    study_instance_uid: str
    instances: tuple[Instance, ...]
    primary: Instance
