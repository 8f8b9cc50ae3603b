"""FHIR R4 resources built from the record's rows, as JSON dicts.

Every resource a model produced (finding Observations, DiagnosticReport, RiskAssessment) carries the
``AIAST`` security label and status ``preliminary``: a reader has not confirmed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote, urlencode

from inference import vocabulary as v
from inference.record._models import Device, Finding, Patient, Result, Study, VitalsObservation, pn_groups
from inference.record._types import fhir_date, iso, new_id, utcnow
from inference.record._views import heatmap_url
from inference.record.fhir import _codes as c

VITAL_SUFFIXES: Final[tuple[str, ...]] = ("rr", "spo2", "bp", "hr", "temp", "acvpu", "o2")
"""Vital-sign Observation ids are ``<vitals id>-<suffix>``; one Observation per measured sign."""

_MODALITY_DISPLAY: Final[dict[str, str]] = {
    "CR": "Computed Radiography",
    "DX": "Digital Radiography",
    "CT": "Computed Tomography",
    "MR": "Magnetic Resonance",
    "US": "Ultrasound",
}


_GENDERS: Final[dict[str, str]] = {
    "m": "male",
    "male": "male",
    "f": "female",
    "female": "female",
    "o": "other",
    "other": "other",
}


def ref(resource_type: str, resource_id: str) -> dict[str, str]:
    """A relative literal Reference."""
    return {"reference": f"{resource_type}/{resource_id}"}


def searchset(
    base: str,
    resource_type: str,
    query: list[tuple[str, str]],
    resources: list[dict[str, Any]],
    *,
    total: int,
    offset: int,
    count: int,
    pin: Sequence[tuple[str, str]] = (),
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of one page of ``resources``, ``total`` matches in all.

    ``timestamp`` (default: now) is the Bundle's ``timestamp`` and ``meta.lastUpdated``: when the page was
    read from, taken before the page's first query, so that a client that syncs from it
    (``_lastUpdated=ge<timestamp>``, ``$everything?_since=<timestamp>``) misses no change committed while
    the page was read (it may see one twice). Served to the millisecond, rounded down.

    ``query`` is what the search applied (FHIR R4 search 3.1.1.3.2): the self link shows it, and the next
    link, present while matches remain after this page, repeats it with the following ``_offset`` and
    ``pin``: the parameters that keep the later pages to the matches of this one's time (rows added since
    would shift the offsets: an entry twice, or one never seen).
    """
    links = [{"relation": "self", "url": f"{base}/{resource_type}?{urlencode(query)}"}]
    if count > 0 and offset + count < total:
        pinned = {k for k, _ in pin}
        following = [(k, v) for k, v in query if k != "_offset" and k not in pinned]
        following += [*pin, ("_offset", str(offset + count))]
        links.append({"relation": "next", "url": f"{base}/{resource_type}?{urlencode(following)}"})
    moment = iso(utcnow() if timestamp is None else timestamp)
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": moment},
        "type": "searchset",
        "timestamp": moment,
        "total": total,
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def history(base: str, resource: dict[str, Any]) -> dict[str, Any]:
    """The ``history`` Bundle of one resource (instance ``_history``): its current version, the only one the
    record keeps (``total`` 1), with the ``request`` and ``response`` a history entry carries (R4 bdl-3,
    bdl-4): version 1 as the resource's creation, a later one as an update of it."""
    resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
    version = version_of(resource)
    first = version == "1"
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": iso(utcnow())},
        "type": "history",
        "total": 1,
        "link": [{"relation": "self", "url": f"{base}/{resource_type}/{resource_id}/_history"}],
        "entry": [
            {
                "fullUrl": f"{base}/{resource_type}/{resource_id}",
                "resource": resource,
                "request": {
                    "method": "POST" if first else "PUT",
                    "url": resource_type if first else f"{resource_type}/{resource_id}",
                },
                "response": {
                    "status": "201 Created" if first else "200 OK",
                    "etag": f'W/"{version}"',
                    "lastModified": resource["meta"]["lastUpdated"],
                },
            }
        ],
    }


def _ai_meta(result: Result) -> dict[str, Any]:
    return {**_meta(result.created_at), "security": [dict(c.AI_ASSERTED)]}


def _meta(created: datetime) -> dict[str, Any]:
    """``meta`` of a resource the record never changes once filed (a result's resources, the vital signs):
    ``versionId`` 1, its one version, and ``lastUpdated``, when it was filed."""
    return {"versionId": "1", "lastUpdated": iso(created)}


