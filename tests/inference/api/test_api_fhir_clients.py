"""FHIR R4 semantics that real FHIR clients rely on, checked with ``fhirpy`` against a live server.

Lenient search by default (unsupported parameters ignored, ``Prefer: handling=strict`` makes them a 400),
406 for formats other than JSON, OperationOutcome for every error under ``/fhir``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOutcome

from inference.api import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent / "ui"))
from _ui_live import live_server  # noqa: E402

FHIR_JSON = "application/fhir+json"
OURS = 5  # imaging results filed by facility F1
THEIRS = 2  # by facility F2, never shown to an F1 clinician


def _file_study(client: TestClient, env: Env, facility: str, patient: str | None = None) -> str:
    study = new_study_uid()
    blob = chest_dicom(
        study=study, sop=f"{study}.1", blob=True, patient_id=patient or f"FC-{uuid.uuid4().hex[:8]}"
    )
    response = client.post(
        "/v1/studies",
        files=[("files", ("a.dcm", blob, "application/dicom"))],
        headers=env.headers("pacs", facility=facility),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["result_id"])


@pytest.fixture(scope="module")
def filed(client: TestClient, env: Env) -> dict[str, list[str]]:
    """Result ids filed per facility in this module's own home."""
    return {
        "F1": [_file_study(client, env, "F1") for _ in range(OURS)],
        "F2": [_file_study(client, env, "F2") for _ in range(THEIRS)],
    }


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    """The app of ``env`` under uvicorn on loopback (fhirpy speaks HTTP, not ASGI)."""
    with live_server(create_app(env.settings)) as url:
        yield url


def _fhirpy(env: Env, base_url: str, role: str = "clinician", **headers: str) -> SyncFHIRClient:
    token = env.headers(role, facility="F1")["Authorization"]
    return SyncFHIRClient(f"{base_url}/fhir", authorization=token, extra_headers=headers or None)


def test_fhirpy_pages_through_a_facility_scoped_search(
    env: Env, base_url: str, filed: dict[str, list[str]]
) -> None:
    fhir = _fhirpy(env, base_url)
    reports = fhir.resources("DiagnosticReport")
    # Pages of two: fhirpy follows the Bundle's next links; every F1 report exactly once, no F2 report.
    seen = [r["id"] for r in reports.limit(2).fetch_all()]
    assert sorted(seen) == sorted(filed["F1"]) and len(seen) == len(set(seen)) == OURS
    # count() sends _count=0&_totalMethod=count: _totalMethod is ignored, the total is the scoped one.
    assert reports.count() == OURS
    # sort(), elements(), include(): not supported here, so ignored (FHIR R4): the same resources come back.
    assert sorted(r["id"] for r in reports.sort("-issued").limit(3).fetch_all()) == sorted(filed["F1"])
    elements = reports.elements("status").limit(10).fetch()
    assert sorted(r["id"] for r in elements) == sorted(filed["F1"])
    included = reports.include("DiagnosticReport", "subject").limit(10).fetch()
    assert sorted(r["id"] for r in included) == sorted(filed["F1"])
    # The F2 clinician's view is the F2 reports only.
    f2 = SyncFHIRClient(
        f"{base_url}/fhir", authorization=env.headers("clinician", facility="F2")["Authorization"]
    )
    assert sorted(r["id"] for r in f2.resources("DiagnosticReport").limit(1).fetch_all()) == sorted(
        filed["F2"]
    )


def test_fhirpy_with_strict_handling_gets_an_operation_outcome(
    env: Env, base_url: str, filed: dict[str, list[str]]
) -> None:
    strict = _fhirpy(env, base_url, Prefer="handling=strict")
    with pytest.raises(FhirpyOutcome) as refused:
        strict.resources("DiagnosticReport").sort("-issued").fetch()
    outcome = OperationOutcome.model_validate(refused.value.resource)
    assert outcome.issue[0].code == "invalid" and "_sort" in (outcome.issue[0].diagnostics or "")
    # Supported parameters only: strict handling changes nothing.
    assert len(strict.resources("DiagnosticReport").limit(10).fetch()) == OURS


