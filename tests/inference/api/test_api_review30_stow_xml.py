"""STOW-RS answers in the representation the sender asks for: DICOM JSON, or PS3.19 XML.

dcm4che's ``stowrs`` (and archives built on dcm4che) send ``Accept: application/dicom+xml`` with DICOM
files; PS3.18 Table 10.5.4-1 requires the XML representation of the Store Instances Response. It was
answered DICOM JSON, which such a sender cannot read as the XML it asked for.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from _api_dicom import CR_IMAGE, CT_IMAGE, chest_dicom, related_body
from _api_env import Env, TestClient, new_study_uid

NS = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}


def _stow(client: TestClient, env: Env, parts: list[tuple[str, bytes]], accept: str | None):
    body, content_type = related_body(parts)
    headers = {**env.headers("pacs", facility="F1"), "Content-Type": content_type}
    if accept is not None:
        headers["Accept"] = accept
    return client.post("/dicomweb/studies", content=body, headers=headers)


def _values(item: ET.Element, tag: str) -> list[str]:
    return [v.text or "" for v in item.findall(f"d:DicomAttribute[@tag='{tag}']/d:Value", NS)]


def test_a_sender_that_asks_for_xml_gets_the_native_dicom_model(client: TestClient, env: Env) -> None:
    study, ct = new_study_uid(), new_study_uid()
    parts = [
        ("application/dicom", chest_dicom(study=study, sop=f"{study}.1", view="PA")),
        ("application/dicom", chest_dicom(study=ct, sop=f"{ct}.1", modality="CT")),
    ]
    response = _stow(client, env, parts, "application/dicom+xml")
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/dicom+xml")
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{NS['d']}}}NativeDicomModel"
    retrieve = root.find("d:DicomAttribute[@tag='00081190']", NS)
    assert retrieve is not None and retrieve.get("vr") == "UR" and _values(root, "00081190") == []
    stored = root.findall("d:DicomAttribute[@tag='00081199']/d:Item", NS)
    assert [_values(i, "00081155") for i in stored] == [[f"{study}.1"]]
    assert [_values(i, "00081150") for i in stored] == [[CR_IMAGE]]
    failed = root.findall("d:DicomAttribute[@keyword='FailedSOPSequence']/d:Item", NS)
    assert [_values(i, "00081155") for i in failed] == [[f"{ct}.1"]]
    assert [_values(i, "00081150") for i in failed] == [[CT_IMAGE]]
    assert [int(_values(i, "00081197")[0]) for i in failed] == [0x0122]  # SOP class not supported


def test_dicom_json_stays_the_default_and_wins_a_tie(client: TestClient, env: Env) -> None:
    for accept in (
        None,
        "*/*",
        "application/dicom+json",
        "application/dicom+xml, application/dicom+json",
        "application/dicom+xml;q=0.5, application/json",
    ):
        study = new_study_uid()
        response = _stow(
            client, env, [("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))], accept
        )
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"].startswith("application/dicom+json"), accept
        assert response.json()["00081199"]["Value"][0]["00081155"]["Value"] == [f"{study}.1"]
    study = new_study_uid()
    preferred = 'application/dicom+json;q=0.4, multipart/related; type="application/dicom+xml"'
    response = _stow(
        client, env, [("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))], preferred
    )
    assert response.headers["content-type"].startswith("application/dicom+xml")


def test_a_long_accept_header_is_read_not_refused(client: TestClient, env: Env) -> None:
    study = new_study_uid()
    accept = ", ".join(f"application/x-vendor-{n};q=0.1" for n in range(60)) + ", application/dicom+xml"
    assert len(accept) > 1024
    response = _stow(client, env, [("application/dicom", chest_dicom(study=study, sop=f"{study}.1"))], accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+xml")