def changed_at(row: Patient | Study | Device) -> datetime:
    """When the record last changed what a Patient, an ImagingStudy or a Device shows: ``updated``, else (a
    row an older server version filed into a migrated SQLite record during an upgrade: it leaves
    ``updated`` NULL) when it was filed. The searches compare the same (``_search.changed_within``)."""
    updated: datetime | None = row.updated
    return row.created if updated is None else updated


def version_of(resource: dict[str, Any]) -> str:
    """A served resource's ``meta.versionId`` (its current version: the record keeps no earlier one)."""
    return str(resource["meta"]["versionId"])


def _changed(row: Patient | Study | Device) -> dict[str, Any]:
    """``meta`` of a resource the record completes over time (a Patient, an ImagingStudy, a Device):
    ``versionId``, how many times the record has changed what it shows (1 when filed; migrations 0024 and
    0025: the record keeps the current version only), and ``lastUpdated``, when it last did."""
    return {"versionId": str(row.version or 1), "lastUpdated": iso(changed_at(row))}


def issuer_system(issuer: str) -> str:
    """The Identifier.system of patient identifiers assigned by ``issuer``."""
    return c.ISSUER_PREFIX + quote(issuer, safe="")


def _gender(sex: str | None) -> str | None:
    if sex is None:
        return None
    return _GENDERS.get(sex.strip().lower(), "unknown")


def human_name(value: str) -> dict[str, Any]:
    """A FHIR ``HumanName`` from a stored name: a DICOM PN (``family^given^middle^prefix^suffix``) is split
    into its parts, with ``text`` the readable form; free text (a name sent as JSON) stays ``text`` only.

    Of a PN with several component groups (``alphabetic=ideographic=phonetic``), the first non-empty one
    is used: FHIR has one HumanName per representation and the alphabetic one is what readers search.
    """
    if "^" not in value and "=" not in value:
        return {"text": value}
    groups = pn_groups(value)
    family, given, middle, prefix, suffix = groups[0] if groups else ("", "", "", "", "")
    out: dict[str, Any] = {}
    if family.strip():
        out["family"] = family.strip()
    givens = given.split() + middle.split()
    if givens:
        out["given"] = givens
    if prefix.split():
        out["prefix"] = prefix.split()
    if suffix.split():
        out["suffix"] = suffix.split()
    text = " ".join([*prefix.split(), *givens, *family.split(), *suffix.split()])
    if text:
        out["text"] = text
    return out


def patient(row: Patient) -> dict[str, Any]:
    """Patient: identifier (system from the issuer), name, birthDate, gender, managing facility."""
    identifier: dict[str, Any] = {"use": "usual", "value": row.identifier}
    if row.issuer:
        identifier["system"] = issuer_system(row.issuer)
    out: dict[str, Any] = {
        "resourceType": "Patient",
        "id": row.id,
        "meta": _changed(row),
        "identifier": [identifier],
    }
    name = human_name(row.name) if row.name else {}
    if name:
        out["name"] = [name]
    gender = _gender(row.sex)
    if gender:
        out["gender"] = gender
    birth_date = fhir_date(row.birth_date)
    if birth_date:
        out["birthDate"] = birth_date
    if row.facility:
        out["managingOrganization"] = {
            "identifier": {"system": c.FACILITY_SYSTEM, "value": row.facility},
            "display": row.facility,
        }
    return out


def _modality(code: str) -> dict[str, str]:
    coding = {"system": v.DCM, "code": code}
    if code in _MODALITY_DISPLAY:
        coding["display"] = _MODALITY_DISPLAY[code]
    return coding


def imaging_study(row: Study) -> dict[str, Any]:
    """ImagingStudy: study UID (system ``urn:dicom:uid``, value ``urn:oid:<uid>``), accession, series and
    instances with their SOP classes."""
    identifiers: list[dict[str, Any]] = [
        {"use": "official", "system": c.DICOM_UID, "value": f"urn:oid:{row.study_instance_uid}"}
    ]
    if row.accession:
        identifiers.append(
            {
                "type": c.concept(c.V2_0203, "ACSN", "Accession ID"),
                "value": row.accession,
            }
        )
    series: dict[str, list[Any]] = {}
    for instance in row.instances:
        series.setdefault(instance.series_instance_uid, []).append(instance)
    modalities = sorted({instance.modality for instance in row.instances})
    out: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": row.id,
        "meta": _changed(row),
        "identifier": identifiers,
        "status": "available",
        "subject": ref("Patient", row.patient_id),
        "modality": [_modality(code) for code in modalities],
        "numberOfSeries": len(series),
        "numberOfInstances": len(row.instances),
        "series": [
            {
                "uid": uid,
                "modality": _modality(members[0].modality),
                "numberOfInstances": len(members),
                "instance": [
                    {
                        "uid": member.sop_instance_uid,
                        "sopClass": {"system": c.RFC3986, "code": f"urn:oid:{member.sop_class_uid}"},
                    }
                    for member in members
                ],
            }
            for uid, members in sorted(series.items())
        ],
    }
    started = fhir_date(row.study_date)
    if started:
        out["started"] = started
    return out