def test_unsupported_parameters_are_ignored_and_left_out_of_the_self_link(
    client: TestClient, env: Env, filed: dict[str, list[str]]
) -> None:
    headers = env.headers("clinician")
    query = "_count=2&_sort=-issued&_include=DiagnosticReport:subject&_summary=true&_elements=id&shoe=42"
    response = client.get(f"/fhir/DiagnosticReport?{query}", headers=headers)
    assert response.status_code == 200, response.text
    bundle = Bundle.model_validate(response.json())
    assert bundle.total == OURS
    links = {link.relation: link.url for link in bundle.link}
    assert links["self"].endswith("/fhir/DiagnosticReport?_count=2")
    assert links["next"].endswith("/fhir/DiagnosticReport?_count=2&_offset=2")
    # Repeated unsupported parameters are ignored too; a repeated supported one is still an error.
    assert client.get("/fhir/Patient?_include=a&_include=b", headers=headers).status_code == 200
    assert client.get("/fhir/Patient?_id=a&_id=b", headers=headers).status_code == 400
    # The audit trail search follows the same rule.
    auditor = env.headers("auditor")
    assert client.get("/fhir/AuditEvent?_sort=-date&_count=1", headers=auditor).status_code == 200
    for path, head in (
        ("/fhir/DiagnosticReport?_sort=-issued", headers),
        ("/fhir/Patient?shoe_size=42", headers),
        ("/fhir/AuditEvent?_sort=-date", auditor),
    ):
        strict = client.get(path, headers={**head, "Prefer": "return=minimal; handling=strict"})
        assert strict.status_code == 400, path
        assert strict.headers["content-type"].startswith(FHIR_JSON)
        assert OperationOutcome.model_validate(strict.json()).issue[0].code == "invalid"
    # Supported parameters with bad values are refused in either mode.
    for bad in ("_count=many", "_offset=-1", "date=yesterday"):
        assert client.get(f"/fhir/Observation?{bad}", headers=headers).status_code == 400, bad


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("_format=xml", None),
        ("_format=application/fhir%2Bxml", None),
        ("_format=text/xml", None),
        ("_format=ttl", None),
        ("", "application/fhir+xml"),
        ("", "application/xml, text/xml;q=0.9"),
        ("", "application/fhir+json;q=0, application/fhir+xml"),
        ("_format=xml", "application/fhir+json"),  # _format wins over Accept
    ],
)
def test_formats_other_than_json_get_406(
    client: TestClient, env: Env, query: str, accept: str | None
) -> None:
    headers = env.headers("clinician")
    if accept is not None:
        headers["Accept"] = accept
    for path in ("/fhir/Patient", "/fhir/metadata", f"/fhir/Patient/{uuid.uuid4()}"):
        response = client.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 406, (path, response.text)
        assert response.headers["content-type"].startswith(FHIR_JSON)
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "not-supported" and "JSON" in (outcome.issue[0].diagnostics or "")


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("_format=json", None),
        ("_format=application/fhir%2Bjson", None),
        ("_format=application/json", None),
        ("", "*/*"),
        ("", "application/fhir+json"),
        ("", "application/fhir+xml;q=0.9, application/fhir+json"),
        ("", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("_format=json", "application/fhir+xml"),  # _format wins over Accept
    ],
)
def test_json_formats_are_served(client: TestClient, env: Env, query: str, accept: str | None) -> None:
    headers = env.headers("clinician")
    if accept is not None:
        headers["Accept"] = accept
    response = client.get(f"/fhir/Patient?{query}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert "_format" not in response.json()["link"][0]["url"]


def test_errors_outside_fhir_keep_the_contract_shape(client: TestClient, env: Env) -> None:
    headers = {**env.headers("clinician"), "Accept": "application/fhir+xml"}
    response = client.get(f"/v1/results/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404
    assert set(response.json()) == {"error"} and response.json()["error"]["code"] == "not_found"
    for status, path, head in (
        (401, "/fhir/Patient", {}),
        (403, "/fhir/AuditEvent", env.headers("clinician")),
        (404, f"/fhir/DiagnosticReport/{uuid.uuid4()}", env.headers("clinician")),
    ):
        outcome = client.get(path, headers=head)
        assert outcome.status_code == status
        issue = OperationOutcome.model_validate(outcome.json()).issue[0]
        assert issue.severity == "error" and issue.diagnostics


def test_rate_limited_fhir_requests_get_an_operation_outcome(env: Env) -> None:
    from _api_env import make_settings

    settings = make_settings(env.home, rate_limit_per_minute=1, rate_limit_burst=1)
    with TestClient(create_app(settings)) as limited:
        headers = env.headers("clinician")
        statuses = [limited.get("/fhir/Patient", headers=headers) for _ in range(3)]
        throttled = [r for r in statuses if r.status_code == 429]
        assert throttled, [r.status_code for r in statuses]
        assert throttled[0].headers["content-type"].startswith(FHIR_JSON)
        assert OperationOutcome.model_validate(throttled[0].json()).issue[0].code == "throttled"
        api = [limited.get("/v1/worklist", headers=headers) for _ in range(2)]
        assert api[-1].status_code == 429 and api[-1].json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize(
    ("pn", "expected"),
    [
        (
            "DOE^JOHN^QUINCY^DR.^JR.",
            {
                "family": "DOE",
                "given": ["JOHN", "QUINCY"],
                "prefix": ["DR."],
                "suffix": ["JR."],
                "text": "DR. JOHN QUINCY DOE JR.",
            },
        ),
        (
            "SYNTHETIC^PATIENT^0003",
            {"family": "SYNTHETIC", "given": ["PATIENT", "0003"], "text": "PATIENT 0003 SYNTHETIC"},
        ),
        # Of several component groups, the alphabetic one.
        ("Yamada^Tarou==yamada^tarou", {"family": "Yamada", "given": ["Tarou"], "text": "Tarou Yamada"}),
        ("DOE^", {"family": "DOE", "text": "DOE"}),
        # No component separator: could be free text (a name sent as JSON); not split by guesswork.
        ("NOBODY", {"text": "NOBODY"}),
    ],
)
def test_patient_name_is_a_structured_human_name(
    env: Env, base_url: str, client: TestClient, pn: str, expected: dict[str, object]
) -> None:
    from fhir.resources.R4B.patient import Patient

    identifier = f"HN-{uuid.uuid4().hex[:8]}"
    study = new_study_uid()
    blob = chest_dicom(study=study, sop=f"{study}.1", blob=True, patient_id=identifier, patient_name=pn)
    files = [("files", ("a.dcm", blob, "application/dicom"))]
    assert (
        client.post("/v1/studies", files=files, headers=env.headers("pacs", facility="F1")).status_code == 201
    )
    patient = _fhirpy(env, base_url).resources("Patient").search(identifier=identifier).get()
    assert patient.serialize()["name"] == [expected]
    Patient.model_validate(patient.serialize())


def test_device_carries_the_dicom_device_uid_and_the_report_links_its_heatmaps(
    client: TestClient, env: Env, filed: dict[str, list[str]]
) -> None:
    from fhir.resources.R4B.device import Device
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    from inference import __version__
    from inference.writers import AlgorithmInfo, device_uid

    headers = env.headers("radiologist")
    result = client.get(f"/v1/results/{filed['F1'][0]}", headers=headers).json()
    report = client.get(f"/fhir/DiagnosticReport/{filed['F1'][0]}", headers=headers).json()
    DiagnosticReport.model_validate(report)
    provenance = client.get(f"/fhir/Provenance/{filed['F1'][0]}", headers=headers).json()
    device = client.get(f"/fhir/{provenance['agent'][0]['who']['reference']}", headers=headers).json()
    Device.model_validate(device)
    # The UID the SR's Contributing Equipment and General Equipment give this model version.
    model = result["model"]
    algorithm = AlgorithmInfo(
        name=model["name"],
        version=str(model["version"]),
        sha256=model["sha256"],
        software_version=__version__,
    )
    uid = device_uid(env.settings.record.org_root, algorithm)
    expected = {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}
    assert expected in device["identifier"]
    searched = client.get("/fhir/Device", params={"_id": device["id"]}, headers=headers).json()
    assert expected in searched["entry"][0]["resource"]["identifier"]
    # media: one heatmap per finding that has one (the positive ones), each a PNG the reader can fetch.
    heatmaps = sorted(f["heatmap"] for f in result["findings"] if f.get("heatmap"))
    assert heatmaps, "the blob study has positive findings"
    contained = {f"#{c['id']}": c for c in report["contained"]}
    urls = [contained[m["link"]["reference"]]["content"]["url"] for m in report["media"]]
    assert sorted(urls) == heatmaps
    png = client.get(urls[0], headers=headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_an_announced_oversized_body_under_fhir_gets_an_operation_outcome(
    client: TestClient, env: Env
) -> None:
    headers = {**env.headers("clinician"), "Content-Length": str(10**12)}
    response = client.get("/fhir/Patient", headers=headers)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert OperationOutcome.model_validate(response.json()).issue[0].code == "too-costly"
    elsewhere = client.get("/v1/worklist", headers=headers)
    assert elsewhere.status_code == 413 and elsewhere.json()["error"]["code"] == "payload_too_large"
