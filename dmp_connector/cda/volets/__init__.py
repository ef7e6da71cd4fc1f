"""The structured volets the SDK builds end to end: the VSM, the LDL-SES, the CR-IMG, the VAC-NOTE.

Importing this package registers the readers of its typed entries with
:func:`dmp_connector.cda.register_entry_reader`, so that :func:`dmp_connector.cda.parse`
reads them back as :class:`Problem`, :class:`Allergy`, :class:`Medication` and
:class:`NoMedication` and :class:`SimpleObservation` (``dmp_connector.cda`` imports it).
"""

from __future__ import annotations

from dmp_connector.cda.model import register_entry_reader

from ._entries import (
    ALLERGY_CONCERN_TEMPLATES,
    MEDICATION_TEMPLATES,
    PROBLEM_CONCERN_TEMPLATES,
    SIMPLE_OBSERVATION_TEMPLATES,
    Allergy,
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
from .cr_img import (
    CR_IMG_FORMAT_CODE,
    CR_IMG_TEMPLATE,
    CR_IMG_TYPE_CODE,
    ClinicalInformation,
    CrImgContent,
    DicomObservation,
    ImagingAct,
    ImagingSeries,
    ImagingStudy,
    ImagingTechnique,
    PatientExposure,
    RadiationDose,
    RadiationExposure,
    SopInstance,
    as_cr_img,
    cr_img_acts,
    cr_img_document,
    cr_img_problems,
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
    "CR_IMG_FORMAT_CODE",
    "CR_IMG_TEMPLATE",
    "CR_IMG_TYPE_CODE",
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
    "ClinicalInformation",
    "CrImgContent",
    "DicomObservation",
    "ImagingAct",
    "ImagingSeries",
    "ImagingStudy",
    "ImagingTechnique",
    "InternalReference",
    "LdlSesContent",
    "MaxDose",
    "Medication",
    "NoMedication",
    "PatientExposure",
    "Problem",
    "Quantity",
    "RadiationDose",
    "RadiationExposure",
    "SimpleObservation",
    "SopInstance",
    "StaySummary",
    "VacNoteContent",
    "Vaccination",
    "VaccinationReaction",
    "VoletEntry",
    "VsmContent",
    "as_cr_img",
    "as_ldl_ses",
    "as_vac_note",
    "as_vsm",
    "cr_img_acts",
    "cr_img_document",
    "cr_img_problems",
    "ldl_ses_document",
    "ldl_ses_problems",
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
# CR-IMG 2024.01
register_entry_reader("1.2.250.1.213.1.1.3.153", ImagingTechnique.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.155", ImagingStudy.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.150", DicomObservation.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.154", RadiationDose.from_element)
register_entry_reader("1.2.250.1.213.1.1.3.165", PatientExposure.from_element)
# VAC-NOTE 2023.01
register_entry_reader("1.2.250.1.213.1.1.3.45", Vaccination.from_element)

from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
