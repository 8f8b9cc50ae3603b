"""UIDs written to the PACS: valid, deterministic, and refusing bad input."""

from __future__ import annotations

import dataclasses
import re

import pydicom
import pytest
from _writers_data import ALGORITHM, CREATED_AT, ORG_ROOT, RESULT_ID, algorithm, findings, source

from inference.writers import InvalidUID, WriterError, build_sr, check_uid, device_uid, write_part10

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def test_device_uid_is_stable_for_a_version_and_changes_with_each_new_one() -> None:
    uid = device_uid(ORG_ROOT, ALGORITHM)
    assert uid == device_uid(ORG_ROOT, algorithm())
    assert uid == device_uid(ORG_ROOT, algorithm(software_version="0.2.0"))  # same model, newer server
    assert uid != device_uid(ORG_ROOT, algorithm(version="4"))
    assert uid != device_uid(ORG_ROOT, algorithm(sha256="00" * 32))  # retrained under the same number
    assert uid != device_uid(ORG_ROOT, algorithm(name="cxr-findings-b"))
    assert uid.startswith(ORG_ROOT + ".1.") and len(uid) <= 64 and _UID.fullmatch(uid)


@pytest.mark.parametrize(
    "bad",
    ["", "1.2.abc", "1.02.3", "1..2", ".1.2", "1.2.", "1.2.3 4", "1." + "2" * 63, "1.2\\3"],
)
def test_invalid_uids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidUID, match="not a valid DICOM UID"):
        check_uid(bad, "test UID")


def test_uid_padding_is_removed() -> None:
    assert check_uid("1.2.840.10008.1.2\x00", "transfer syntax") == "1.2.840.10008.1.2"


def test_org_root_must_be_a_uid_with_room_for_the_suffix() -> None:
    with pytest.raises(InvalidUID, match="organisation root"):
        device_uid("dxassist", ALGORITHM)
    with pytest.raises(InvalidUID, match="at most"):
        device_uid("1." + "2" * 44, ALGORITHM)


def test_every_uid_in_the_sr_is_valid_and_under_64_characters() -> None:
    ds = build_sr(
        source(), findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT
    )
    written = pydicom.dcmread(pydicom.filebase.DicomBytesIO(write_part10(ds)))
    uids: list[str] = []

    def collect(dataset: pydicom.Dataset) -> None:
        for element in dataset:
            if element.VR == "UI" and element.value:
                uids.append(str(element.value))
            elif element.VR == "SQ":
                for item in element.value:
                    collect(item)

    collect(written)
    collect(written.file_meta)
    assert len(uids) > 10
    assert all(len(u) <= 64 and _UID.fullmatch(u) for u in uids), [u for u in uids if not _UID.fullmatch(u)]


def test_a_source_with_an_invalid_uid_is_refused() -> None:
    instance = source()
    header = instance.header
    broken = dataclasses.replace(instance, study_instance_uid="1.2.3.x")
    with pytest.raises(InvalidUID, match="source Study Instance UID"):
        build_sr(broken, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT)
    assert header.StudyInstanceUID != "1.2.3.x"  # the source header is never modified


def test_building_outputs_leaves_the_source_header_untouched() -> None:
    sparse = source(drop=("PatientName", "StudyID", "ReferringPhysicianName"))
    before = sparse.header.to_json_dict()
    build_sr(sparse, findings(), ALGORITHM, org_root=ORG_ROOT, result_id=RESULT_ID, created_at=CREATED_AT)
    assert sparse.header.to_json_dict() == before
    assert "PatientName" not in sparse.header


def test_write_part10_refuses_a_dataset_without_sop_uids() -> None:
    with pytest.raises(WriterError, match="SOPClassUID and SOPInstanceUID"):
        write_part10(pydicom.Dataset())
