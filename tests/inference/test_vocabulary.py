"""The one vocabulary: every finding the model can output is coded and named, and every output agrees."""

from __future__ import annotations

import pytest

from inference import vocabulary as v
from inference.policy import Policy
from inference.record.fhir._codes import finding_coding
from inference.writers._coding import code, finding_code


def _is_concept_sctid(value: str) -> bool:
    """A well-formed SNOMED CT concept identifier: 6-18 digits whose partition digits say "concept"."""
    return value.isdigit() and 6 <= len(value) <= 18 and value[0] != "0" and value[-3:-1] in ("00", "10")


def _concepts() -> dict[str, v.Concept]:
    found = {name: value for name, value in vars(v).items() if isinstance(value, v.Concept)}
    for name, table in (("FINDING_CODES", v.FINDING_CODES), ("ACVPU", v.ACVPU)):
        found.update({f"{name}[{key}]": concept for key, concept in table.items()})
    for sign, concepts in v.VITAL_CODES.items():
        found.update({f"VITAL_CODES[{sign}][{i}]": concept for i, concept in enumerate(concepts)})
    return found


def test_every_finding_the_model_outputs_has_a_snomed_concept_and_a_name_in_every_language() -> None:
    from training.data import FINDINGS as TRAINING_LABELS

    # Training's label columns (what the exported model's ``dxassist.labels`` lists) are these codes.
    assert TRAINING_LABELS == v.FINDINGS
    assert len(set(v.FINDINGS)) == len(v.FINDINGS) == 5
    assert set(v.FINDING_CODES) == set(v.FINDING_DISPLAY) == set(v.FINDINGS)
    for finding in v.FINDINGS:
        concept = v.FINDING_CODES[finding]
        assert concept.system == v.SNOMED_CT and _is_concept_sctid(concept.code), finding
        assert concept.display and concept.display[0].isupper()
        names = v.FINDING_DISPLAY[finding]
        assert set(names) == set(v.LANGUAGES) and all(name.strip() for name in names.values())
        assert all(v.finding_display(finding, lang) == names[lang] for lang in v.LANGUAGES)
    assert v.FINDING_CODES["pneumothorax"] == (v.SNOMED_CT, "36118008", "Pneumothorax")


def test_the_default_site_policy_names_only_findings_of_the_vocabulary() -> None:
    named = {rule.finding for rule in Policy.load().imaging_rules}
    assert named and named <= set(v.FINDINGS)


@pytest.mark.parametrize("finding", v.FINDINGS)
def test_the_sr_and_the_fhir_views_code_a_finding_alike(finding: str) -> None:
    sr = finding_code(finding, "ignored")
    fhir = finding_coding(finding, "ignored")
    concept = v.FINDING_CODES[finding]
    assert (sr.value, sr.scheme_designator, sr.meaning) == (concept.code, "SCT", concept.display)
    assert fhir == {"system": v.SNOMED_CT, "code": concept.code, "display": concept.display}


def test_a_finding_outside_the_vocabulary_gets_a_local_code_in_both_outputs() -> None:
    sr = finding_code("a_rather_long_new_finding", "A rather long new finding")
    fhir = finding_coding("a_rather_long_new_finding", "A rather long new finding")
    assert (sr.value, sr.scheme_designator) == ("A_RATHER_LONG_NE", v.PRIVATE_SCHEME)  # SH: 16 characters
    assert (fhir["system"], fhir["code"]) == (v.LOCAL, "a_rather_long_new_finding")


def test_every_concept_is_writable_to_dicom_and_fhir() -> None:
    concepts = _concepts()
    assert len(concepts) > 30
    for name, concept in concepts.items():
        dicom = code(concept)
        assert dicom.scheme_designator == v.DESIGNATORS[concept.system], name
        assert concept.code and concept.display, name
        # DICOM's Code Value is SH, Code Meaning LO; two FHIR-only local codes are longer.
        fhir_only = concept in (v.NOT_ASSESSABLE, *v.VITAL_CODES["on_oxygen"])
        assert fhir_only or (len(concept.code) <= 16 and len(concept.display) <= 64), name
        if concept.system == v.SNOMED_CT:
            assert _is_concept_sctid(concept.code), name
        assert concept.coding() == dict(zip(("system", "code", "display"), concept, strict=True))


def test_present_and_absent_are_the_dicom_cid_240_concepts_in_both_outputs() -> None:
    from pydicom.sr.codedict import codes

    assert (v.PRESENT.code, v.PRESENT.display) == (codes.SCT.Present.value, codes.SCT.Present.meaning)
    assert (v.ABSENT.code, v.ABSENT.display) == (codes.SCT.Absent.value, codes.SCT.Absent.meaning)
