"""De-identification for training exports: a study with the whole of Table E.1-1 at once, and the export.

Each row of the table alone is checked in ``test_security_deid_table.py``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from _security_env import BIRTH_DATE, PATIENT_NAME, TestClient, chest_dicom, new_study_uid, seeded_env
from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from inference._cli_commands import export_training_set
from inference.api import create_app
from inference.deid import BurnedInAnnotation, Deidentifier, applied_action, table

SECRET = b"0123456789abcdef0123456789abcdef"
ORIGINAL_UID = "1.2.826.0.1.3680043.10.1453.99.777"


def _value(vr: str) -> object:
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = "X1"
        item.CodeMeaning = "identifying code"
        return Sequence([item])
    samples = {
        "PN": "Doe^John",
        "DA": "20200115",
        "TM": "101010",
        "DT": "20200115101010",
        "UI": ORIGINAL_UID,
        "AS": "085Y",
        "DS": "70.5",
        "IS": "3",
        "CS": "VALUE",
        "AE": "IDENTAE",
        "UR": "http://identifying.example/",
    }
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"identifying text"
    if vr in ("US", "SS", "UL", "SL", "UV", "SV", "AT"):
        return 1
    if vr in ("FL", "FD"):
        return 1.5
    return samples.get(vr, "identifying text")


_KEPT_FROM_SOURCE = (
    "StudyInstanceUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
)


def _rows() -> dict[int, str]:
    """The table's rows a stored dataset can carry (no command or file meta groups), by tag."""
    return {
        tag: dictionary_VR(tag).split(" or ")[0]
        for tag in table()
        if tag >> 16 not in (0x0000, 0x0002)
        and dictionary_has_tag(tag)
        and keyword_for_tag(tag) not in _KEPT_FROM_SOURCE
    }


def _source(patient_id: str = "IPP-DEID-1", study: str | None = None) -> Dataset:
    study = study or new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id=patient_id, size=16)))
    for tag, vr in _rows().items():
        ds.add_new(tag, vr, _value(vr))
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.ContentDate = "20260105"
    ds.StudyTime = "081500"
    ds.AcquisitionDateTime = "20260105081530.250"
    ds.DistributionName = "Smith^Jane"  # a person name the profile table does not list
    ds.add_new(0x00091010, "LO", "private vendor data")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    ds.add_new(0x60004000, "LT", "overlay comment")
    return ds


def test_each_attribute_of_the_profile_gets_its_action() -> None:
    deid = Deidentifier(SECRET)
    ds = _source()
    rows = _rows()
    original = {tag: ds[tag].value for tag in rows}
    original_uids = {k: str(ds[k].value) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    pixels = ds.PixelData
    deid.deidentify(ds)
    pseudonym = deid.pseudonym("IPP-DEID-1", None)
    assert ds.PatientName == ds.PatientID == pseudonym
    for tag, vr in rows.items():
        action, keyword = applied_action(tag, vr), keyword_for_tag(tag)
        if keyword == "PatientName":
            continue
        if action == "X":
            assert tag not in ds, f"{keyword} should be removed"
        elif action == "Z":
            assert tag in ds and not ds[tag].value, keyword
        elif action == "D":
            assert tag in ds and ds[tag].value != original[tag], keyword
        elif action == "U":
            assert str(ds[tag].value) == deid.uid(str(original[tag])) != str(original[tag]), keyword
    for keyword, uid in original_uids.items():
        assert ds[keyword].value == deid.uid(uid) and ds[keyword].value.startswith("2.25."), keyword
        assert len(ds[keyword].value) <= 64
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # standard UIDs are kept
    assert "DistributionName" not in ds
    assert not [e for e in ds if e.tag.is_private or 0x6000 <= e.tag.group <= 0x60FF]
    assert ds.PixelData == pixels
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence}
    assert codes == {("113100", "DCM"), ("113107", "DCM")}
    assert "113100" in ds.DeidentificationMethod and "2026c" in ds.DeidentificationMethod
    shift = deid.shift_days("IPP-DEID-1", None)
    assert 1 <= shift <= 3650
    assert ds.ContentDate == (date(2026, 1, 5) - timedelta(days=shift)).strftime("%Y%m%d")
    assert ds.AcquisitionDateTime == ds.ContentDate + "081530.250"
    assert ds.StudyTime == "081500"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    text = out.getvalue()
    for needle in (
        b"Quixley",
        b"Zephyrine",
        b"IPP-DEID-1",
        BIRTH_DATE.encode(),
        b"Doe^John",
        b"identifying text",
    ):
        assert needle not in text, needle


