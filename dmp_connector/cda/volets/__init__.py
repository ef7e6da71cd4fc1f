"""The structured volets the SDK builds end to end: VSM, LDL-SES, LDL-EES, CR-IMG, VAC-NOTE and CR-BIO.

Importing this package registers the readers of its typed entries with
:func:`dmp_connector.cda.register_entry_reader`, so that :func:`dmp_connector.cda.parse`
reads them back as :class:`Problem`, :class:`Allergy`, :class:`Medication` and
:class:`NoMedication`, :class:`SimpleObservation` and :class:`Procedure` (``dmp_connector.cda`` imports it).
"""

from __future__ import annotations

from dmp_connector.cda.model import register_entry_reader

from ._acts import PROCEDURE_TEMPLATES, Procedure
from ._bio_entries import (
    LAB_REPORT_ENTRY_TEMPLATES,
    LabBattery,
    LabComment,
    LabDevice,
    LabImage,
    LabPerformer,
    LabReportEntry,
    LabResult,
    LabValidator,
    PreviousResult,
    QuantityRange,
    ReferenceRange,
    Specimen,
    SpecimenCollection,
    loinc_problem,
)
from ._entries import (
    ALLERGY_CONCERN_TEMPLATES,
    MEDICATION_TEMPLATES,
    PROBLEM_CONCERN_TEMPLATES,
    SIMPLE_OBSERVATION_TEMPLATES,
    Allergy,
    AllergyReaction,
    AllergySeverity,
    InternalReference,
    MaxDose,
    Medication,
    NoMedication,
    Problem,
    Quantity,
    SimpleObservation,
    VoletEntry,
    read_treatment,
)
from .cr_bio import (
    CR_BIO_FORMAT_CODE,
    CR_BIO_TEMPLATE,
    CR_BIO_TYPE_CODE,
    CrBioContent,
    LabChapter,
    as_cr_bio,
    cr_bio_authenticators,
    cr_bio_document,
    cr_bio_problems,
)
from .cr_img import (
    CR_IMG_FORMAT_CODE,
    CR_IMG_TEMPLATE,
    CR_IMG_TYPE_CODE,
    ClinicalInformation,
    ContrastAdministration,
    CrImgContent,
    DicomObservation,
    ImagingAct,
    ImagingSeries,
    ImagingStudy,
    ImagingTechnique,
    PatientExposure,
    RadiationDose,
    RadiationExposure,
    RadiopharmaceuticalAdministration,
    SopInstance,
    as_cr_img,
    cr_img_acts,
    cr_img_document,
    cr_img_problems,
)
from .ldl_ees import (
    LDL_EES_FORMAT_CODE,
    LDL_EES_SERVICE_CODE,
    LDL_EES_TEMPLATE,
    LDL_EES_TYPE_CODE,
    LdlEesContent,
    as_ldl_ees,
    ldl_ees_document,
    ldl_ees_problems,
)
from .ldl_ses import (
    LDL_SES_FORMAT_CODE,
    LDL_SES_TEMPLATE,
    LDL_SES_TYPE_CODE,
    LdlSesContent,
    StaySummary,
    as_ldl_ses,
    ldl_ses_document,
    ldl_ses_problems,
)
from .vac_note import (
    VAC_NOTE_FORMAT_CODE,
    VAC_NOTE_TEMPLATE,
    VAC_NOTE_TYPE_CODE,
    Vaccination,
    VaccinationReaction,
    VacNoteContent,
    as_vac_note,
    vac_note_document,
    vac_note_problems,
    vac_note_vaccination,
)
from .vsm import (
    VSM_FORMAT_CODE,
    VSM_SERVICE_CODE,
    VSM_TEMPLATE,
    VSM_TYPE_CODE,
    VsmContent,
    as_vsm,
    vsm_document,
    vsm_problems,
)

