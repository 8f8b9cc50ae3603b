"""read_study and the choice of the frontal view."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from io import BytesIO

import pytest
from _dicom_factory import dataset, phantom, to_bytes
from pydicom import dcmread, uid

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


_LARGE = Limits(max_instance_bytes=16 << 20, max_pixels=4 << 20, max_instances=4)


def _digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dxassist-digest"]


@pytest.mark.parametrize("syntax", [uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian])
def test_a_study_handed_out_before_its_digests_are_done_has_the_same_digests(syntax: str) -> None:
    """``digest_later``: a large uncompressed film's digest is finished beside the caller's work; read or
    awaited, it is the SHA-256 of the Pixel Data as pydicom reads it, like a digest awaited in the read."""
    blobs = [
        to_bytes(dataset(phantom(1024, 1024 + k), bits_stored=12, view_position=view), syntax)
        for k, view in enumerate(("PA", "LL"))
    ]
    expected = {
        (ds := dcmread(BytesIO(blob))).SOPInstanceUID: hashlib.sha256(ds.PixelData).hexdigest()
        for blob in blobs
    }
    study = read_study(blobs, limits=_LARGE, digest_later=True)
    first, second = study.instances

    async def awaited() -> None:
        await first.digested()

    asyncio.run(awaited())
    assert {i.sop_instance_uid: i.pixel_digest for i in (first, second)} == expected
    assert read_study(blobs, limits=_LARGE).instances[1].pixel_digest == second.pixel_digest


def test_a_refused_study_leaves_no_digest_working() -> None:
    """The files read before the one refused had their digests under way: they are abandoned, and their
    threads end (letting go of the files) instead of hashing what nobody will read."""
    films = [to_bytes(dataset(phantom(2048, 2048), bits_stored=12)) for _ in range(2)]
    other_study = to_bytes(dataset(phantom(16, 16), study_uid="1.2.3.5"))
    for thread in _digest_threads():  # other tests' digests, done or abandoned
        thread.join()
    with pytest.raises(DicomRejected) as refused:
        read_study([*films, other_study], limits=_LARGE, digest_later=True)
    assert refused.value.code == "mixed_studies"
    for thread in _digest_threads():
        thread.join(timeout=60)
    assert not _digest_threads()
