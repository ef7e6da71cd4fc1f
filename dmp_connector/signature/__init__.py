"""Signatures: the ``Signer`` seam, VIHF assertions, submission-set signatures, verification."""

from __future__ import annotations

from .signer import DigestAlgorithm, FileSigner, SignatureAlgorithm, Signer

__all__ = ["DigestAlgorithm", "FileSigner", "SignatureAlgorithm", "Signer"]
