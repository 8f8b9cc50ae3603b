"""The DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, as applied by dxassist.

Actions (PS3.15 Table E.1-1): ``D`` replace with a dummy value, ``Z`` replace with a zero-length or dummy
value, ``X`` remove, ``U`` replace a UID with a consistent new one. Where the table allows several
actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``), the strictest that keeps the object valid is used: ``Z``
for attributes of type 2 in the radiograph IODs, else ``X``.

Options applied on top of the Basic Profile:
- *Retain Longitudinal Temporal Information with Modified Dates* (113107): dates are shifted by a
  whole number of days fixed per patient instead of being removed, so intervals between one patient's
  studies survive; times of day are kept.
- Private attributes are all removed (the *Retain Safe Private* option is not applied).

Beyond the listed attributes, every other person name (PN) is removed, every UID that is not a
well-known DICOM UID (SOP classes, transfer syntaxes, coding schemes) is remapped, overlays and curves
are removed, and sequences are processed item by item.
"""

from __future__ import annotations

from typing import Final

BASIC_PROFILE: Final = "113100"
RETAIN_LONGITUDINAL_MODIFIED_DATES: Final = "113107"
METHOD_TEXT: Final = (
    "DICOM PS3.15 E Basic Application Confidentiality Profile (113100) with Retain Longitudinal Temporal "
    "Information Modified Dates Option (113107); dxassist export-training-set"
)
CODE_MEANINGS: Final[dict[str, str]] = {
    BASIC_PROFILE: "Basic Application Confidentiality Profile",
    RETAIN_LONGITUDINAL_MODIFIED_DATES: "Retain Longitudinal Temporal Information Modified Dates Option",
}

# Keyword -> action. Dates listed here with X or Z are removed or emptied; other dates are shifted.
ACTIONS: Final[dict[str, str]] = {
    # -- patient identity and characteristics
    "PatientName": "Z",  # replaced by the pseudonym
    "PatientID": "Z",  # replaced by the pseudonym
    "IssuerOfPatientID": "X",
    "IssuerOfPatientIDQualifiersSequence": "X",
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientSex": "Z",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientTelecomInformation": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "PatientBirthName": "X",
    "PatientMotherBirthName": "X",
    "MedicalRecordLocator": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "AdditionalPatientHistory": "X",
    "PatientComments": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "PatientReligiousPreference": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "ReferencedPatientPhotoSequence": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPatientAliasSequence": "X",
    "ResponsibleOrganization": "X",
    "ResponsiblePerson": "X",
    "PatientSexNeutered": "X",
    "PatientState": "X",
    "PregnancyStatus": "X",
    "SmokingStatus": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "SpecialNeeds": "X",
    "LastMenstrualDate": "X",
    "PatientTransportArrangements": "X",
    "PatientInstitutionResidence": "X",
    "CurrentPatientLocation": "X",
    # -- visit and request
    "AdmissionID": "X",
    "IssuerOfAdmissionIDSequence": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "DischargeDiagnosisDescription": "X",
    "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "FillerOrderNumberImagingServiceRequest": "X",
    "PlacerOrderNumberImagingServiceRequest": "X",
    "RequestAttributesSequence": "X",
    "RequestedProcedureDescription": "X",
    "RequestedProcedureComments": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureCodeSequence": "X",
    "ReasonForStudy": "X",
    "ReasonForTheRequestedProcedure": "X",
    "ImagingServiceRequestComments": "X",
    "RequestingService": "X",
    "StudyComments": "X",
    # -- people
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "RequestingPhysician": "X",
    "OperatorsName": "X",
    "OperatorIdentificationSequence": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ContentCreatorName": "Z",
    "VerifyingObserverName": "D",
    "PersonName": "D",
    "ReviewerName": "X",
    "CurrentObserverTrial": "X",
    # -- institution and equipment
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionalDepartmentTypeCodeSequence": "X",
    "InstitutionCodeSequence": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "DeviceDescription": "X",
    "DetectorID": "X",
    "PlateID": "X",
    "CassetteID": "X",
    "GantryID": "X",
    "SoftwareVersions": "X",
    "ContributingEquipmentSequence": "X",
    # -- free text and descriptions
    "StudyDescription": "X",
    "SeriesDescription": "X",
    "ImageComments": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "ScheduledProcedureStepDescription": "X",
    "ProtocolName": "X",
    "AcquisitionComments": "X",
    "AcquisitionDeviceProcessingDescription": "X",
    "DerivationDescription": "X",
    "FrameComments": "X",
    "TextComments": "X",
    "TextString": "X",
    "ProcedureCodeSequence": "X",
    "PerformedProtocolCodeSequence": "X",
    "AcquisitionContextSequence": "X",
    # -- integrity and provenance of the original object
    "OriginalAttributesSequence": "X",
    "ModifiedAttributesSequence": "X",
    "DigitalSignaturesSequence": "X",
    "MACParametersSequence": "X",
    "EncryptedAttributesSequence": "X",
    "DigitalSignatureUID": "X",
    "ReferencedStudySequence": "X",
    # -- UIDs (every other non-standard UID is remapped too)
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "MediaStorageSOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "IrradiationEventUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U",
    "InstanceCreatorUID": "U",
    "DeviceUID": "U",
    "TargetUID": "U",
    "UID": "U",
    "StorageMediaFileSetUID": "U",
}
