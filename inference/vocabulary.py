"""The product's one vocabulary: finding codes, their coded concepts and display names, and code systems.

Every output that names a finding or a coded concept takes it from here: the DICOM SR and Secondary
Captures (``inference.writers``), the FHIR views (``inference.record.fhir``), the rationale text and the
readers' pages (``inference.explain``, ``inference.api.ui``), the site policy's finding names
(``inference.policy``) and training's label columns (``training.data``), so the model's outputs, the PACS
and the patient record never disagree about what a finding is called.

A concept is ``(system, code, display)`` with the FHIR system URI; DICOM writes the same concept with
its Coding Scheme Designator (:attr:`Concept.designator`). Standard codes first (SNOMED CT for findings
and qualifiers, LOINC for procedures and vital signs, DCM for DICOM structure, UCUM for units). What no
standard system says (a classifier's calibrated probability, "not assessable by the algorithm") is in
the local system :data:`LOCAL`, written to DICOM as the private scheme ``99DXA``, so nobody mistakes it
for a standard code. This module imports nothing of the product.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

Language = Literal["en", "fr", "ar"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "fr", "ar")
"""Languages of the display names, the rationale and the readers' pages."""

# Code systems (FHIR system URIs).
SNOMED_CT: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
LOCAL: Final = "urn:dxassist:codes"
"""dxassist's own codes; in DICOM the private coding scheme :data:`PRIVATE_SCHEME`."""

PRIVATE_SCHEME: Final = "99DXA"
PRIVATE_SCHEME_NAME: Final = "dxassist local codes"

DESIGNATORS: Final[dict[str, str]] = {
    SNOMED_CT: "SCT",
    LOINC: "LN",
    UCUM: "UCUM",
    DCM: "DCM",
    LOCAL: PRIVATE_SCHEME,
}
"""FHIR system URI → DICOM Coding Scheme Designator (PS3.16 Table 8-1)."""


class Concept(NamedTuple):
    """A coded concept: FHIR system URI, code, display (DICOM: designator, Code Value, Code Meaning)."""

    system: str
    code: str
    display: str

    @property
    def designator(self) -> str:
        """The DICOM Coding Scheme Designator of :attr:`system`."""
        return DESIGNATORS[self.system]

    def coding(self) -> dict[str, str]:
        """The FHIR ``Coding`` of this concept."""
        return {"system": self.system, "code": self.code, "display": self.display}


# ---------------------------------------------------------------------------------------------------
# Findings of the imaging model
# ---------------------------------------------------------------------------------------------------

FINDINGS: Final[tuple[str, ...]] = (
    "nodule",
    "consolidation",
    "pleural_effusion",
    "pneumothorax",
    "cardiomegaly",
)
"""Finding codes of ``cxr-findings``, in the model's output order (training's label columns)."""

FINDING_CODES: Final[dict[str, Concept]] = {
    # SNOMED CT disorder concepts with their preferred terms.
    "nodule": Concept(SNOMED_CT, "786838002", "Nodule of lung"),
    "consolidation": Concept(SNOMED_CT, "95436008", "Lung consolidation"),
    "pleural_effusion": Concept(SNOMED_CT, "60046008", "Pleural effusion"),
    "pneumothorax": Concept(SNOMED_CT, "36118008", "Pneumothorax"),
    "cardiomegaly": Concept(SNOMED_CT, "8186001", "Cardiomegaly"),
}

FINDING_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "nodule": {"en": "lung nodule", "fr": "nodule pulmonaire", "ar": "عقيدة رئوية"},
    "consolidation": {"en": "lung consolidation", "fr": "condensation pulmonaire", "ar": "تكثّف رئوي"},
    "pleural_effusion": {"en": "pleural effusion", "fr": "épanchement pleural", "ar": "انصباب جنبي"},
    "pneumothorax": {"en": "pneumothorax", "fr": "pneumothorax", "ar": "استرواح الصدر"},
    "cardiomegaly": {"en": "cardiomegaly", "fr": "cardiomégalie", "ar": "تضخّم القلب"},
}
"""Lower-case display names for running text; capitalise for a heading."""


