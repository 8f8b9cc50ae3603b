"""What a model was trained on is kept with its Device when the Device is filed: a FHIR reader of the record
still sees it once that model version is retired and no longer served (nothing here serves a model)."""

from __future__ import annotations

from _record_data import CXR_MODEL, TRIAGE_MODEL, imaging, replace, triage
from fhir.resources.R4B.device import Device

from inference.record import Record

BASE = "http://127.0.0.1:8000/fhir"
LINE = "dxassist-export data set (n=4200 frontal images)"
SAID = (
    f"Model cxr-findings version 3 was trained on {LINE}. Its output holds for patients and equipment like "
    "those of that data; a clinician decides."
)


def _device(record: Record, device_id: str) -> dict:
    device = record.fhir.read(resource_type="Device", resource_id=device_id)
    assert device is not None
    Device.model_validate(device)
    return device


def test_a_retired_models_device_still_says_what_it_was_trained_on(record: Record) -> None:
    model = replace(CXR_MODEL, training=SAID, training_data=LINE)
    stored = record.results.save_imaging(data=imaging(model=model))
    report = record.fhir.read(resource_type="DiagnosticReport", resource_id=stored.result_id)
    assert report is not None
    provenance = record.fhir.read(resource_type="Provenance", resource_id=stored.result_id)
    assert provenance is not None
    device_id = provenance["agent"][0]["who"]["reference"].removeprefix("Device/")
    device = _device(record, device_id)
    assert device["note"] == [{"text": SAID}]
    assert device["property"][0]["type"]["coding"][0]["code"] == "training-data"
    assert device["property"][0]["valueCode"] == [{"text": LINE}]
    # The search says the same.
    bundle = record.fhir.search(resource_type="Device", params={"_id": device_id}, base_url=BASE)
    assert bundle["entry"][0]["resource"]["note"] == [{"text": SAID}]


def test_a_synthetic_model_says_so_and_a_device_is_filed_once(record: Record) -> None:
    synthetic = "This model was trained on synthetic data only."
    first = replace(TRIAGE_MODEL, training=synthetic, training_data=None)
    record.results.save_triage(data=replace(triage(), model=first))
    record.results.save_triage(data=replace(triage(), model=replace(first, training="Something else.")))
    bundle = record.fhir.search(resource_type="Device", params={}, base_url=BASE)
    [entry] = bundle["entry"]
    assert entry["resource"]["note"] == [{"text": synthetic}] and "property" not in entry["resource"]
