"""A vendor's own practice through the pytest plugin: its FINESS and RPPS in the ini file, nothing else.

The generated suite runs in a pytest subprocess, as a vendor's would: the PKI is issued for the
practice the ini names, and INSi, the DMP and MSSanté are reached over mutual TLS on loopback with
it. A second module gives its settings another structure than the certificates: the loopback and
the in-process DMP refuse it alike, and the error says which identifier disagreed with which.
"""

from __future__ import annotations

import textwrap

import pytest

from dmp_connector.errors import ConfigurationError
from dmp_connector.sandbox import SandboxPractice

pytest_plugins = ["pytester"]

VENDOR_FINESS = "330781196"
VENDOR_RPPS = "10101234567"

INI = textwrap.dedent(
    f"""
    [pytest]
    asyncio_default_fixture_loop_scope = function
    filterwarnings = error
    dmpc_structure_id = {VENDOR_FINESS}
    dmpc_structure_id_kind = FINESS
    dmpc_organisation_name = CABINET DU PARC
    dmpc_professional_id = {VENDOR_RPPS}
    dmpc_professional_family_name = MARTIN
    dmpc_professional_given_name = CLAIRE
    """
)

COMMON = textwrap.dedent(
    """
    import datetime as dt

    import pytest
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from dmp_connector.cda import ClinicalDocument, NonXmlBody
    from dmp_connector.codes import Code
    from dmp_connector.dmp import DmpClient
    from dmp_connector.ins import Identity, IdentityStatus, InsiClient
    from dmp_connector.sandbox import DEFAULT_DMP_PATIENTS, DEFAULT_INSI_IDENTITIES

    PATIENT = Identity(
        traits=DEFAULT_DMP_PATIENTS[0].traits, ins=DEFAULT_DMP_PATIENTS[0].ins, status=IdentityStatus.QUAL
    )
    PDF = b"%PDF-1.4\\n1 0 obj << /Type /Catalog >> endobj\\ntrailer << /Root 1 0 R >>\\n%%EOF\\n"


    def report(settings):
        return ClinicalDocument.from_settings(
            settings,
            patient=PATIENT,
            type_code=Code.of("11488-4", "2.16.840.1.113883.6.1", "CR ou fiche de consultation ou de visite"),
            title="Compte rendu de consultation",
            body=NonXmlBody(data=PDF),
            effective_time=dt.datetime(2024, 3, 12, 10, 30, tzinfo=dt.UTC),
            service_start=dt.datetime(2024, 3, 12, 9, 45, tzinfo=dt.UTC),
            service_end=dt.datetime(2024, 3, 12, 10, 15, tzinfo=dt.UTC),
            practice_setting=Code.of("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"),
        )


    def subject(path, oid):
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        return [attribute.value for attribute in certificate.subject.get_attributes_for_oid(oid)]
    """
)