def _effective(result: Result) -> str:
    # The clinically relevant time of an imaging finding is the study's, when the sender gave it.
    if result.study is not None and result.study.study_date:
        return result.study.study_date
    return iso(result.created_at)


def _notes(result: Result) -> list[dict[str, str]]:
    return [{"text": warning} for warning in result.warnings]


def finding_observation(result: Result, finding: Finding) -> dict[str, Any]:
    """Observation of one AI finding: present/absent, probability and threshold as components."""
    assert result.study_id is not None
    components: list[dict[str, Any]] = [
        {
            "code": c.concept(v.LOCAL, "probability", "Model probability (calibrated)"),
            "valueQuantity": c.quantity(finding.probability, "1", "1"),
        },
        {
            "code": c.concept(v.LOCAL, "threshold", "Operating threshold of the model"),
            "valueQuantity": c.quantity(finding.threshold, "1", "1"),
        },
    ]
    if finding.box is not None:
        components.append(
            {
                "code": c.concept(v.LOCAL, "bounding-box", "Bounding box (x0, y0, x1, y1) in image pixels"),
                "valueString": ",".join(str(v) for v in finding.box),
            }
        )
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": finding.id,
        "meta": _ai_meta(result),
        "status": "preliminary",
        "category": [c.concept(c.OBS_CATEGORY, "imaging", "Imaging")],
        "code": {"coding": [c.finding_coding(finding.code, finding.display)], "text": finding.display},
        "subject": ref("Patient", result.patient_id),
        "effectiveDateTime": _effective(result),
        "issued": iso(result.created_at),
        "device": ref("Device", result.device_id),
        "derivedFrom": [ref("ImagingStudy", result.study_id)],
        "component": components,
    }
    if result.assessable:
        out["valueCodeableConcept"] = {"coding": [(v.PRESENT if finding.positive else v.ABSENT).coding()]}
        out["interpretation"] = [
            c.concept(c.INTERPRETATION, "POS", "Positive")
            if finding.positive
            else c.concept(c.INTERPRETATION, "NEG", "Negative")
        ]
    else:
        # Neither present nor absent: the model refused the image, so it says nothing about the finding.
        out["dataAbsentReason"] = {
            "coding": [{"system": c.DATA_ABSENT_REASON, "code": "as-text", "display": "As Text"}],
            "text": v.NOT_ASSESSABLE.display,
        }
    if result.warnings:
        out["note"] = _notes(result)
    return out


def _english(rationale: dict[str, str]) -> str | None:
    if "en" in rationale:
        return rationale["en"]
    return next(iter(rationale.values()), None)


def diagnostic_report(result: Result) -> dict[str, Any]:
    """DiagnosticReport of an imaging result: the finding Observations, the study, the English rationale."""
    assert result.study_id is not None
    conclusion = _english(result.rationale) or ""
    if result.warnings:
        conclusion = " ".join([conclusion, "Warnings:", *result.warnings]).strip()
    out: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": result.id,
        "meta": _ai_meta(result),
        "identifier": [{"system": c.RFC3986, "value": f"urn:uuid:{result.id}"}],
        "status": "preliminary",
        "category": [c.concept(c.V2_0074, "RAD", "Radiology")],
        "code": {"coding": [v.DIAGNOSTIC_IMAGING_STUDY.coding()]},
        "subject": ref("Patient", result.patient_id),
        "effectiveDateTime": _effective(result),
        "issued": iso(result.created_at),
        "imagingStudy": [ref("ImagingStudy", result.study_id)],
    }
    if conclusion:
        out["conclusion"] = conclusion
    if not result.assessable:
        # "Not assessable" instead of the findings: the model refused the image as out of distribution.
        out["conclusionCode"] = [{"coding": [v.NOT_ASSESSABLE.coding()], "text": "Not assessable"}]
        return out
    out["result"] = [ref("Observation", finding.id) for finding in result.findings]
    # The heatmap of each finding that has one (positive findings), at the API route that draws it: a
    # reader's FHIR client finds the images the SR and the Secondary Captures carry to the PACS.
    # ``media.link`` is a Reference(Media): a contained Media whose content is the PNG at that route (an
    # API path is not a reference, and validators refuse it).
    heatmaps = [f for f in result.findings if f.has_heatmap]
    if heatmaps:
        out["contained"] = [
            {
                "resourceType": "Media",
                "id": f"heatmap-{f.id}",
                "status": "completed",
                "type": c.concept(c.MEDIA_TYPE, "image", "Image"),
                "subject": ref("Patient", result.patient_id),
                "content": {
                    "contentType": "image/png",
                    "url": heatmap_url(result.id, f.code),
                    "title": f"Heatmap of {f.display} (PNG)",
                },
            }
            for f in heatmaps
        ]
        out["media"] = [
            {
                "comment": f"Heatmap: {f.display}",
                "link": {"reference": f"#heatmap-{f.id}", "display": f"Heatmap of {f.display} (PNG)"},
            }
            for f in heatmaps
        ]
    positives = [finding for finding in result.findings if finding.positive]
    if positives:
        out["conclusionCode"] = [
            {"coding": [c.finding_coding(f.code, f.display)], "text": f.display} for f in positives
        ]
    return out