def test_pseudonyms_uids_and_shifts_are_consistent_per_patient() -> None:
    deid = Deidentifier(SECRET)
    study = new_study_uid()
    a, b = deid.deidentify(_source(study=study)), deid.deidentify(_source(study=study))
    other = deid.deidentify(_source(patient_id="IPP-DEID-2"))
    assert a.PatientID == b.PatientID != other.PatientID
    assert a.StudyInstanceUID == b.StudyInstanceUID != other.StudyInstanceUID
    assert a.ContentDate == b.ContentDate
    assert Deidentifier(b"another secret, another mapping!").pseudonym("IPP-DEID-1", None) != a.PatientID


def test_images_with_burned_in_text_are_not_exported() -> None:
    ds = _source()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotation):
        Deidentifier(SECRET).deidentify(ds)


def test_export_training_set_writes_deidentified_files_and_labels(tmp_path: Path) -> None:
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    kept_study, objected_study = new_study_uid(), new_study_uid()
    kept = chest_dicom(study=kept_study, sop=f"{kept_study}.1", patient_id="IPP-EXPORT-1", blob=True)
    objected = chest_dicom(study=objected_study, sop=f"{objected_study}.1", patient_id="IPP-EXPORT-2")
    (source / "a.dcm").write_bytes(kept)
    (source / "b.dcm").write_bytes(objected)
    (source / "junk.dcm").write_bytes(b"not dicom")
    with TestClient(create_app(env.settings)) as client:
        pacs = env.headers("pacs", facility="F1")
        posted = client.post(
            "/v1/studies", files=[("files", ("a.dcm", kept, "application/dicom"))], headers=pacs
        )
        result = posted.json()
        verdicts = [
            {"code": "nodule", "verdict": "agree"},
            {"code": "pneumothorax", "verdict": "correct", "correct_label": True},
        ]
        feedback = client.post(
            f"/v1/results/{result['result_id']}/feedback",
            json={"verdicts": verdicts},
            headers=env.headers("radiologist"),
        )
        assert feedback.status_code == 201
        consent = {
            "patient": {"identifier": "IPP-EXPORT-2"},
            "ai_processing": "deny",
            "national_sharing": "deny",
        }
        assert client.post("/v1/consents", json=consent, headers=env.headers("clinician")).status_code == 200
    out = tmp_path / "export"
    report = io.StringIO()
    assert export_training_set(env.settings, out=out, source=source, stream=report) == 0
    assert "skipped 1 (consent objection), 1 (unreadable)" in report.getvalue()
    files = list((out / "dicom").rglob("*.dcm"))
    assert len(files) == 1
    exported = dcmread(files[0])
    pseudonym = exported.PatientID
    assert files[0].relative_to(out / "dicom").parts == (
        pseudonym,
        exported.StudyInstanceUID,
        f"{exported.SOPInstanceUID}.dcm",
    )
    rows = list(csv.DictReader((out / "labels.csv").open(encoding="utf-8")))
    findings = {f["code"]: f for f in result["findings"]}
    assert {(r["finding"], r["verdict"], r["label"]) for r in rows} == {
        ("nodule", "agree", "1" if findings["nodule"]["positive"] else "0"),
        ("pneumothorax", "correct", "1"),
    }
    assert {r["patient_pseudonym"] for r in rows} == {pseudonym}
    assert {r["study_instance_uid"] for r in rows} == {exported.StudyInstanceUID}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["instances"] == 1 and manifest["skipped"]["consent_objection"] == 1
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for needle in (
        b"IPP-EXPORT",
        PATIENT_NAME.encode(),
        BIRTH_DATE.encode(),
        kept_study.encode(),
        result["result_id"].encode(),
    ):
        assert needle not in everything, needle
    assert export_training_set(env.settings, out=out, source=source, stream=io.StringIO()) == 2


def test_export_leaves_out_an_objecting_patient_whose_file_names_no_issuer(tmp_path: Path) -> None:
    """The consent was recorded under the server's default issuer; the file names none, and means it."""
    env = seeded_env(tmp_path / "home", default_issuer="chu-nord")
    source = tmp_path / "source"
    source.mkdir()
    study = new_study_uid()
    ds = dcmread(BytesIO(chest_dicom(study=study, sop=f"{study}.1", patient_id="IPP-EXPORT-3")))
    ds.IssuerOfPatientID = ""
    ds.save_as(source / "a.dcm")
    with TestClient(create_app(env.settings)) as client:
        consent = {
            "patient": {"identifier": "IPP-EXPORT-3"},
            "ai_processing": "deny",
            "national_sharing": "deny",
        }
        assert client.post("/v1/consents", json=consent, headers=env.headers("clinician")).status_code == 200
    out = tmp_path / "export"
    report = io.StringIO()
    assert export_training_set(env.settings, out=out, source=source, stream=report) == 0
    assert "exported 0 instance(s)" in report.getvalue()
    assert "skipped 1 (consent objection)" in report.getvalue()
    assert not list(out.rglob("*.dcm"))
