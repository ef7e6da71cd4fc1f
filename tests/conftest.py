"""Shared fixtures: one test PKI per session (RSA key generation is the slow part)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmp_connector.config import Organisation, Settings, SoftwareIdentity, StructureIdKind, TlsCredentials
from dmp_connector.sandbox import IssuedCertificate, TestPki


@dataclass(frozen=True)
class PkiFiles:
    pki: TestPki
    ca_bundle: Path
    server: IssuedCertificate
    client: IssuedCertificate
    client_cert: Path
    client_key: Path
    workdir: Path


@pytest.fixture(autouse=True)
def _no_configuration_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read DMP_CONNECTOR_* variables: keep the developer's shell out of the tests."""
    for key in list(os.environ):
        if key.startswith("DMP_CONNECTOR_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    workdir = tmp_path_factory.mktemp("pki")
    pki = TestPki.create()
    ca_bundle = workdir / "ca.pem"
    ca_bundle.write_bytes(pki.ca_pem)
    server = pki.issue_server()
    client = pki.issue_client("Cabinet Test AUTH_CLI")
    client_cert, client_key = client.write_pem(workdir, "client")
    return PkiFiles(pki, ca_bundle, server, client, client_cert, client_key, workdir)


SOFTWARE = SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor", dmp_homologation_id="HOMOLOG-TEST")
ORGANISATION = Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test")


def make_settings(pki_files: PkiFiles, **overrides: object) -> Settings:
    """Sandbox settings that trust the test CA and present the test client certificate."""
    data: dict[str, object] = {
        "software": SOFTWARE,
        "organisation": ORGANISATION,
        "tls": TlsCredentials(
            cert_file=pki_files.client_cert, key_file=pki_files.client_key, ca_bundle=pki_files.ca_bundle
        ),
    }
    data.update(overrides)
    return Settings.model_validate(data)
