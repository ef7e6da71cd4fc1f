"""The fixed identifiers of IHE XDS.b metadata, written once.

Every UUID a registry uses to tell what a ``rim:Classification`` or ``rim:ExternalIdentifier``
means, the stored-query ids, the association types and the status URNs live here, so that the
model, the ebRIM writer and reader, the DMP client and the sandbox all spell them the same way.
Sources: the reference notes ``dmp_xds.md`` §2, §3, §6 (checked against oehf/ipf) and the IHE ITI
Technical Framework for the few values marked [K] there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from dmp_connector.codes import Code

__all__ = [
    "ASSOCIATION_DOCUMENTATION_SCHEME",
    "DMP_CONFIDENTIALITY_SYSTEM",
    "DMP_REPOSITORY_UNIQUE_ID",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REPRESENTANTS_LEGAUX",
    "MASQUE_PS",
    "REFERENCE_ID_LIST_SLOT",
    "Action",
    "AssociationType",
    "AvailabilityStatus",
    "ClassificationNode",
    "DocumentEntryScheme",
    "DocumentEntryType",
    "ErrorSeverity",
    "FolderScheme",
    "RegistryErrorCode",
    "ResponseStatus",
    "ReturnType",
    "StoredQueryId",
    "SubmissionSetScheme",
    "SubmissionSetStatus",
]


class DocumentEntryType(StrEnum):
    """``ExtrinsicObject/@objectType``: a stable document, or one the source makes on demand."""

    STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
    """A document stored as deposited (every DMP document)."""
    ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
    """A document generated when retrieved [K: ITI TF vol. 3 §4.2.5.2, On-Demand Documents option]."""


class ClassificationNode(StrEnum):
    """``Classification/@classificationNode`` values that say what a ``rim:RegistryPackage`` is."""

    SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
    FOLDER = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
    DOCUMENT_ENTRY_LIMITED_METADATA = "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"
    """A DocumentEntry sent with limited metadata (XDR, XDM) [K: ITI TF vol. 3 §4.3.1; V: the NIST toolkit]."""
    SUBMISSION_SET_LIMITED_METADATA = "urn:uuid:5003a9db-8d8d-49e6-bf0c-990e34ac7707"
    """A SubmissionSet sent with limited metadata (XDR, XDM) [K: ITI TF vol. 3 §4.3.1; V: the NIST toolkit]."""


ASSOCIATION_DOCUMENTATION_SCHEME: Final = "urn:uuid:abd807a3-4432-4053-87b4-fd82c643d1f3"
"""Classification scheme of an association's documentation (RPLC, XFRM … reasons) [K: ITI TF vol. 3 §4.2.2.2]."""


class DocumentEntryScheme(StrEnum):
    """Classification and external-identifier schemes of a DocumentEntry (``dmp_xds.md`` §3)."""

    AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    EVENT_CODE_LIST = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
    FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    """ExternalIdentifier ``XDSDocumentEntry.patientId``."""
    UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
    """ExternalIdentifier ``XDSDocumentEntry.uniqueId``."""


class SubmissionSetScheme(StrEnum):
    """Classification and external-identifier schemes of a SubmissionSet."""

    AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
    CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
    PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
    UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"


class FolderScheme(StrEnum):
    """Classification and external-identifier schemes of a Folder."""

    CODE_LIST = "urn:uuid:1ba97051-7806-41a8-a48b-8fce7af683c5"
    PATIENT_ID = "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"
    UNIQUE_ID = "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"


REFERENCE_ID_LIST_SLOT: Final = "urn:ihe:iti:xds:2013:referenceIdList"
"""Slot name of ``DocumentEntry.referenceIdList`` [K: ITI TF vol. 3 §4.2.3.2.28]."""