VENDOR_SUITE = COMMON + textwrap.dedent(
    f"""
    from dmp_connector.mssante import MssanteAddress, MssanteMessage
    from dmp_connector.pytest_plugin import DMPC_MAILBOX


    def test_the_certificates_are_issued_for_the_practice(dmpc_pki, dmpc_settings):
        files = dmpc_pki.files
        assert subject(files.org_auth_cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["1{VENDOR_FINESS}"]
        assert subject(files.org_auth_cert, NameOID.ORGANIZATION_NAME) == ["CABINET DU PARC"]
        assert subject(files.org_sign_cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["1{VENDOR_FINESS}"]
        assert subject(files.professional_cert, NameOID.COMMON_NAME) == ["8{VENDOR_RPPS}"]
        assert subject(files.professional_cert, NameOID.SURNAME) == ["MARTIN"]
        assert dmpc_settings.organisation.national_id == "1{VENDOR_FINESS}"
        assert dmpc_settings.professional.national_id == "8{VENDOR_RPPS}"


    def test_insi_and_dmp_over_mutual_tls(dmpc_loopback_sandbox, dmpc_dmp_simulator):
        settings = dmpc_loopback_sandbox.settings
        assert settings.environment.dmp_base_url.startswith("https://127.0.0.1:")
        with InsiClient(settings) as insi, DmpClient(settings) as dmp:
            assert insi.search(DEFAULT_INSI_IDENTITIES[0].traits).found
            assert dmp.test_existence(PATIENT).exists
            assert not dmp.deposit(report(settings), patient=PATIENT).already_deposited
        stored = dmpc_dmp_simulator.store.entries(patient=DEFAULT_DMP_PATIENTS[0].key)
        assert len(stored) == 2  # the document and the submission set's signature
        assert {{entry.submitter for entry in stored}} == {{"8{VENDOR_RPPS}"}}


    def test_in_process_dmp_with_the_same_identifiers(dmpc_dmp):
        assert not dmpc_dmp.deposit(report(dmpc_dmp.settings), patient=PATIENT).already_deposited


    def test_mssante_over_mutual_tls(dmpc_mssante, dmpc_mail_operator):
        dmpc_mssante.send(MssanteMessage(to=(MssanteAddress.parse(DMPC_MAILBOX),), subject="CR", text="Bonjour"))
        (received,) = dmpc_mail_operator.received
        assert received.auth_method == "certificate"
        assert "organizationalUnitName=1{VENDOR_FINESS}" in received.client_subject
    """
)


MISMATCH_SUITE = COMMON + textwrap.dedent(
    """
    from dmp_connector.codes import Code
    from dmp_connector.config import Organisation, StructureIdKind
    from dmp_connector.dmp import DmpServiceError


    @pytest.fixture
    def dmpc_settings(dmpc_settings):
        # This module's settings name another structure than the one the certificates were issued for.
        sector = Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
        other = Organisation(id="987654321", id_kind=StructureIdKind.FINESS, name="AUTRE", activity_sector=sector)
        return dmpc_settings.model_copy(update={"organisation": other})


    def check(error):
        shown = f"{error} {error.hint}"
        assert "OU 1{VENDOR_FINESS}" in shown and "Identifiant_Structure 1987654321" in shown, shown
        assert "OU must equal the organisation's national id" in error.hint
        for identity in (PATIENT.ins.matricule, PATIENT.traits.birth_name, PATIENT.traits.birth_first_names[0]):
            assert identity not in shown
        assert "1{VENDOR_FINESS}" in error.text and "1987654321" in error.text  # the service's reason says it too


    def test_the_loopback_dmp_says_which_identifier_disagreed(dmpc_loopback_sandbox):
        with DmpClient(dmpc_loopback_sandbox.settings) as dmp, pytest.raises(DmpServiceError) as info:
            dmp.test_existence(PATIENT)
        check(info.value)


    def test_the_in_process_dmp_applies_the_same_rule(dmpc_dmp):
        with pytest.raises(DmpServiceError) as info:
            dmpc_dmp.deposit(report(dmpc_dmp.settings), patient=PATIENT)
        check(info.value)
    """
).replace("{VENDOR_FINESS}", VENDOR_FINESS)


def test_a_vendors_finess_and_rpps_over_mutual_tls(pytester: pytest.Pytester) -> None:
    """One subprocess, one session PKI for both modules (RSA keys are the slow part)."""
    pytester.makeini(INI)
    pytester.makepyfile(test_vendor=VENDOR_SUITE, test_mismatch=MISMATCH_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=6)


def test_an_invalid_practice_id_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="structure id is not a valid FINESS id"):
        SandboxPractice(structure_id="12345")
    with pytest.raises(ConfigurationError, match="professional id is not a valid RPPS id"):
        SandboxPractice.of(professional_id="123")
    with pytest.raises(ConfigurationError, match="is not one of ADELI_RANG, FINESS"):
        SandboxPractice.of(structure_id_kind="CNAM")
    practice = SandboxPractice.of(structure_id="12345678901234", structure_id_kind="siret", professional_id_kind="")
    assert practice.structure_national_id == "312345678901234"
    assert practice.professional_national_id == "899700000001"