def _vital(row: VitalsObservation, sign: str, suffix: str, text: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{row.id}-{suffix}",
        "meta": _meta(row.created),
        "status": "final",
        "category": [c.concept(c.OBS_CATEGORY, "vital-signs", "Vital Signs")],
        "code": {"coding": c.codings(v.VITAL_CODES[sign]), "text": text},
        "subject": ref("Patient", row.patient_id),
        "effectiveDateTime": iso(row.observed_at),
        **value,
    }


def _quantity(
    row: VitalsObservation, sign: str, suffix: str, text: str, unit: str, ucum: str
) -> dict[str, Any] | None:
    """The Observation of a sign measured as one plain quantity, or None when it was not measured."""
    value = getattr(row, sign)
    if value is None:
        return None
    return _vital(row, sign, suffix, text, valueQuantity=c.quantity(value, unit, ucum))


def _spo2(row: VitalsObservation) -> dict[str, Any] | None:
    spo2 = _quantity(row, "spo2", "spo2", "SpO2", "%", "%")
    if spo2 is not None and row.spo2_scale is not None:
        spo2["component"] = [
            {
                "code": c.concept(v.LOCAL, "news2-spo2-scale", "NEWS2 SpO2 scale"),
                "valueInteger": row.spo2_scale,
            }
        ]
    return spo2


def _blood_pressure(row: VitalsObservation) -> dict[str, Any] | None:
    """The blood-pressure panel, or None when neither pressure was measured.

    The FHIR R4 blood-pressure profile requires both the systolic and the diastolic component, each with a
    value or a ``dataAbsentReason`` (vs-3): a pressure that was not sent is a component saying so.
    """
    if row.systolic_bp is None and row.diastolic_bp is None:
        return None
    components = []
    for value, sign in ((row.systolic_bp, "systolic_bp"), (row.diastolic_bp, "diastolic_bp")):
        codes = v.VITAL_CODES[sign]
        component: dict[str, Any] = {"code": {"coding": c.codings(codes), "text": codes[0].display}}
        if value is None:
            component["dataAbsentReason"] = {
                "coding": [{"system": c.DATA_ABSENT_REASON, "code": "unknown", "display": "Unknown"}],
                "text": "Not sent with the other vital signs",
            }
        else:
            component["valueQuantity"] = c.quantity(value, "mmHg", "mm[Hg]")
        components.append(component)
    return _vital(row, "blood_pressure", "bp", "Blood pressure", component=components)


def vital_observations(row: VitalsObservation) -> list[dict[str, Any]]:
    """One vital-signs Observation per measured sign (LOINC codes, UCUM units); none for unmeasured ones."""
    observations = [
        _quantity(row, "respiratory_rate", "rr", "Respiratory rate", "breaths/minute", "/min"),
        _spo2(row),
        _blood_pressure(row),
        _quantity(row, "heart_rate", "hr", "Heart rate", "beats/minute", "/min"),
        _quantity(row, "temperature", "temp", "Body temperature", "C", "Cel"),
        None
        if row.consciousness is None
        else _vital(
            row,
            "consciousness",
            "acvpu",
            "Level of consciousness (ACVPU)",
            valueCodeableConcept=c.concept(*v.ACVPU[row.consciousness], text=row.consciousness),
        ),
        None
        if row.on_oxygen is None
        else _vital(row, "on_oxygen", "o2", "On supplemental oxygen", valueBoolean=bool(row.on_oxygen)),
    ]
    return [observation for observation in observations if observation is not None]