class AssociationType(StrEnum):
    """``Association/@associationType``; a value not listed here is kept as the string that came."""

    HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
    """Submission set (or folder) → member; carries ``SubmissionSetStatus``."""
    REPLACE = "urn:ihe:iti:2007:AssociationType:RPLC"
    """New document → the entryUUID of the document it replaces (DMP TD2.2)."""
    APPEND = "urn:ihe:iti:2007:AssociationType:APND"
    TRANSFORM = "urn:ihe:iti:2007:AssociationType:XFRM"
    TRANSFORM_AND_REPLACE = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
    SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
    """Signature document → what it signs (the DMP: the submission set)."""
    IS_SNAPSHOT_OF = "urn:ihe:iti:2010:AssociationType:IsSnapshotOf"
    """Stable snapshot → the on-demand entry it was made from."""
    UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
    """ITI-57: submission set → the entry whose status changes (slots OriginalStatus, NewStatus)."""
    SUBMIT_ASSOCIATION = "urn:ihe:iti:2010:AssociationType:SubmitAssociation"
    """ITI-57: submission set → an association submitted alone (Restricted Metadata Update)."""


class SubmissionSetStatus(StrEnum):
    """Value of the ``SubmissionSetStatus`` slot of a HasMember association."""

    ORIGINAL = "Original"
    """The member is submitted with this submission set (every association of a DMP deposit)."""
    REFERENCE = "Reference"
    """The member was submitted earlier and is only referenced."""


class AvailabilityStatus(StrEnum):
    """Entry status URNs: the two of XDS and the two the DMP adds for ITI-57 (TRE_R270)."""

    APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
    DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
    """DMP: the document is deleted (TD3.3c)."""
    ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
    """DMP: the document is archived (TD3.3d)."""


class StoredQueryId(StrEnum):
    """ITI-18 stored-query ids (``rim:AdhocQuery/@id``), ``dmp_xds.md`` §2."""

    FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
    FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
    FIND_FOLDERS = "urn:uuid:958f3006-baad-4929-a4de-ff1114824431"
    GET_ALL = "urn:uuid:10b545ea-725c-446d-9b95-8aeb444eddf3"
    GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
    GET_FOLDERS = "urn:uuid:5737b14c-8a1a-4539-b659-e03a34a5e1e4"
    GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
    GET_DOCUMENTS_AND_ASSOCIATIONS = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"
    GET_SUBMISSION_SETS = "urn:uuid:51224314-5390-4169-9b91-b1980040715a"
    GET_SUBMISSION_SET_AND_CONTENTS = "urn:uuid:e8e3cb2c-e39c-46b9-99e4-c12f57260b83"
    GET_FOLDER_AND_CONTENTS = "urn:uuid:b909a503-523d-4517-8acf-8e5834dfc4c7"
    GET_FOLDERS_FOR_DOCUMENT = "urn:uuid:10cae35a-c7f9-4cf5-b61e-fc3278ffb578"
    GET_RELATED_DOCUMENTS = "urn:uuid:d90e5407-b356-4d91-a89f-873917b4b0e6"


class ReturnType(StrEnum):
    """``query:ResponseOption/@returnType``: full metadata, or references only."""

    LEAF_CLASS = "LeafClass"
    OBJECT_REF = "ObjectRef"


class ResponseStatus(StrEnum):
    """``rs:RegistryResponse/@status``."""

    SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
    PARTIAL_SUCCESS = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
    """IHE's own status URN [K: ITI TF vol. 3 §4.2.4.2]; the ebRS 4 spelling is read as this too."""


class ErrorSeverity(StrEnum):
    """``rs:RegistryError/@severity``."""

    ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
    WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"