def finding_display(code: str, lang: Language = "en") -> str:
    """Display name of a finding in ``lang`` (the code itself, spaced, for a finding not listed here)."""
    names = FINDING_DISPLAY.get(code)
    return names[lang] if names is not None else code.replace("_", " ")


def finding_concept(code: str, display: str) -> Concept:
    """The coded concept of a model finding: SNOMED CT when known, else a :data:`LOCAL` code named after it.

    Args:
        code: Model finding code (``pneumothorax``, ...).
        display: Display name used when the finding has no SNOMED CT concept.
    """
    known = FINDING_CODES.get(code)
    return known if known is not None else Concept(LOCAL, code, display)


# ---------------------------------------------------------------------------------------------------
# Qualifiers, procedures, measurements (DICOM SR and FHIR)
# ---------------------------------------------------------------------------------------------------

# CID 240 "Present/Absent" (SNOMED CT qualifier values); the FHIR finding Observations use the same.
PRESENT: Final = Concept(SNOMED_CT, "52101004", "Present")
ABSENT: Final = Concept(SNOMED_CT, "272519000", "Absent")
# LOINC procedure: the model reads one frontal chest radiograph (CID 100 is extensible).
CHEST_XR_SINGLE_VIEW: Final = Concept(LOINC, "36554-4", "XR Chest Single view")
DIAGNOSTIC_IMAGING_STUDY: Final = Concept(LOINC, "18748-4", "Diagnostic imaging study")
# CID 7005: equipment that processed composite instances to create new ones.
PROCESSING_EQUIPMENT: Final = Concept(DCM, "109102", "Processing Equipment")
# CID 7202: the source image was the input of an image processing operation.
SOURCE_FOR_PROCESSING: Final = Concept(DCM, "121322", "Source image for image processing operation")
# DICOM has no generic code for a classifier's calibrated probability (DCM 111047 is a mammography
# CAD concept), nor for the threshold it is compared with.
PROBABILITY: Final = Concept(LOCAL, "PROBABILITY", "Probability of finding")
THRESHOLD: Final = Concept(LOCAL, "THRESHOLD", "Operating threshold")
PERCENT: Final = Concept(UCUM, "%", "percent")
NO_UNITS: Final = Concept(UCUM, "1", "no units")
# The image-level statement of a result the algorithm refused as out of its training distribution.
ASSESSABILITY: Final = Concept(LOCAL, "ASSESSABILITY", "Assessability by the algorithm")
NOT_ASSESSABLE_SR: Final = Concept(LOCAL, "NOT_ASSESSABLE", "Not assessable by the algorithm")
OOD_SCORE: Final = Concept(LOCAL, "OOD_SCORE", "Out-of-distribution score")
OOD_THRESHOLD: Final = Concept(LOCAL, "OOD_THRESHOLD", "Out-of-distribution threshold")
NOT_ASSESSABLE: Final = Concept(
    LOCAL, "not-assessable", "Not assessable by the AI model (image outside its training distribution)"
)
"""The FHIR DiagnosticReport's conclusion for an image the model refused (``conclusionCode``)."""

# ---------------------------------------------------------------------------------------------------
# Vital signs and NEWS2
# ---------------------------------------------------------------------------------------------------

