"""read_study and the choice of the frontal view."""

from __future__ import annotations

import pytest
from _dicom_factory import dataset, phantom, to_bytes

from inference.api._errors import DICOM_STATUS
from inference.dicom import DicomRejected, Limits, read_study

LIMITS = Limits(max_instance_bytes=1 << 20, max_pixels=1 << 20, max_instances=4)


def _view(view: str | None, study_uid: str = "1.2.3.4") -> bytes:
    return to_bytes(dataset(phantom(16, 16), view_position=view, study_uid=study_uid))


@pytest.mark.parametrize(
    ("views", "chosen"),
    [
        (["LL", "AP", "PA"], "PA"),
        (["LATERAL", None, "AP"], "AP"),
        (["RL", None], None),
        (["PA"], "PA"),
    ],
)
def test_pa_over_ap_over_unknown_and_laterals_set_aside(views: list[str | None], chosen: str | None) -> None:
    study = read_study([_view(v) for v in views], limits=LIMITS)
    assert study.primary.view_position == chosen
    assert len(study.instances) == len(views) and study.study_instance_uid == "1.2.3.4"


def test_only_laterals_is_refused() -> None:
    with pytest.raises(DicomRejected) as caught:
        read_study([_view("LL"), _view("RL")], limits=LIMITS)
    assert (caught.value.code, DICOM_STATUS[caught.value.kind]) == ("no_frontal_view", 422)


def test_mixed_studies_are_refused() -> None:
    with pytest.raises(DicomRejected) as caught:
        read_study([_view("PA"), _view("PA", study_uid="1.2.3.5")], limits=LIMITS)
    assert (caught.value.code, DICOM_STATUS[caught.value.kind]) == ("mixed_studies", 400)


def test_too_many_and_no_instances_are_refused() -> None:
    with pytest.raises(DicomRejected) as caught:
        read_study([_view("PA")] * 5, limits=LIMITS)
    assert (caught.value.code, DICOM_STATUS[caught.value.kind]) == ("too_many_instances", 413)
    with pytest.raises(DicomRejected) as caught:
        read_study([], limits=LIMITS)
    assert caught.value.code == "empty_study"


def test_a_resent_instance_counts_once() -> None:
    blob = _view("PA")
    assert len(read_study([blob, blob], limits=LIMITS).instances) == 1
