"""The embedded sandbox: simulators of the national services on loopback, and a test PKI."""

from __future__ import annotations

from .pki import IssuedCertificate, TestPki

__all__ = ["IssuedCertificate", "TestPki"]
