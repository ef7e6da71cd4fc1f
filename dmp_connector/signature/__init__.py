"""Signatures: the ``Signer`` seam, VIHF assertions, submission-set signatures, verification."""

from __future__ import annotations

from .keys import certificate_dn, check_signing_certificate, load_certificates, load_signing_identity
from .signer import DigestAlgorithm, FileSigner, SignatureAlgorithm, Signer, algorithms_from_settings, check_signer
from .vihf import (
    VIHF_ATTRIBUTES,
    AccessMode,
    AuthenticationMode,
    Automaton,
    CodedValue,
    MissingVihfData,
    VihfAttribute,
    VihfClaims,
    VihfContext,
    VihfRequest,
    VihfSecurity,
    build_vihf,
    verify_vihf,
    vihf_attributes,
)
from .xades import (
    Association,
    SigningCertificateScope,
    SubmissionSetSignature,
    SubmissionSetSignatureProfile,
    SubmittedDocument,
    VerifiedSignature,
    XadesVersion,
    new_unique_id,
    sign_submission_set,
    verify_submission_set_signature,
)

__all__ = [
    "VIHF_ATTRIBUTES",
    "AccessMode",
    "Association",
    "AuthenticationMode",
    "Automaton",
    "CodedValue",
    "DigestAlgorithm",
    "FileSigner",
    "MissingVihfData",
    "SignatureAlgorithm",
    "Signer",
    "SigningCertificateScope",
    "SubmissionSetSignature",
    "SubmissionSetSignatureProfile",
    "SubmittedDocument",
    "VerifiedSignature",
    "VihfAttribute",
    "VihfClaims",
    "VihfContext",
    "VihfRequest",
    "VihfSecurity",
    "XadesVersion",
    "algorithms_from_settings",
    "build_vihf",
    "certificate_dn",
    "check_signer",
    "check_signing_certificate",
    "load_certificates",
    "load_signing_identity",
    "new_unique_id",
    "sign_submission_set",
    "verify_submission_set_signature",
    "verify_vihf",
    "vihf_attributes",
]

from dmp_connector._help import document_fields

document_fields(globals()[name] for name in __all__ if name in globals())