VITAL_CODES: Final[dict[str, tuple[Concept, ...]]] = {
    # LOINC codes of the FHIR vital-signs profile; the first is the Observation's primary code.
    "respiratory_rate": (Concept(LOINC, "9279-1", "Respiratory rate"),),
    "spo2": (
        Concept(LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        Concept(LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
    ),
    "blood_pressure": (Concept(LOINC, "85354-9", "Blood pressure panel with all children optional"),),
    "systolic_bp": (Concept(LOINC, "8480-6", "Systolic blood pressure"),),
    "diastolic_bp": (Concept(LOINC, "8462-4", "Diastolic blood pressure"),),
    "heart_rate": (Concept(LOINC, "8867-4", "Heart rate"),),
    "temperature": (Concept(LOINC, "8310-5", "Body temperature"),),
    "consciousness": (Concept(LOINC, "67775-7", "Level of responsiveness"),),
    # No standard code says "on supplemental oxygen" as a yes/no.
    "on_oxygen": (Concept(LOCAL, "on-supplemental-oxygen", "On supplemental oxygen"),),
}

ACVPU: Final[dict[str, Concept]] = {
    # SNOMED CT answers of the UK ACVPU value set.
    "A": Concept(SNOMED_CT, "248234008", "Mentally alert"),
    "C": Concept(SNOMED_CT, "130987000", "Acute confusion"),
    "V": Concept(SNOMED_CT, "300202002", "Responds to voice"),
    "P": Concept(SNOMED_CT, "450847001", "Responds to pain"),
    "U": Concept(SNOMED_CT, "422768004", "Unresponsive"),
}

VITAL_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "respiratory_rate": {"en": "respiratory rate", "fr": "fréquence respiratoire", "ar": "معدل التنفس"},
    "spo2": {"en": "oxygen saturation", "fr": "saturation en oxygène", "ar": "تشبّع الأكسجين"},
    "on_oxygen": {"en": "supplemental oxygen", "fr": "oxygénothérapie", "ar": "الأكسجين الإضافي"},
    "systolic_bp": {
        "en": "systolic blood pressure",
        "fr": "pression artérielle systolique",
        "ar": "ضغط الدم الانقباضي",
    },
    "diastolic_bp": {
        "en": "diastolic blood pressure",
        "fr": "pression artérielle diastolique",
        "ar": "ضغط الدم الانبساطي",
    },
    "heart_rate": {"en": "heart rate", "fr": "fréquence cardiaque", "ar": "معدل ضربات القلب"},
    "temperature": {"en": "temperature", "fr": "température", "ar": "درجة الحرارة"},
    "consciousness": {"en": "level of consciousness", "fr": "niveau de conscience", "ar": "مستوى الوعي"},
}

NEWS2_BAND_DISPLAY: Final[dict[str, dict[Language, str]]] = {
    "low": {"en": "low", "fr": "faible", "ar": "منخفض"},
    "low-medium": {"en": "low-medium", "fr": "faible à moyen", "ar": "منخفض إلى متوسط"},
    "medium": {"en": "medium", "fr": "moyen", "ar": "متوسط"},
    "high": {"en": "high", "fr": "élevé", "ar": "مرتفع"},
}


# --- The sentences of a result's ``warnings`` ---------------------------------------------------------
# Results carry their warnings as English sentences (the API's contract; clients match on the coded
# prefixes). Each sentence is made from one phrase below, so a page can read a warning back into its
# phrase and values and show it in the reader's language (the phrase is the catalogue's msgid).


class Phrase:
    """One warning sentence: English with named ``%(name)s`` placeholders (``%%`` for a percent sign).

    Attributes:
        text: The English sentence, the catalogues' msgid.
        fields: The placeholders whose value is a comma-separated list of vital-sign fields (a page
            shows each in its language).
    """

    def __init__(self, text: str, *, fields: tuple[str, ...] = ()) -> None:
        import re

        self.text = text
        self.fields = fields
        parts = re.split(r"(%\([a-z0-9_]+\)s|%%)", text)
        pattern = "".join(
            "%" if part == "%%" else f"(?P<{part[2:-2]}>.+?)" if part.startswith("%(") else re.escape(part)
            for part in parts
        )
        self._pattern = re.compile(pattern, re.DOTALL)

    def __call__(self, **values: object) -> str:
        """The sentence with ``values`` in its placeholders."""
        return self.text % {name: str(value) for name, value in values.items()}

    def read(self, sentence: str) -> dict[str, str] | None:
        """The values of a sentence made from this phrase, else None."""
        found = self._pattern.fullmatch(sentence)
        return None if found is None else found.groupdict()

    def __repr__(self) -> str:
        return f"Phrase({self.text[:40]!r}...)"


TRAINED_ON: Final = Phrase(
    "Model %(model)s version %(version)s was trained on %(data)s. Its output holds for patients and "
    "equipment like those of that data; a clinician decides."
)
TRAINING_UNKNOWN: Final = Phrase(
    "Model %(model)s version %(version)s does not say what data it was trained on; ask who registered it "
    "before relying on its output."
)
LATERAL_SET_ASIDE: Final = (
    Phrase("%(count)s lateral view was set aside; only the frontal view was analysed."),
    Phrase("%(count)s lateral views were set aside; only the frontal view was analysed."),
)
NOT_FRONTAL_SET_ASIDE: Final = (
    Phrase(
        "%(count)s image tagged as a frontal view was set aside: the model did not recognise it as a "
        "frontal chest radiograph (a lateral or another projection tagged PA or AP?); another frontal view "
        "of the study was analysed."
    ),
    Phrase(
        "%(count)s images tagged as a frontal view were set aside: the model did not recognise them as a "
        "frontal chest radiograph (a lateral or another projection tagged PA or AP?); another frontal view "
        "of the study was analysed."
    ),
)
OTHER_FRONTALS: Final = (
    Phrase("%(count)s other frontal image was received but not analysed; the PA view is preferred, then AP."),
    Phrase(
        "%(count)s other frontal images were received but not analysed; the PA view is preferred, then AP."
    ),
)
REDUCED_RESOLUTION: Final = Phrase(
    "The image was decoded at 1/%(reduction)s of its resolution for analysis (enough for the model's input "
    "size); heatmap boxes are mapped back to full-resolution pixels."
)
NEWS2_MISSING: Final = Phrase(
    "NEWS2 is incomplete: these parameters are missing: %(fields)s. The total and band are those of the "
    "measured parameters, a lower bound of the full score.",
    fields=("fields",),
)
TRIAGE_MISSING: Final = Phrase(
    "The risk was estimated without these measurements: %(fields)s; they contribute nothing to the "
    "explanation.",
    fields=("fields",),
)
SPO2_WITHHELD: Final = Phrase(
    "spo2_withheld: SpO2 was charted on NEWS2 Scale 2 (target 88-92 %%); model %(model)s version "
    "%(version)s was not trained with the scale and reads every saturation on Scale 1, so it estimated the "
    "risk without SpO2 (contribution 0, listed in missing). NEWS2 scored SpO2 on Scale 2."
)
DETERIORATING: Final = (
    Phrase(
        "Deteriorating over %(hours)s h (%(observations)s observations): NEWS2 %(news2)s, model risk "
        "%(risk)s points."
    ),
    Phrase(
        "Deteriorating over %(hours)s h (%(observations)s observations): NEWS2 %(news2)s, model risk "
        "%(risk)s points. The priority was raised by the site policy."
    ),
)
OUTPUTS_NOT_BUILT: Final = (
    Phrase(
        "[%(code)s] The DICOM outputs of this result (report and heatmap captures) could not be built, so "
        "they have not reached the PACS; they are being built again."
    ),
    Phrase(
        "[%(code)s] The DICOM outputs of this result (report and heatmap captures) could not be built, so "
        "they have not reached the PACS; no more attempts are made until an operator retries them "
        "(`dxassist dead-letter retry`)."
    ),
)
IDENTITY_MISMATCH: Final = Phrase(
    "identity_mismatch: the patient's %(fields)s sent with this result differ from the record on file; the "
    "record kept its own. Check the patient's identity with the sending facility before reading."
)
IDENTITY_FIELDS: Final[dict[str, str]] = {"name": "name", "birth_date": "birth date", "sex": "sex"}
"""The demographics :data:`IDENTITY_MISMATCH` names, as it writes them (a page translates each)."""

WARNING_PHRASES: Final[tuple[Phrase, ...]] = (
    TRAINED_ON,
    TRAINING_UNKNOWN,
    *LATERAL_SET_ASIDE,
    *NOT_FRONTAL_SET_ASIDE,
    *OTHER_FRONTALS,
    REDUCED_RESOLUTION,
    NEWS2_MISSING,
    TRIAGE_MISSING,
    SPO2_WITHHELD,
    *DETERIORATING,
    *OUTPUTS_NOT_BUILT,
    IDENTITY_MISMATCH,
)
"""Every phrase a warning is made from, but the two a page shows in its own words (the synthetic-data
banner and ``not_assessable``). A sentence reads back into at most one of them (tested)."""


def read_warning(sentence: str) -> tuple[Phrase, dict[str, str]] | None:
    """The phrase a warning was made from and its values, else None (a warning of an older version, or
    one a site wrote)."""
    for phrase in WARNING_PHRASES:
        values = phrase.read(sentence)
        if values is not None:
            return phrase, values
    return None