def risk_assessment(result: Result) -> dict[str, Any]:
    """RiskAssessment of a triage result: model probability, NEWS2 band, the vital signs as basis."""
    assert result.vitals is not None
    payload = result.payload
    observed = result.vitals.observed_at
    predictions: list[dict[str, Any]] = [
        {
            "outcome": c.concept(v.LOCAL, "deterioration-24h", "Clinical deterioration within 24 h"),
            "probabilityDecimal": payload["risk"]["probability"],
            "whenPeriod": {"start": iso(observed), "end": iso(observed + timedelta(hours=24))},
        }
    ]
    rationale = _english(result.rationale)
    if rationale:
        predictions[0]["rationale"] = rationale
    news2 = payload.get("news2")
    if news2:
        risk_code, risk_display = c.NEWS2_BAND_RISK.get(news2["band"], ("moderate", "Moderate likelihood"))
        predictions.append(
            {
                "outcome": c.concept(
                    v.LOCAL, "deterioration-news2", "Clinical deterioration (NEWS2 aggregate score)"
                ),
                "qualitativeRisk": c.concept(c.RISK_PROBABILITY, risk_code, risk_display),
                "rationale": f"NEWS2 total {news2['total']}, band {news2['band']} (RCP 2017)."
                if news2.get("complete", True)
                else f"NEWS2 of the measured signs: at least {news2['total']}, band at least {news2['band']} "
                f"(RCP 2017); not measured: {', '.join(news2.get('missing', []))}.",
            }
        )
    contributions = ", ".join(f"{name} {value:+.3f}" for name, value in payload["contributions"].items())
    notes = [
        {
            "text": f"Model logit {payload['logit']:.3f} = intercept {payload['intercept']:.3f} "
            f"+ contributions ({contributions})."
        },
        *_notes(result),
    ]
    return {
        "resourceType": "RiskAssessment",
        "id": result.id,
        "meta": _ai_meta(result),
        "identifier": [{"system": c.RFC3986, "value": f"urn:uuid:{result.id}"}],
        "status": "preliminary",
        "method": c.concept(
            v.LOCAL,
            "vitals-triage-model",
            "Additive vital-sign triage model",
            text=f"{result.model_name} version {result.model_version}",
        ),
        "subject": ref("Patient", result.patient_id),
        "occurrenceDateTime": iso(observed),
        "performer": ref("Device", result.device_id),
        "basis": [ref("Observation", obs["id"]) for obs in vital_observations(result.vitals)],
        "prediction": predictions,
        "note": notes,
    }


def provenance(result: Result) -> dict[str, Any]:
    """Provenance of a result: the model's Device as author and assembler, the inputs as source."""
    if result.kind == "imaging":
        assert result.study_id is not None
        targets = [ref("DiagnosticReport", result.id)]
        targets += [ref("Observation", finding.id) for finding in result.findings]
        sources = [ref("ImagingStudy", result.study_id)]
    else:
        assert result.vitals is not None
        targets = [ref("RiskAssessment", result.id)]
        sources = [ref("Observation", obs["id"]) for obs in vital_observations(result.vitals)]
    device = ref("Device", result.device_id)
    return {
        "resourceType": "Provenance",
        "id": result.id,
        "meta": _meta(result.created_at),
        "target": targets,
        "recorded": iso(result.created_at),
        "activity": c.concept(c.DATA_OPERATION, "CREATE", "create"),
        "agent": [
            {"type": c.concept(c.PROVENANCE_AGENT, "author", "Author"), "who": device},
            {"type": c.concept(c.PROVENANCE_AGENT, "assembler", "Assembler"), "who": device},
        ],
        "entity": [{"role": "source", "what": source} for source in sources],
    }


def device(row: Device) -> dict[str, Any]:
    """Device of one model version: name, version, the ONNX file's sha256 as identifier, and what the model
    was trained on as its file said when the device was filed (``note``: the sentence every result of it
    carries; ``property`` ``training-data``: the data-set line of its metadata), served or not."""
    out: dict[str, Any] = {
        "resourceType": "Device",
        "id": row.id,
        "meta": _changed(row),
        "identifier": [{"system": c.MODEL_SHA256_SYSTEM, "value": row.model_sha256}],
        "status": "active",
        "manufacturer": "dxassist",
        "deviceName": [{"name": row.model_name, "type": "model-name"}],
        "modelNumber": row.model_name,
        "type": c.concept(v.LOCAL, "ai-model", "AI diagnostic-assist model (ONNX)"),
        "version": [{"value": row.model_version}],
    }
    if row.training:
        out["note"] = [{"text": row.training}]
    if row.training_data:
        out["property"] = [
            {
                "type": {"coding": [dict(c.TRAINING_DATA)], "text": "Training data"},
                "valueCode": [{"text": row.training_data}],
            }
        ]
    return out
