"""Choosing the frontal chest view of a study."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ._errors import reject
from ._model import Instance

LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
# Lower is better: PA is the reference projection, AP (bedside) next, then frontal of unknown kind.
_RANK: Final = {"PA": 0, "AP": 1}


def frontal_rank(view_position: str | None) -> int:
    """How a frontal view ranks when a study's view to analyse is chosen, lower first: PA (0), AP (1),
    then a frontal of any other or no View Position (2), as :func:`select_frontal` ranks them (a DICOM
    listener judges instances that arrive after their study was analysed by the same rank).

    Args:
        view_position: View Position (0018,5101), as received (case and padding do not matter).
    """
    return _RANK.get((view_position or "").strip().upper(), len(_RANK))


def _antero_posterior_axis(instance: Instance) -> bool:
    """Whether Patient Orientation gives a row or column direction that runs anterior-posterior.

    A frontal film lies in the coronal plane: its rows run to the patient's left or right and its columns
    to the head or feet (``L\\F``, ``R\\F``). An axis whose main direction is A or P (``P\\F``, ``A\\FL``)
    is that of a lateral (or oblique) projection, whatever View Position says or omits.
    """
    orientation = instance.header.get("PatientOrientation")
    if not orientation:
        return False
    axes = [orientation] if isinstance(orientation, str | bytes) else list(orientation)
    return any(str(axis).strip().upper()[:1] in ("A", "P") for axis in axes)


def is_lateral(instance: Instance) -> bool:
    """True for lateral and lateral-decubitus projections (ViewPosition LL, RL, LAT, LLD, RLD), and for an
    image whose Patient Orientation has an anterior-posterior axis (a lateral without View Position)."""
    return (instance.view_position or "").upper() in LATERAL_VIEWS or _antero_posterior_axis(instance)


def select_frontal(instances: Sequence[Instance]) -> Instance:
    """Pick the view to analyse: PA over AP over unknown frontal; laterals are set aside.

    Ties keep the order the instances came in, so the choice is reproducible.

    Args:
        instances: Decoded instances of one study.

    Returns:
        The chosen instance.

    Raises:
        DicomRejected: ``no_frontal_view`` when every instance is lateral, ``empty_study`` when none.
    """
    if not instances:
        raise reject("empty_study")
    frontal = [instance for instance in instances if not is_lateral(instance)]
    if not frontal:
        raise reject(
            "no_frontal_view",
            f"All {len(instances)} instances are lateral views; send a frontal (PA or AP) chest radiograph.",
        )
    return min(frontal, key=_rank)


def _rank(instance: Instance) -> int:
    return frontal_rank(instance.view_position)


def frontal_alternatives(instances: Sequence[Instance], chosen: Instance) -> list[Instance]:
    """The study's other frontal views, best first (as :func:`select_frontal` ranks them; ties in the
    order they came in): what to analyse when the model cannot assess ``chosen``, e.g. a lateral film
    tagged as PA, which only the image gives away."""
    others = [
        instance
        for instance in instances
        if instance is not chosen
        and instance.sop_instance_uid != chosen.sop_instance_uid
        and not is_lateral(instance)
    ]
    return sorted(others, key=_rank)
