"""A study sent into Orthanc comes back from dxassist as a TID 1500 SR and heatmaps in the same study."""

from __future__ import annotations

import subprocess
from io import BytesIO
from typing import Any

import pytest
from _pacs_dicom import PATIENT_ID, chest_cr, new_uid, write
from _pacs_harness import ORTHANC_AET, Pacs, all_sent, storescu, wait_until

from inference.record import Record, _outbox
from inference.vocabulary import FINDING_CODES

pytestmark = pytest.mark.integration

SR_MODALITY = "SR"


def _flatten(items: Any, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(concept name meaning, value) of every SR content item, depth first."""
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "CODE":
            concept = item.ConceptCodeSequence[0]
            out.append((name, concept.CodeMeaning))
            out.append((f"{name} code", concept.CodeValue))
        elif item.ValueType == "NUM":
            out.append((name, float(item.MeasuredValueSequence[0].NumericValue)))
        elif item.ValueType in ("TEXT", "UIDREF"):
            out.append((name, item.TextValue if item.ValueType == "TEXT" else item.UID))
        else:
            out.append((name, item.ValueType))
        if "ContentSequence" in item:
            _flatten(item.ContentSequence, out)
    return out


def _series_by_modality(pacs: Pacs, study_id: str) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for series in pacs.orthanc.get(f"/studies/{study_id}/series"):
        by.setdefault(series["MainDicomTags"].get("Modality", ""), []).append(series)
    return by


def _held_bytes(pacs: Pacs, result_id: str) -> dict[str, int]:
    """Bytes the outbox rows of ``result_id`` still hold, by kind."""
    from sqlalchemy import text

    record = Record(pacs.listener.record_url)
    try:
        with record.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT kind, length(payload) FROM outbox WHERE result_id = :r"), {"r": result_id}
            )
            held: dict[str, int] = {}
            for kind, size in rows:
                held[kind] = held.get(kind, 0) + int(size)
            return held
    finally:
        record.close()


def test_study_routed_by_orthanc_comes_back_with_sr_and_heatmaps(pacs: Pacs) -> None:
    study_uid = new_uid()
    frontal = write(pacs.work / "a" / "pa.dcm", chest_cr(study=study_uid, view="PA", blob=True))
    lateral = write(
        pacs.work / "a" / "ll.dcm", chest_cr(study=study_uid, view="LL", blob=False, j2k=True, seed=3)
    )
    storescu([frontal, lateral], port=pacs.orthanc.dicom_port, called=ORTHANC_AET)

    study_id = wait_until(lambda: pacs.orthanc.study_id(study_uid), timeout=10, what="the study in Orthanc")
    result, deliveries = wait_until(
        lambda: all_sent(pacs.listener, study_uid),
        timeout=60,
        interval=0.5,
        what="dxassist's deliveries to Orthanc",
    )
    by_modality = _series_by_modality(pacs, study_id)
    assert any("lateral" in w.lower() for w in result.warnings), result.warnings
    positives = [f for f in result.findings if f.positive]
    assert positives, "the bright blob must make the tiny model call some findings positive"

    # Exactly one SR and one capture per positive finding, all in the source's study, all sent.
    sr_series = by_modality[SR_MODALITY]
    assert len(sr_series) == 1 and len(sr_series[0]["Instances"]) == 1
    captures = [
        s
        for modality, series in by_modality.items()
        if modality != SR_MODALITY
        for s in series
        if s["MainDicomTags"].get("Manufacturer") == "dxassist"
    ]
    assert len(captures) == 1 and len(captures[0]["Instances"]) == len(positives)
    assert "AI" in captures[0]["MainDicomTags"]["SeriesDescription"]
    assert "not for diagnosis" in captures[0]["MainDicomTags"]["SeriesDescription"].lower()
    assert sorted(d.state for d in deliveries) == ["sent"] * (1 + len(positives))

    # Enqueuing the same objects again adds nothing: exactly once per destination.
    record = Record(pacs.listener.record_url)
    try:
        again = [_outbox.OutboxObject(d.kind, d.object, "1.2.3", b"resend") for d in deliveries]
        added = record.outbox.enqueue(result_id=result.result_id, destinations=["orthanc"], objects=again)
    finally:
        record.close()
    assert added == 0
    # The listener's own /metrics counts what it analysed and delivered (serve's cannot see it).
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    scraped = httpx.get(f"http://127.0.0.1:{pacs.listener.metrics_port}/metrics", timeout=10)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    sent = samples.get(("dxassist_deliveries_total", (("destination", "orthanc"), ("state", "sent"))), 0)
    assert sent >= 1 + len(positives), sent
    decoded = [v for (name, labels), v in samples.items() if name == "dxassist_stage_seconds_count"]
    assert decoded and max(decoded) >= 1, "the listener's analysis stages are timed"
    assert httpx.get(f"http://127.0.0.1:{pacs.listener.metrics_port}/", timeout=10).status_code == 404
    # Its /healthz (Kubernetes' probe): the acceptor runs and the analysis loop comes round.
    health = httpx.get(f"http://127.0.0.1:{pacs.listener.metrics_port}/healthz", timeout=10)
    assert (health.status_code, health.text) == (200, "ok\n")
    # Once Orthanc has them, the record keeps the SR's bytes (a later SR names it) and no capture's.
    held = _held_bytes(pacs, result.result_id)
    assert held["sr"] > 0 and held["sc"] == 0, held

    # DICOMweb (QIDO-RS) lists the same series in the same study.
    dicomweb = pacs.orthanc.get(f"/dicom-web/studies/{study_uid}/series")
    modalities = sorted(item["00080060"]["Value"][0] for item in dicomweb)
    assert modalities.count(SR_MODALITY) == 1 and len(dicomweb) == 4, modalities

    # The SR read back from the PACS: same patient, the findings with their probabilities, the algorithm.
    from pydicom import dcmread

    sr_bytes = pacs.orthanc.get(f"/instances/{sr_series[0]['Instances'][0]}/file")
    sr = dcmread(BytesIO(sr_bytes))
    assert sr.StudyInstanceUID == study_uid and sr.PatientID == PATIENT_ID
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR: no 3D content
    model = result.model
    assert sr.ManufacturerModelName == model.name and sr.SoftwareVersions[0] == model.version
    assert any(
        item.get("ManufacturerModelName") == model.name and "DeviceUID" in item
        for item in sr.ContributingEquipmentSequence
    ), "the Contributing Equipment Sequence names the algorithm with its Device UID"
    content = _flatten(sr.ContentSequence, [])
    values = [value for _name, value in content]
    assert model.name in values and model.version in values
    probabilities = [value for name, value in content if name == "Probability of finding"]
    assert len(probabilities) == len(result.findings)
    finding_codes = {value for name, value in content if name == "Finding code"}
    for finding in result.findings:
        assert FINDING_CODES[finding.code][1] in finding_codes, finding.code  # SNOMED CT concept
        assert any(abs(p - finding.probability * 100) < 1e-3 for p in probabilities), finding.code
    assert values.count("Present") == len(positives)
    assert values.count("Absent") == len(result.findings) - len(positives)

    # dciodvfy (dicom3tools) finds no error in the SR and the captures as the PACS stores them.
    for instance in [sr_series[0]["Instances"][0], *captures[0]["Instances"]]:
        path = write(pacs.work / "a" / f"{instance}.dcm", pacs.orthanc.get(f"/instances/{instance}/file"))
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_a_study_analysed_again_sends_an_sr_naming_the_report_it_supersedes(pacs: Pacs) -> None:
    """An instance that arrives after its study was analysed makes a new result and a new SR: the PACS
    gets it with a Predecessor Documents Sequence naming the first SR, so a viewer shows one current
    report instead of two unrelated ones."""
    from _pacs_harness import LISTENER_AET
    from pydicom import dcmread
    from sqlalchemy import text

    study_uid = new_uid()
    first_file = write(pacs.work / "b" / "pa1.dcm", chest_cr(study=study_uid, view="PA", blob=True))
    storescu([first_file], port=pacs.listener.port, called=LISTENER_AET)
    first, first_deliveries = wait_until(
        lambda: all_sent(pacs.listener, study_uid), timeout=60, interval=0.5, what="the first result sent"
    )
    (first_sr,) = [d.object for d in first_deliveries if d.kind == "sr"]

    second_file = write(pacs.work / "b" / "pa2.dcm", chest_cr(study=study_uid, view="PA", blob=True, seed=5))
    storescu([second_file], port=pacs.listener.port, called=LISTENER_AET)

    def second_sent() -> tuple[Any, list[Any]] | None:
        found = all_sent(pacs.listener, study_uid)
        return found if found is not None and found[0].result_id != first.result_id else None

    second, second_deliveries = wait_until(
        second_sent, timeout=60, interval=0.5, what="the second result sent"
    )
    (second_sr,) = [d.object for d in second_deliveries if d.kind == "sr"]
    assert second_sr != first_sr

    record = Record(pacs.listener.record_url)
    try:
        with record.engine.connect() as connection:
            payload, first_payload = (
                connection.execute(
                    text("SELECT payload FROM outbox WHERE object_uid = :uid"), {"uid": uid}
                ).scalar_one()
                for uid in (second_sr, first_sr)
            )
    finally:
        record.close()
    sr = dcmread(BytesIO(payload))
    (study,) = sr.PredecessorDocumentsSequence
    assert study.StudyInstanceUID == study_uid
    (series,) = study.ReferencedSeriesSequence
    (instance,) = series.ReferencedSOPSequence
    assert instance.ReferencedSOPInstanceUID == first_sr
    assert instance.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert "PredecessorDocumentsSequence" not in dcmread(BytesIO(first_payload))  # the first replaces none
    # The SR with its predecessor is still a valid SR for dciodvfy.
    path = write(pacs.work / "b" / "sr2.dcm", bytes(payload))
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
    assert not errors, errors
