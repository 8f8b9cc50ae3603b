"""FHIR R4 views: every resource and Bundle validates with fhir.resources; searches find what they should."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from _record_data import SECRET_NAME, imaging, patient, triage

from inference.record import InvalidSearch, Record

BASE = "http://127.0.0.1:8000/fhir"
AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}


def validate(resource: dict[str, Any]) -> Any:
    """Parse ``resource`` with the fhir.resources R4B model of its type (pydantic 2 validation)."""
    name = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
    return getattr(module, name).model_validate(resource)


@pytest.fixture
def filed(record: Record) -> dict[str, Any]:
    img = record.results.save_imaging(data=imaging())
    tri = record.results.save_triage(data=triage())
    other = record.results.save_triage(data=triage(pat=patient("IPP-OTHER", name="Other Synthetic")))
    return {"imaging": img, "triage": tri, "other": other}


def _search(record: Record, resource_type: str, **params: str) -> dict[str, Any]:
    bundle = record.fhir.search(resource_type=resource_type, params=params, base_url=BASE)
    validate(bundle)
    for entry in bundle["entry"]:
        validate(entry["resource"])
        assert entry["search"] == {"mode": "match"}
        resource = entry["resource"]
        assert entry["fullUrl"] == f"{BASE}/{resource['resourceType']}/{resource['id']}"
    return bundle


def _read(record: Record, resource_type: str, resource_id: str) -> dict[str, Any]:
    resource = record.fhir.read(resource_type=resource_type, resource_id=resource_id)
    assert resource is not None, (resource_type, resource_id)
    validate(resource)
    return resource


def test_every_resource_of_an_imaging_result_validates_and_links_up(record: Record, filed: dict) -> None:
    stored = filed["imaging"]
    report = _read(record, "DiagnosticReport", stored.result_id)
    assert report["status"] == "preliminary" and report["meta"]["security"] == [AIAST]
    assert report["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18748-4",
        "display": "Diagnostic imaging study",
    }
    assert report["category"][0]["coding"][0]["code"] == "RAD"
    assert report["conclusion"].startswith("Pleural effusion likely") and "synthetic" in report["conclusion"]
    assert report["subject"] == {"reference": f"Patient/{stored.patient_id}"}

    observations = [_read(record, "Observation", ref["reference"].split("/")[1]) for ref in report["result"]]
    effusion, pneumothorax = observations
    for obs in observations:
        assert obs["meta"]["security"] == [AIAST] and obs["status"] == "preliminary"
        assert obs["derivedFrom"] == report["imagingStudy"]
    assert effusion["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    assert effusion["code"]["coding"][0]["code"] == "60046008"
    assert effusion["valueCodeableConcept"]["coding"][0]["display"] == "Present"
    assert pneumothorax["valueCodeableConcept"]["coding"][0]["display"] == "Absent"
    probability = effusion["component"][0]["valueQuantity"]
    assert probability == {"value": 0.91, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}
    assert effusion["effectiveDateTime"] == "2026-11-22"

    study = _read(record, "ImagingStudy", report["imagingStudy"][0]["reference"].split("/")[1])
    data = imaging()
    assert study["identifier"][0]["value"].startswith("urn:oid:2.25.")
    assert study["numberOfInstances"] == 2 and study["modality"][0]["code"] == "DX"
    sop_class = study["series"][0]["instance"][0]["sopClass"]
    assert sop_class == {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{data.instances[0].sop_class_uid}"}

    device = _read(record, "Device", effusion["device"]["reference"].split("/")[1])
    assert device["deviceName"][0]["name"] == "cxr-findings" and device["version"] == [{"value": "3"}]
    assert device["identifier"][0]["value"] == "a" * 64

    provenance = _read(record, "Provenance", stored.result_id)
    targets = {ref["reference"] for ref in provenance["target"]}
    assert f"DiagnosticReport/{stored.result_id}" in targets
    assert {f"Observation/{obs['id']}" for obs in observations} <= targets
    assert {agent["who"]["reference"] for agent in provenance["agent"]} == {f"Device/{device['id']}"}


def test_triage_result_as_risk_assessment_and_vital_signs(record: Record, filed: dict) -> None:
    stored = filed["triage"]
    risk = _read(record, "RiskAssessment", stored.result_id)
    assert risk["meta"]["security"] == [AIAST] and risk["status"] == "preliminary"
    assert risk["prediction"][0]["probabilityDecimal"] == 0.73
    assert risk["prediction"][1]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert risk["occurrenceDateTime"] == "2026-11-22T08:15:00.000Z"
    assert risk["performer"]["reference"].startswith("Device/")
    vitals = {ref["reference"].split("/")[1]: ref for ref in risk["basis"]}
    assert len(vitals) == 7  # RR, SpO2, BP panel, HR, temperature, ACVPU, oxygen
    codes = {}
    for obs_id in vitals:
        obs = _read(record, "Observation", obs_id)
        assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
        assert "security" not in obs["meta"]  # measured, not AI-asserted
        codes[obs["code"]["coding"][0]["code"]] = obs
    assert codes["9279-1"]["valueQuantity"]["code"] == "/min"
    assert codes["8310-5"]["valueQuantity"] == {
        "value": 38.4,
        "unit": "C",
        "system": "http://unitsofmeasure.org",
        "code": "Cel",
    }
    bp = codes["85354-9"]["component"]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in bp] == [
        ("8480-6", 105.0),
        ("8462-4", 70.0),
    ]
    assert codes["67775-7"]["valueCodeableConcept"]["text"] == "A"
    assert codes["on-supplemental-oxygen"]["valueBoolean"] is False
    provenance = _read(record, "Provenance", stored.result_id)
    assert provenance["target"] == [{"reference": f"RiskAssessment/{stored.result_id}"}]


def test_every_patient_bound_resource_maps_back_to_its_patient(record: Record, filed: dict) -> None:
    pid = filed["triage"].patient_id
    for resource_type in ("ImagingStudy", "DiagnosticReport", "Observation", "RiskAssessment", "Provenance"):
        for entry in _search(record, resource_type, patient=pid)["entry"]:
            found = record.fhir.owner(resource_type=resource_type, resource_id=entry["resource"]["id"])
            assert found is not None and found[0] == pid, resource_type
            assert found[2] is False, resource_type  # owned by a facility, not patient-level
    other = filed["other"]
    found = record.fhir.owner(resource_type="Provenance", resource_id=other.result_id)
    assert found is not None and found[0] == other.patient_id
    assert record.fhir.owner(resource_type="Patient", resource_id=pid) == (pid, None, True)
    assert record.fhir.owner(resource_type="Patient", resource_id="missing") is None
    device = _search(record, "Device")["entry"][0]["resource"]["id"]
    assert record.fhir.owner(resource_type="Device", resource_id=device) == (None, None, False)


def test_patient_carries_demographics_on_the_fhir_channel(record: Record, filed: dict) -> None:
    pat = _read(record, "Patient", filed["imaging"].patient_id)
    assert pat["identifier"][0] == {
        "use": "usual",
        "system": "urn:dxassist:issuer:CHU-NORD",
        "value": "IPP-000123",
    }
    assert pat["name"] == [{"text": SECRET_NAME}] and pat["gender"] == "female"
    assert pat["managingOrganization"]["display"] == "north"


def test_searches_by_patient_return_only_that_patients_resources(record: Record, filed: dict) -> None:
    pid = filed["imaging"].patient_id
    assert filed["triage"].patient_id == pid and filed["other"].patient_id != pid
    expected = {
        "ImagingStudy": 1,
        "DiagnosticReport": 1,
        "RiskAssessment": 1,
        "Provenance": 2,
        "Observation": 9,
    }
    for resource_type, total in expected.items():
        bundle = _search(record, resource_type, patient=pid)
        assert bundle["type"] == "searchset" and bundle["total"] == total, resource_type
        assert len(bundle["entry"]) == total
    assert _search(record, "Observation", patient=f"Patient/{pid}", category="vital-signs")["total"] == 7
    assert _search(record, "Observation", patient=pid, category="imaging")["total"] == 2
    assert _search(record, "RiskAssessment")["total"] == 2
    assert _search(record, "DiagnosticReport", patient="no-such-patient")["total"] == 0


def test_patient_search_by_identifier_and_system(record: Record, filed: dict) -> None:
    pid = filed["imaging"].patient_id
    for token in ("IPP-000123", "urn:dxassist:issuer:CHU-NORD|IPP-000123"):
        bundle = _search(record, "Patient", identifier=token)
        assert bundle["total"] == 1 and bundle["entry"][0]["resource"]["id"] == pid
    assert _search(record, "Patient", identifier="urn:dxassist:issuer:CHU-SUD|IPP-000123")["total"] == 0
    assert _search(record, "Patient", identifier="|IPP-000123")["total"] == 0
    assert _search(record, "Patient", _id=pid)["total"] == 1


def test_count_pages_the_bundle_but_total_counts_all(record: Record, filed: dict) -> None:
    pid = filed["imaging"].patient_id
    page = _search(record, "Observation", patient=pid, _count="4")
    assert page["total"] == 9 and len(page["entry"]) == 4
    assert [link["relation"] for link in page["link"]] == ["self", "next"]
    rest = _search(record, "Observation", patient=pid, _count="4", _offset="8")
    assert len(rest["entry"]) == 1 and [link["relation"] for link in rest["link"]] == ["self"]
    devices = _search(record, "Device")
    assert devices["total"] == 2
    one = devices["entry"][0]["resource"]["id"]
    assert _search(record, "Device", _id=one)["total"] == 1


def test_unsupported_searches_say_what_is_accepted(record: Record) -> None:
    with pytest.raises(InvalidSearch, match="supported types are"):
        record.fhir.search(resource_type="Encounter", params={}, base_url=BASE)
    with pytest.raises(InvalidSearch, match="supported are"):
        record.fhir.search(
            resource_type="Observation", params={"value-quantity": "x"}, base_url=BASE, strict=True
        )
    # Lenient by default (FHIR R4): the unsupported parameter is ignored and left out of the self link.
    lenient = record.fhir.search(resource_type="Observation", params=[("value-quantity", "x")], base_url=BASE)
    assert lenient["link"][0]["url"] == f"{BASE}/Observation?"
    with pytest.raises(InvalidSearch, match="_count must be an integer"):
        record.fhir.search(resource_type="Patient", params={"_count": "many"}, base_url=BASE)
    assert record.fhir.read(resource_type="Encounter", resource_id="x") is None
    assert (
        record.fhir.read(resource_type="Observation", resource_id="00000000-0000-0000-0000-000000000000")
        is None
    )
    assert record.fhir.read(resource_type="Patient", resource_id="missing") is None


def test_capability_statement(record: Record) -> None:
    statement = record.fhir.capability_statement(base_url=BASE)
    validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["format"] == ["json"]
    served = {res["type"]: res for res in statement["rest"][0]["resource"]}
    assert set(served) == {
        "Patient", "ImagingStudy", "DiagnosticReport", "Observation",
        "RiskAssessment", "Device", "Provenance", "AuditEvent",
    }  # fmt: skip
    assert {p["name"] for p in served["Observation"]["searchParam"]} >= {"patient", "_count"}
    assert {p["name"] for p in served["Patient"]["searchParam"]} >= {"identifier"}


def test_observation_pages_across_many_results_are_complete_and_found_by_id(
    record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Observations are several per result, so the search streams results (a batch at a time) and keeps one
    page: the pages still add up to every Observation once, in order, on both backends, and ``_id`` finds a
    finding's and a vital sign's Observation."""
    from inference.record.fhir import _search as search_module

    monkeypatch.setattr(search_module, "_OBSERVATION_BATCH", 3)  # several batches with a few results
    for n in range(5):
        record.results.save_imaging(data=imaging(pat=patient(f"IPP-OBS-{n}")))
        record.results.save_triage(data=triage(pat=patient(f"IPP-OBS-{n}")))
    everything = _search(record, "Observation", _count="500")
    ids = [entry["resource"]["id"] for entry in everything["entry"]]
    assert everything["total"] == len(ids) == len(set(ids)) == 5 * (2 + 7)
    paged: list[str] = []
    for offset in range(0, len(ids), 4):
        page = _search(record, "Observation", _count="4", _offset=str(offset))
        assert page["total"] == len(ids)
        paged += [entry["resource"]["id"] for entry in page["entry"]]
    assert paged == ids
    by_kind = {
        entry["resource"]["category"][0]["coding"][0]["code"]: entry["resource"]["id"]
        for entry in everything["entry"]
    }
    for wanted in by_kind.values():
        found = _search(record, "Observation", _id=wanted)
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == wanted
    assert _search(record, "Observation", _id="no-such-observation")["total"] == 0