__all__ = [
    "CR_BIO_FORMAT_CODE",
    "CR_BIO_TEMPLATE",
    "CR_BIO_TYPE_CODE",
    "CR_IMG_FORMAT_CODE",
    "CR_IMG_TEMPLATE",
    "CR_IMG_TYPE_CODE",
    "LDL_EES_FORMAT_CODE",
    "LDL_EES_SERVICE_CODE",
    "LDL_EES_TEMPLATE",
    "LDL_EES_TYPE_CODE",
    "LDL_SES_FORMAT_CODE",
    "LDL_SES_TEMPLATE",
    "LDL_SES_TYPE_CODE",
    "VAC_NOTE_FORMAT_CODE",
    "VAC_NOTE_TEMPLATE",
    "VAC_NOTE_TYPE_CODE",
    "VSM_FORMAT_CODE",
    "VSM_SERVICE_CODE",
    "VSM_TEMPLATE",
    "VSM_TYPE_CODE",
    "Allergy",
    "AllergyReaction",
    "AllergySeverity",
    "ClinicalInformation",
    "ContrastAdministration",
    "CrBioContent",
    "CrImgContent",
    "DicomObservation",
    "ImagingAct",
    "ImagingSeries",
    "ImagingStudy",
    "ImagingTechnique",
    "InternalReference",
    "LabBattery",
    "LabChapter",
    "LabComment",
    "LabDevice",
    "LabImage",
    "LabPerformer",
    "LabReportEntry",
    "LabResult",
    "LabValidator",
    "LdlEesContent",
    "LdlSesContent",
    "MaxDose",
    "Medication",
    "NoMedication",
    "PatientExposure",
    "PreviousResult",
    "Problem",
    "Procedure",
    "Quantity",
    "QuantityRange",
    "RadiationDose",
    "RadiationExposure",
    "RadiopharmaceuticalAdministration",
    "ReferenceRange",
    "SimpleObservation",
    "SopInstance",
    "Specimen",
    "SpecimenCollection",
    "StaySummary",
    "VacNoteContent",
    "Vaccination",
    "VaccinationReaction",
    "VoletEntry",
    "VsmContent",
    "as_cr_bio",
    "as_cr_img",
    "as_ldl_ees",
    "as_ldl_ses",
    "as_vac_note",
    "as_vsm",
    "cr_bio_authenticators",
    "cr_bio_document",
    "cr_bio_problems",
    "cr_img_acts",
    "cr_img_document",
    "cr_img_problems",
    "ldl_ees_document",
    "ldl_ees_problems",
    "ldl_ses_document",
    "ldl_ses_problems",
    "loinc_problem",
    "vac_note_document",
    "vac_note_problems",
    "vac_note_vaccination",
    "vsm_document",
    "vsm_problems",
]

# The most specific templateId of each statement: the CI-SIS one, never the shared CCD/IHE ones.
register_entry_reader(PROBLEM_CONCERN_TEMPLATES[-1], Problem.from_element)
register_entry_reader(ALLERGY_CONCERN_TEMPLATES[-1], Allergy.from_element)
register_entry_reader(MEDICATION_TEMPLATES[2], read_treatment)
register_entry_reader(SIMPLE_OBSERVATION_TEMPLATES[-1], SimpleObservation.from_element)
register_entry_reader(PROCEDURE_TEMPLATES[-1], Procedure.from_element)  # FR-Acte (LDL-EES surgical history)
# CR-IMG 2024.01
register_entry_reader("1.2.250.1.213.1.1.3.153", ImagingTechnique.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.155", ImagingStudy.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.150", DicomObservation.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.154", RadiationDose.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.165", PatientExposure.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.151", ContrastAdministration.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.173", RadiopharmaceuticalAdministration.from_element)
# VAC-NOTE 2023.01
register_entry_reader("1.2.250.1.213.1.1.3.45", Vaccination.from_element)
# CR-BIO 2024.01
register_entry_reader(LAB_REPORT_ENTRY_TEMPLATES[-1], LabReportEntry.from_element)  # on <entry> itself

from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