class RegistryErrorCode(StrEnum):
    """The XDS error codes of ``dmp_xds.md`` §6; a code not listed is kept as the string that came."""

    REGISTRY_ERROR = "XDSRegistryError"
    REPOSITORY_ERROR = "XDSRepositoryError"
    REGISTRY_BUSY = "XDSRegistryBusy"
    REPOSITORY_BUSY = "XDSRepositoryBusy"
    REGISTRY_OUT_OF_RESOURCES = "XDSRegistryOutOfResources"
    REPOSITORY_OUT_OF_RESOURCES = "XDSRepositoryOutOfResources"
    PATIENT_ID_DOES_NOT_MATCH = "XDSPatientIdDoesNotMatch"
    UNKNOWN_PATIENT_ID = "XDSUnknownPatientId"
    DUPLICATE_UNIQUE_ID_IN_REGISTRY = "XDSDuplicateUniqueIdInRegistry"
    """A replayed deposit meets its first copy; with the same hash it is "already deposited"."""
    NON_IDENTICAL_HASH = "XDSNonIdenticalHash"
    NON_IDENTICAL_SIZE = "XDSNonIdenticalSize"
    MISSING_DOCUMENT = "XDSMissingDocument"
    MISSING_DOCUMENT_METADATA = "XDSMissingDocumentMetadata"
    REGISTRY_METADATA_ERROR = "XDSRegistryMetadataError"
    REPOSITORY_METADATA_ERROR = "XDSRepositoryMetadataError"
    UNKNOWN_STORED_QUERY = "XDSUnknownStoredQuery"
    STORED_QUERY_PARAM_NUMBER = "XDSStoredQueryParamNumber"
    STORED_QUERY_MISSING_PARAM = "XDSStoredQueryMissingParam"
    TOO_MANY_RESULTS = "XDSTooManyResults"
    DOCUMENT_UNIQUE_ID_ERROR = "XDSDocumentUniqueIdError"
    UNKNOWN_REPOSITORY_ID = "XDSUnknownRepositoryId"
    EXTRA_METADATA_NOT_SAVED = "XDSExtraMetadataNotSaved"
    METADATA_VERSION_ERROR = "XDSMetadataVersionError"
    METADATA_UPDATE_ERROR = "XDSMetadataUpdateError"

    @property
    def transient(self) -> bool:
        """True for the codes that say "try again later" (busy, out of resources)."""
        return self in _TRANSIENT


_TRANSIENT: Final = frozenset(
    {
        RegistryErrorCode.REGISTRY_BUSY,
        RegistryErrorCode.REPOSITORY_BUSY,
        RegistryErrorCode.REGISTRY_OUT_OF_RESOURCES,
        RegistryErrorCode.REPOSITORY_OUT_OF_RESOURCES,
    }
)


class Action(StrEnum):
    """``wsa:Action`` of the XDS.b transactions and of their answers (``dmp_xds.md`` §1)."""

    PROVIDE_AND_REGISTER = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    PROVIDE_AND_REGISTER_RESPONSE = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
    REGISTRY_STORED_QUERY = "urn:ihe:iti:2007:RegistryStoredQuery"
    REGISTRY_STORED_QUERY_RESPONSE = "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    RETRIEVE_DOCUMENT_SET = "urn:ihe:iti:2007:RetrieveDocumentSet"
    RETRIEVE_DOCUMENT_SET_RESPONSE = "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
    UPDATE_DOCUMENT_SET = "urn:ihe:iti:2010:UpdateDocumentSet"
    UPDATE_DOCUMENT_SET_RESPONSE = "urn:ihe:iti:2010:UpdateDocumentSetResponse"


DMP_REPOSITORY_UNIQUE_ID: Final = "1.2.250.1.213.4.1.1.1.2"
"""The DMP's repositoryUniqueId: what ITI-43 requests name as ``RepositoryUniqueId``."""

DMP_CONFIDENTIALITY_SYSTEM: Final = "1.2.250.1.213.1.1.4.13"
"""Code system of the DMP visibility codes carried as extra confidentialityCode values."""
MASQUE_PS: Final = Code(
    code="MASQUE_PS", code_system=DMP_CONFIDENTIALITY_SYSTEM, display_name="Masqué aux professionnels de santé"
)
"""Masked from professionals other than its author (TD3.3a)."""
INVISIBLE_PATIENT: Final = Code(
    code="INVISIBLE_PATIENT", code_system=DMP_CONFIDENTIALITY_SYSTEM, display_name="Non visible par le patient"
)
"""Hidden from the patient until an announcement consultation (TD3.3b)."""
INVISIBLE_REPRESENTANTS_LEGAUX: Final = Code(
    code="INVISIBLE_REPRESENTANTS_LEGAUX",
    code_system=DMP_CONFIDENTIALITY_SYSTEM,
    display_name="Non visible par les représentants légaux",
)
"""Hidden from the patient's legal representatives; its code system is assumed to be the same as the
other two [I] (the reference names the code, not its system)."""
