"""Hostile DICOM over DIMSE: a real ``dxassist listen`` answers each C-STORE with the matching status.

The same implausible images the HTTP tests send (``_hostile_inputs``), plus identifiers and structures
an attacker would try, go to a listener subprocess through one association: each gets its failure status
(0xA900 for a supported SOP class whose content is refused, 0xC000 for what cannot be understood), the
association stays up, nothing reaches the record, and afterwards C-ECHO succeeds and a good study is
still analysed.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _hostile_inputs import REFUSED, chest, edit
from _security_env import TESTS, chest_dicom, new_study_uid

if str(TESTS / "pacs") not in sys.path:
    sys.path.insert(0, str(TESTS / "pacs"))

from _pacs_harness import LISTENER_AET, TEST_AET, Listener, echo, free_port, wait_until  # noqa: E402

from inference.dicom._stable import study_key  # noqa: E402
from inference.record import Record  # noqa: E402

pytestmark = pytest.mark.integration

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
ACCEPTED = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# What an attacker tries beyond the list: each with the status it must get.
MORE: dict[str, tuple[Any, int]] = {
    "SOP Instance UID with a path": (
        lambda s: edit(chest(s), SOPInstanceUID="1.2.3/../../../keys"),
        CANNOT_UNDERSTAND,
    ),
    "Study Instance UID of 200 digits": (
        lambda s: edit(chest(s), StudyInstanceUID="1." + "9" * 200),
        CANNOT_UNDERSTAND,
    ),
    "no Patient ID": (lambda s: edit(chest(s), PatientID=""), CANNOT_UNDERSTAND),
    "no pixel data": (lambda s: _without_pixels(chest(s)), CANNOT_UNDERSTAND),
    "Rows lying about the pixel data": (lambda s: edit(chest(s), Rows=4096), CANNOT_UNDERSTAND),
    "not a chest": (lambda s: edit(chest(s), BodyPartExamined="KNEE"), DATASET_DOES_NOT_MATCH),
    "ten frames claimed": (lambda s: edit(chest(s), NumberOfFrames=10), DATASET_DOES_NOT_MATCH),
}


def _without_pixels(blob: bytes) -> bytes:
    from pydicom import dcmread

    ds = dcmread(BytesIO(blob))
    del ds.PixelData
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    root = tmp_path_factory.mktemp("hostile-dimse")
    home = root / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", root / "build")
    node = Listener(home, free_port(), [])
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _store(listener: Listener, blobs: list[bytes]) -> list[int]:
    """C-STORE each file in one association; the statuses, in order (the association must survive)."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    try:
        statuses = []
        for blob in blobs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom, on the sender's side, warns about invalid values
                answer = assoc.send_c_store(dcmread(BytesIO(blob)))
            assert "Status" in answer, "the listener dropped the association"
            statuses.append(int(answer.Status))
        return statuses
    finally:
        assoc.release()


def _result(listener: Listener, study: str) -> object:
    record = Record(listener.record_url)
    try:
        return record.results.latest_for_study(study_instance_uid=study)
    finally:
        record.close()


def test_each_hostile_instance_gets_its_c_store_status(listener: Listener) -> None:
    cases = {
        name: (build, 0xA900 if status == 422 else 0xC000) for name, (build, status, _code) in REFUSED.items()
    }
    cases.update(MORE)
    studies = {name: new_study_uid() for name in cases}
    statuses = _store(listener, [build(studies[name]) for name, (build, _expected) in cases.items()])
    assert dict(zip(cases, statuses, strict=True)) == {
        name: expected for name, (_b, expected) in cases.items()
    }
    # Refused on arrival: nothing written to incoming/, nothing filed.
    incoming = listener.home / "incoming"
    assert not any((incoming / study_key(study, TEST_AET)).exists() for study in studies.values())


