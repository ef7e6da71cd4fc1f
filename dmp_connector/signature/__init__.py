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

__all__ = [
    "VIHF_ATTRIBUTES",
    "AccessMode",
    "AuthenticationMode",
    "Automaton",
    "CodedValue",
    "DigestAlgorithm",
    "FileSigner",
    "MissingVihfData",
    "SignatureAlgorithm",
    "Signer",
    "VihfAttribute",
    "VihfClaims",
    "VihfContext",
    "VihfRequest",
    "VihfSecurity",
    "algorithms_from_settings",
    "build_vihf",
    "certificate_dn",
    "check_signer",
    "check_signing_certificate",
    "load_certificates",
    "load_signing_identity",
    "verify_vihf",
    "vihf_attributes",
]