def test_one_study_under_two_patients_is_not_filed(listener: Listener) -> None:
    study = new_study_uid()
    first = chest_dicom(study=study, sop=f"{study}.1", patient_id="HOSTILE-A")
    second = chest_dicom(study=study, sop=f"{study}.2", patient_id="HOSTILE-B", view="AP", seed=1)
    # Each instance is valid on its own; the study is refused when it is complete (mixed_patients).
    assert _store(listener, [first, second]) == [ACCEPTED, ACCEPTED]
    folder = listener.home / "incoming" / study_key(study, TEST_AET)
    wait_until(lambda: not folder.exists(), timeout=30, what="the two-patient study to be processed")
    assert _result(listener, study) is None


def test_the_listener_is_still_ready_after_the_hostile_instances(listener: Listener) -> None:
    answer = echo(listener.port, timeout=5)
    assert answer.returncode == 0, answer.stderr
    assert listener.process is not None and listener.process.poll() is None
    study = new_study_uid()
    assert _store(listener, [chest(study)]) == [ACCEPTED]
    wait_until(lambda: _result(listener, study) is not None, timeout=60, what="the good study's result")


def test_listener_log_holds_no_traceback_of_the_hostile_instances(listener: Listener) -> None:
    log: Path = listener.log
    assert "Traceback" not in log.read_text(errors="replace")


def test_an_instance_past_the_studys_limit_is_refused_and_the_study_is_still_analysed(tmp_path: Path) -> None:
    # Every instance was answered 0x0000, then the study over DXASSIST_MAX_INSTANCES was dropped whole
    # when it was read (too_many_instances): the PACS was told it was stored, and nothing was filed.
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    node = Listener(home, free_port(), [], extra_env={"DXASSIST_MAX_INSTANCES": "2"})
    node.start()
    try:
        study = new_study_uid()
        first, second, third = (chest_dicom(study=study, sop=f"{study}.{i}", seed=i) for i in (1, 2, 3))
        # The third is one too many; a resend of one already held is not one more.
        assert _store(node, [first, second, third, first]) == [ACCEPTED, ACCEPTED, OUT_OF_RESOURCES, ACCEPTED]
        wait_until(lambda: _result(node, study) is not None, timeout=60, what="the study's result")
    finally:
        node.stop()


def _store_naming(listener: Listener, blob: bytes, **command: str) -> int:
    """C-STORE ``blob`` with its command's Affected SOP Class/Instance UID replaced by ``command``'s (what
    a broken or hostile sender's request says; pynetdicom, the sender here, would copy the data set's)."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE

    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    send = assoc.dimse.send_msg

    def renamed(primitive: Any, context_id: int) -> None:
        if isinstance(primitive, C_STORE) and primitive.DataSet is not None:
            for name, value in command.items():
                setattr(primitive, name, value)
        send(primitive, context_id)

    assoc.dimse.send_msg = renamed  # the sender's side only: the listener gets a real, renamed request
    try:
        answer = assoc.send_c_store(dcmread(BytesIO(blob)))
        assert "Status" in answer, "the listener dropped the association"
        return int(answer.Status)
    finally:
        assoc.release()


def test_a_c_store_whose_data_set_is_not_the_instance_its_request_names_is_refused(
    listener: Listener,
) -> None:
    # Answered success, the PACS believed the instance its request named was stored, while the data set's
    # (another SOP Instance UID) was filed: a later resend of the named one would be filed twice.
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True)
    assert _store_naming(listener, blob, AffectedSOPInstanceUID=f"{study}.2") == CANNOT_UNDERSTAND
    secondary_capture = "1.2.840.10008.5.1.4.1.1.7"
    assert _store_naming(listener, blob, AffectedSOPClassUID=secondary_capture) == DATASET_DOES_NOT_MATCH
    assert _store(listener, [blob]) == [ACCEPTED]  # the same data set, named as it is, is taken
    wait_until(lambda: _result(listener, study) is not None, timeout=60, what="the study named as it is")
