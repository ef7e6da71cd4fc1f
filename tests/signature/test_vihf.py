"""The VIHF: every attribute of the reference, schemas, signxml and xmlsec1 cross-checks, tampering and wrapping.

Schemas: SAML 2.0 assertion + XMLDSig from ``tests/data/schemas`` (see its SOURCE.md); the
HL7 ``CE`` type that the roles and purpose of use name with ``xsi:type`` comes from the
CDA R2 schema in ``../shared/cda-2025`` (the same HL7 data types), so their attributes are checked too.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm as SxDigest
from signxml.algorithms import SignatureMethod as SxMethod
from signxml.verifier import SignatureConfiguration, XMLVerifier

from dmp_connector.codes import Code
from dmp_connector.config import (
    Organisation,
    Professional,
    Settings,
    SigningSettings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.errors import (
    ConfigurationError,
    InvalidIdentifierError,
    SignatureVerificationError,
    ValidationError,
)
from dmp_connector.ins import INS, InsOid
from dmp_connector.sandbox import IssuedCertificate, TestPki
from dmp_connector.signature import (
    VIHF_ATTRIBUTES,
    AccessMode,
    AuthenticationMode,
    Automaton,
    DigestAlgorithm,
    FileSigner,
    SignatureAlgorithm,
    VihfAttribute,
    VihfRequest,
    VihfSecurity,
    build_vihf,
    verify_vihf,
)
from dmp_connector.signature import _xmldsig as xmldsig
from dmp_connector.signature.vihf import INCLUSIVE_PREFIXES
from dmp_connector.soap.envelope import Addressing, WsSecurity, build_envelope, parse_envelope
from dmp_connector.soap.namespaces import WSSE
from dmp_connector.xml import parse_xml, to_bytes
from tests.conftest import PkiFiles

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
HL7 = "urn:hl7-org:v3"
NS = {"saml": SAML, "ds": DS, "hl7": HL7, "ec": "http://www.w3.org/2001/10/xml-exc-c14n#"}
SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"
CDA_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "infrastructure" / "cda" / "CDA_extended.xsd"
XMLSEC1 = shutil.which("xmlsec1")
needs_xmlsec1 = pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 is not installed (Debian package xmlsec1)")
NOW = dt.datetime.now(dt.UTC)
INS_CX = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
TRE_G15 = "1.2.250.1.71.1.2.7"

SOFTWARE = SoftwareIdentity(
    name="TestLPS", version="2.1.0", editor="Editeur", dmp_homologation_id="HOMOL-42", instance_id="1.2.250.1.999.1"
)
ORGANISATION = Organisation(
    id="123456789",
    id_kind=StructureIdKind.FINESS,
    name="CABINET TEST",
    activity_sector=Code(code="SA07", code_system="1.2.250.1.71.4.2.4"),
)
PHYSICIAN = Professional(
    id="99700000001",
    family_name="MARTIN",
    given_name="Luc",
    profession=Code(code="10", code_system=TRE_G15, display_name="Médecin"),
    specialty=Code(code="SM26", code_system="1.2.250.1.71.4.2.5", display_name="Qualifié en médecine générale"),
)


@dataclass(frozen=True)
class Keys:
    pki: TestPki
    sign: IssuedCertificate
    signer: FileSigner
    other_pki: TestPki

    @property
    def trusted(self) -> list[x509.Certificate]:
        return [self.pki.ca.certificate]


@pytest.fixture(scope="session")
def keys(pki_files: PkiFiles) -> Keys:
    sign = pki_files.pki.issue_organisation_sign(organisation="CABINET TEST", structure_id="1123456789")
    return Keys(pki_files.pki, sign, FileSigner([sign.certificate], sign.key), TestPki.create(name="untrusted CA"))


@pytest.fixture(scope="session")
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)  # noqa: TID251
    wrapper = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:import namespace="{SAML}" schemaLocation="{(SCHEMAS / "saml-schema-assertion-2.0.xsd").as_uri()}"/>
      <xs:import namespace="{HL7}" schemaLocation="{CDA_SCHEMA.as_uri()}"/>
    </xs:schema>"""
    return etree.XMLSchema(etree.fromstring(wrapper.encode(), parser))  # noqa: TID251


@pytest.fixture(scope="session")
def dsig_schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)  # noqa: TID251
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "xmldsig-core-schema.xsd"), parser))  # noqa: TID251


def make_settings(**signing: Any) -> Settings:
    return Settings(
        software=SOFTWARE,
        organisation=ORGANISATION,
        professional=PHYSICIAN,
        signing=SigningSettings(**signing),
    )


def vihf(keys: Keys, request: VihfRequest | None = None, **kwargs: Any) -> etree._Element:
    settings = kwargs.pop("settings", None) or make_settings()
    return build_vihf(settings, keys.signer, request or VihfRequest(patient_resource_id=INS_CX), **kwargs)


def attributes(assertion: etree._Element) -> dict[str, list[etree._Element]]:
    return {
        a.get("Name") or "": a.findall("saml:AttributeValue", NS)
        for a in assertion.iterfind("saml:AttributeStatement/saml:Attribute", NS)
    }


def texts(assertion: etree._Element) -> dict[str, list[str]]:
    return {name: [(v.text or "").strip() for v in values] for name, values in attributes(assertion).items()}


def xmlsec1_verify(document: bytes, ca_pem: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert XMLSEC1 is not None
    (tmp_path / "vihf.xml").write_bytes(document)
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    return subprocess.run(
        [
            XMLSEC1,
            "--verify",
            "--trusted-pem",
            str(tmp_path / "ca.pem"),
            "--id-attr:ID",
            f"{SAML}:Assertion",
            str(tmp_path / "vihf.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def reverify(assertion: etree._Element, keys: Keys, **kwargs: Any) -> Any:
    return verify_vihf(to_bytes(assertion), trusted=keys.trusted, **kwargs)


# --- shape ---------------------------------------------------------------------------------------------------


def test_every_attribute_of_the_reference_table(keys: Keys) -> None:
    assertion = vihf(keys)
    values = texts(assertion)
    assert values["VIHF_Version"] == ["3.0"]
    assert values["Authentification_Mode"] == ["INDIRECTE"]
    assert values["Identifiant_Structure"] == ["1123456789"]
    assert values["Secteur_Activite"] == ["SA07^1.2.250.1.71.4.2.4"]
    assert values["urn:oasis:names:tc:xspa:1.0:subject:subject-id"] == ["MARTIN, Luc"]
    assert values["urn:oasis:names:tc:xacml:2.0:resource:resource-id"] == [INS_CX]
    assert values["Ressource_URN"] == ["urn:dmp"]
    assert values["LPS_ID"] == ["1.2.250.1.999.1"]
    assert values["LPS_Nom"] == ["TestLPS"]
    assert values["LPS_Version"] == ["2.1.0"]
    assert values["LPS_ID_HOMOLOGATION_DMP"] == ["HOMOL-42"]
    assert "Mode_Acces_Raison" not in values
    assert "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code" not in values
    purpose = attributes(assertion)["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0][0]
    assert purpose.tag == f"{{{HL7}}}PurposeOfUse"
    assert {str(k): str(v) for k, v in purpose.attrib.items()} == {
        "code": "normal",
        "codeSystem": "1.2.250.1.213.1.1.4.248",
        "codeSystemName": "mode acces VIHF 1.0",
        "displayName": "Accès normal",
        "{http://www.w3.org/2001/XMLSchema-instance}type": "CE",
    }
    roles = [v[0] for v in attributes(assertion)["urn:oasis:names:tc:xacml:2.0:subject:role"]]
    assert [(r.tag, r.get("code"), r.get("codeSystem")) for r in roles] == [
        (f"{{{HL7}}}Role", "10", TRE_G15),
        (f"{{{HL7}}}Role", "SM26", "1.2.250.1.71.4.2.5"),
    ]
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == "899700000001"
    ref = assertion.findtext("saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef", namespaces=NS)
    assert ref == "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
    assert assertion.find("saml:Conditions", NS) is None  # off by default, as DRIMbox and the kit send it
    assert assertion.find("saml:Subject/saml:SubjectConfirmation", NS) is None


def test_signature_shape_follows_the_ans_example(keys: Keys) -> None:
    assertion = vihf(keys)
    children = [etree.QName(c).localname for c in assertion]
    assert children == ["Issuer", "Signature", "Subject", "AuthnStatement", "AttributeStatement"]
    assert assertion.get("Version") == "2.0" and assertion.get("ID", "").startswith("_")
    issuer = assertion[0]
    assert issuer.get("Format") == "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    assert issuer.text == "CN=DMP SIGN,OU=1123456789,O=CABINET TEST,ST=Paris (75),C=FR"
    signature = assertion[1]
    algorithm = {
        "c14n": signature.find("ds:SignedInfo/ds:CanonicalizationMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "sig": signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
        "digest": signature.find(".//ds:DigestMethod", NS).get("Algorithm"),  # type: ignore[union-attr]
    }
    assert algorithm == {
        "c14n": "http://www.w3.org/2001/10/xml-exc-c14n#",
        "sig": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "digest": "http://www.w3.org/2001/04/xmlenc#sha256",
    }
    reference = signature.find("ds:SignedInfo/ds:Reference", NS)
    assert reference is not None and reference.get("URI") == f"#{assertion.get('ID')}"
    transforms = reference.findall("ds:Transforms/ds:Transform", NS)
    assert [t.get("Algorithm") for t in transforms] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    inclusive = transforms[1].find("ec:InclusiveNamespaces", NS)
    assert inclusive is not None and inclusive.get("PrefixList") == "ds saml #default xsi" == " ".join(
        INCLUSIVE_PREFIXES
    )
    cert = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS)
    assert cert == xmldsig.certificate_base64(keys.sign.certificate)


def test_valid_against_saml_and_xmldsig_schemas(
    keys: Keys, schema: etree.XMLSchema, dsig_schema: etree.XMLSchema
) -> None:
    for request in (
        VihfRequest(patient_resource_id=INS_CX),
        VihfRequest(access_mode=AccessMode.BRIS_DE_GLACE, access_reason="inconscient", patient_resource_id=INS_CX),
        VihfRequest(authentication_mode=AuthenticationMode.INDIRECTE_RENFORCEE, confidentiality_code="secret"),
        VihfRequest(automaton=Automaton(responsible_id="899700000009", model="M1", service="Labo")),
    ):
        document = parse_xml(to_bytes(vihf(keys, request, settings=make_settings(vihf_validity_seconds=600))))
        assert schema.validate(document), schema.error_log
        signature = document.find("ds:Signature", NS)
        assert signature is not None
        assert dsig_schema.validate(etree.ElementTree(copy.deepcopy(signature))), dsig_schema.error_log


def test_schema_catches_a_broken_role(keys: Keys, schema: etree.XMLSchema) -> None:
    document = vihf(keys)
    document.find(".//hl7:Role", NS).set("code", "")  # type: ignore[union-attr]
    assert not schema.validate(document)


def test_verifies_with_signxml_directly(keys: Keys, tmp_path: Path) -> None:
    document = to_bytes(vihf(keys))
    result = XMLVerifier().verify(document, x509_cert=keys.sign.certificate, id_attribute="ID")
    assert not isinstance(result, list)
    assert result.signed_xml is not None and result.signed_xml.tag == f"{{{SAML}}}Assertion"
    # And with signxml's own chain building against the test CA.
    (tmp_path / "ca.pem").write_bytes(keys.pki.ca_pem)
    chained = XMLVerifier().verify(document, ca_pem_file=str(tmp_path / "ca.pem"), id_attribute="ID")
    assert not isinstance(chained, list) and chained.signed_xml is not None


@needs_xmlsec1
def test_verifies_with_xmlsec1(keys: Keys, tmp_path: Path) -> None:
    result = xmlsec1_verify(to_bytes(vihf(keys)), keys.pki.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SignedInfo References (ok/all): 1/1" in result.stderr + result.stdout


@needs_xmlsec1
def test_sha1_profile_verifies_everywhere(keys: Keys, tmp_path: Path) -> None:
    settings = make_settings(signature_algorithm="rsa-sha1", digest_algorithm="sha1")
    assertion = vihf(keys, settings=settings)
    assert assertion.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm") == (  # type: ignore[union-attr]
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    )
    document = to_bytes(assertion)
    assert xmlsec1_verify(document, keys.pki.ca_pem, tmp_path).returncode == 0
    config = SignatureConfiguration(
        signature_methods=frozenset({SxMethod.RSA_SHA1}), digest_algorithms=frozenset({SxDigest.SHA1})
    )
    XMLVerifier().verify(document, x509_cert=keys.sign.certificate, id_attribute="ID", expect_config=config)
    assert reverify(assertion, keys).vihf_version == "3.0"
    with pytest.raises(SignatureVerificationError) as info:
        reverify(assertion, keys, allow_sha1=False)
    assert info.value.reason == "malformed"


def test_claims_round_trip(keys: Keys) -> None:
    claims = reverify(vihf(keys), keys)
    assert claims.subject_name_id == "899700000001"
    assert claims.structure_id == "1123456789"
    assert claims.patient_resource_id == INS_CX
    assert claims.access_mode is AccessMode.NORMAL
    assert claims.authentication_mode is AuthenticationMode.INDIRECTE
    assert [r.code for r in claims.roles] == ["10", "SM26"]
    assert claims.dmp_homologation_id == "HOMOL-42"
    assert claims.software_name == "TestLPS" and claims.software_version == "2.1.0"
    assert claims.resource_urn == "urn:dmp"
    assert claims.certificate == keys.sign.certificate
    assert claims.issuer.startswith("CN=DMP SIGN")
    assert not claims.is_automaton
    assert claims.attributes["Secteur_Activite"] == ("SA07^1.2.250.1.71.4.2.4",)


# --- per-call data ---------------------------------------------------------------------------------------------


def test_access_modes(keys: Keys) -> None:
    with pytest.raises(ValidationError, match="needs the reason") as info:
        VihfRequest(access_mode=AccessMode.BRIS_DE_GLACE)
    assert info.value.problems == ("access_reason: missing for access_mode=bris_de_glace",)
    with pytest.raises(ValidationError):
        VihfRequest(access_mode="bris_de_glace", access_reason="   ")
    with pytest.raises(ValidationError, match="emergency"):
        VihfRequest(access_reason="why not")
    emergency = vihf(keys, VihfRequest(access_mode="bris_de_glace", access_reason="Patient inconscient"))
    purpose = attributes(emergency)["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0][0]
    assert (purpose.get("code"), purpose.get("displayName")) == ("bris_de_glace", "Accès en bris de glace")
    assert texts(emergency)["Mode_Acces_Raison"] == ["Patient inconscient"]
    claims = reverify(emergency, keys)
    assert claims.access_mode is AccessMode.BRIS_DE_GLACE and claims.access_reason == "Patient inconscient"
    regulation = vihf(keys, VihfRequest(access_mode=AccessMode.CENTRE_15))
    purpose = attributes(regulation)["urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"][0][0]
    assert (purpose.get("code"), purpose.get("displayName")) == (
        "centre_15",
        "Accès par un centre de régulation médicale",
    )


@pytest.mark.parametrize(
    ("mode", "class_ref", "decl"),
    [
        (AuthenticationMode.DIRECTE, "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI", None),
        (AuthenticationMode.INDIRECTE, "urn:oasis:names:tc:SAML:2.0:ac:classes:Password", None),
        (
            AuthenticationMode.INDIRECTE_RENFORCEE,
            "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient",
            "APP_BROWSER_AUTH",
        ),
    ],
)
def test_authentication_modes(keys: Keys, mode: AuthenticationMode, class_ref: str, decl: str | None) -> None:
    login = NOW - dt.timedelta(hours=2)
    assertion = vihf(keys, VihfRequest(authentication_mode=mode, authn_instant=login))
    assert texts(assertion)["Authentification_Mode"] == [mode.value]
    context = assertion.find("saml:AuthnStatement/saml:AuthnContext", NS)
    assert context is not None
    assert context.findtext("saml:AuthnContextClassRef", namespaces=NS) == class_ref
    assert context.findtext("saml:AuthnContextDecl", namespaces=NS) == decl
    claims = reverify(assertion, keys)
    assert claims.authn_context_decl == decl
    assert claims.authn_instant is not None and abs(claims.authn_instant - login) < dt.timedelta(milliseconds=1)


def test_context_class_can_be_named(keys: Keys) -> None:
    custom = "urn:oasis:names:tc:SAML:2.0:ac:classes:X509"
    assertion = vihf(keys, VihfRequest(authn_context_class=custom))
    assert assertion.findtext(".//saml:AuthnContextClassRef", namespaces=NS) == custom


def test_confidentiality_attribute_is_optional(keys: Keys) -> None:
    name = "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code"
    as_text = vihf(keys, VihfRequest(confidentiality_code="INVISIBLE_REPRESENTANTS_LEGAUX"))
    assert texts(as_text)[name] == ["INVISIBLE_REPRESENTANTS_LEGAUX"]
    code = Code(code="R", code_system="2.16.840.1.113883.5.25")
    as_code = vihf(keys, VihfRequest(confidentiality_code=code))
    element = attributes(as_code)[name][0][0]
    assert element.tag == f"{{{HL7}}}ConfidentialityCode" and element.get("code") == "R"
    assert reverify(as_code, keys).confidentiality_code == "R^2.16.840.1.113883.5.25"


def test_automaton(keys: Keys) -> None:
    settings = Settings(software=SOFTWARE, organisation=ORGANISATION)  # no professional needed
    request = VihfRequest(automaton=Automaton(responsible_id="899700000009", model="Passerelle", service="Imagerie"))
    assertion = build_vihf(settings, keys.signer, request)
    values = texts(assertion)
    assert values["urn:oasis:names:tc:xspa:1.0:subject:subject-id"] == ["TestLPS, Passerelle, Imagerie"]
    role = attributes(assertion)["urn:oasis:names:tc:xacml:2.0:subject:role"]
    assert len(role) == 1
    assert {str(k): str(v) for k, v in role[0][0].attrib.items()} == {
        "code": "AUTOMATE",
        "codeSystem": "1.2.250.1.213.1.1.4.6",
        "displayName": "AUTOMATE",
        "{http://www.w3.org/2001/XMLSchema-instance}type": "CE",
    }
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == "899700000009"
    assert assertion.findtext(".//saml:AuthnContextClassRef", namespaces=NS).endswith(":unspecified")  # type: ignore[union-attr]
    claims = reverify(assertion, keys)
    assert claims.is_automaton and claims.subject_name_id == "899700000009"


def test_per_call_professional(keys: Keys) -> None:
    nurse = Professional(
        id="99700000077",
        family_name="DURAND",
        given_name="Anne",
        profession=Code(code="60", code_system=TRE_G15, display_name="Infirmier"),
        role=Code(code="R01", code_system="1.2.250.1.213.1.1.4.285"),
    )
    assertion = vihf(keys, VihfRequest(professional=nurse, subject_service="Urgences"))
    assert assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) == "899700000077"
    assert texts(assertion)["urn:oasis:names:tc:xspa:1.0:subject:subject-id"] == ["DURAND, Anne, Urgences"]
    codes = [v[0].get("code") for v in attributes(assertion)["urn:oasis:names:tc:xacml:2.0:subject:role"]]
    assert codes == ["60", "R01"]
    with pytest.raises(ValidationError, match="either a professional or an automaton"):
        VihfRequest(professional=nurse, automaton=Automaton(responsible_id="1"))


def test_patient_from_an_ins_object_and_refused_shapes(keys: Keys) -> None:
    class Ins:
        def to_xds_cx(self) -> str:
            return INS_CX

    assert VihfRequest.for_patient(Ins()).patient_resource_id == INS_CX
    real = INS(matricule="290052A00401266", oid=InsOid.NIR)
    assert VihfRequest(patient_resource_id=real).patient_resource_id == "290052A00401266^^^&1.2.250.1.213.1.4.8&ISO^NH"
    assert VihfRequest(patient_resource_id=Ins()).patient_resource_id == INS_CX
    assert VihfRequest.for_patient(INS_CX + "^^20100907").patient_resource_id == INS_CX + "^^20100907"
    for bad in ("279035121518989", "279035121518989^^^&1.2.250.1.213.1.4.8&ISO^PI", "x^^^&not-an-oid&ISO^NH"):
        with pytest.raises(InvalidIdentifierError) as info:
            VihfRequest(patient_resource_id=bad)
        assert "279035121518989" not in str(info.value)


# --- missing data ----------------------------------------------------------------------------------------------


def test_missing_settings_are_listed_at_once(keys: Keys) -> None:
    settings = Settings(
        software=SoftwareIdentity(name="X", version="1", editor="E"),
        organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="C"),
        professional=PHYSICIAN.model_copy(update={"specialty": None}),
    )
    with pytest.raises(ConfigurationError) as info:
        build_vihf(settings, keys.signer)
    message = str(info.value)
    assert "LPS_ID_HOMOLOGATION_DMP: missing (set software.dmp_homologation_id" in message
    assert "Secteur_Activite: missing (set organisation.activity_sector" in message
    assert "the specialty of a physician is mandatory" in message


def test_pharmacist_without_specialty_and_no_identities(keys: Keys) -> None:
    pharmacist = PHYSICIAN.model_copy(update={"profession": Code(code="21", code_system=TRE_G15), "specialty": None})
    with pytest.raises(ConfigurationError, match="the specialty of a pharmacist is mandatory"):
        build_vihf(make_settings(), keys.signer, VihfRequest(professional=pharmacist))
    with pytest.raises(ConfigurationError) as info:
        build_vihf(Settings(software=SOFTWARE), keys.signer)
    message = str(info.value)
    for name in ("Identifiant_Structure", "Secteur_Activite", "subject-id", "subject:role", "Subject/NameID"):
        assert name in message


def test_an_expired_signature_certificate_is_refused_before_signing(keys: Keys) -> None:
    with pytest.raises(ConfigurationError, match="expired on"):
        build_vihf(make_settings(), keys.signer, now=NOW + dt.timedelta(days=800))


# --- settings that follow a newer guide without code -------------------------------------------------------------


def test_version_and_overrides(keys: Keys) -> None:
    settings = make_settings(
        vihf_version="4.0",
        vihf_attribute_overrides={"LPS_ID": None, "Ressource_URN": "urn:dmp:v2", "Nouvel_Attribut": "oui"},
    )
    values = texts(vihf(keys, settings=settings))
    assert values["VIHF_Version"] == ["4.0"]
    assert "LPS_ID" not in values
    assert values["Ressource_URN"] == ["urn:dmp:v2"]
    assert values["Nouvel_Attribut"] == ["oui"]


def test_a_custom_attribute_table(keys: Keys) -> None:
    table = [a for a in VIHF_ATTRIBUTES if a.name != "LPS_Version"]
    table.append(VihfAttribute("Identifiant_Service", lambda ctx: [ctx.request.subject_service or ""], mandatory=True))
    with pytest.raises(ConfigurationError, match="Identifiant_Service: missing"):
        build_vihf(make_settings(), keys.signer, attributes=table)
    values = texts(build_vihf(make_settings(), keys.signer, VihfRequest(subject_service="SAU"), attributes=table))
    assert values["Identifiant_Service"] == ["SAU"] and "LPS_Version" not in values


# --- the WS-Security slot --------------------------------------------------------------------------------------


def test_in_an_envelope_it_reparses_and_verifies(keys: Keys, tmp_path: Path) -> None:
    security: WsSecurity = VihfSecurity(make_settings(), keys.signer, VihfRequest(patient_resource_id=INS_CX))
    body = etree.Element("{urn:ihe:iti:xds-b:2007}RetrieveDocumentSetRequest")
    envelope = build_envelope(
        body,
        addressing=Addressing(action="urn:ihe:iti:2007:RetrieveDocumentSet", to="https://dmp.example/repository"),
        security=security,
    )
    data = to_bytes(envelope)
    claims = verify_vihf(data, trusted=keys.trusted)
    assert claims.patient_resource_id == INS_CX
    message = parse_envelope(data)
    (token,) = [a for s in message.header_elements(WSSE, "Security") for a in s]
    assert verify_vihf(token, trusted=keys.trusted).assertion_id == claims.assertion_id
    if XMLSEC1 is not None:
        assert xmlsec1_verify(data, keys.pki.ca_pem, tmp_path).returncode == 0


def test_a_fresh_assertion_per_call_by_default(keys: Keys) -> None:
    security = VihfSecurity(make_settings(), keys.signer)
    first, second = security.assertion(), security.assertion()
    assert first.get("ID") != second.get("ID")


def test_reused_within_its_validity(keys: Keys) -> None:
    moments = [NOW, NOW + dt.timedelta(seconds=200), NOW + dt.timedelta(seconds=290)]
    security = VihfSecurity(make_settings(vihf_validity_seconds=300), keys.signer, clock=lambda: moments.pop(0))
    first = security.assertion()
    assert security.assertion() is first
    assert security.assertion() is not first  # within 30 s of NotOnOrAfter: a new one
    conditions = first.find("saml:Conditions", NS)
    assert conditions is not None and set(conditions.attrib) == {"NotBefore", "NotOnOrAfter"}
    claims = reverify(first, keys, now=NOW)
    assert claims.not_on_or_after is not None
    assert claims.not_on_or_after - claims.issue_instant == dt.timedelta(seconds=300)


# --- refusals --------------------------------------------------------------------------------------------------


def refused(reason: str, assertion: etree._Element | bytes, keys: Keys, **kwargs: Any) -> SignatureVerificationError:
    data = assertion if isinstance(assertion, bytes) else to_bytes(assertion)
    with pytest.raises(SignatureVerificationError) as info:
        verify_vihf(data, trusted=keys.trusted, **kwargs)
    assert info.value.reason == reason, info.value
    return info.value


def test_one_changed_byte_breaks_the_digest(keys: Keys, tmp_path: Path) -> None:
    data = to_bytes(vihf(keys))
    tampered = data.replace(b"<AttributeValue>1123456789<", b"<AttributeValue>1123456780<")
    assert tampered != data and len(tampered) == len(data)
    refused("digest_mismatch", tampered, keys)
    with pytest.raises(Exception, match="Digest mismatch"):
        XMLVerifier().verify(tampered, x509_cert=keys.sign.certificate, id_attribute="ID")
    if XMLSEC1 is not None:
        assert xmlsec1_verify(tampered, keys.pki.ca_pem, tmp_path).returncode != 0


def test_a_changed_signature_value_is_a_bad_signature(keys: Keys) -> None:
    assertion = vihf(keys)
    value = assertion.find("ds:Signature/ds:SignatureValue", NS)
    assert value is not None and value.text
    value.text = ("A" if value.text[0] != "A" else "B") + value.text[1:]
    refused("bad_signature", assertion, keys)


def test_wrapping_forged_assertion_over_the_signed_one(keys: Keys, tmp_path: Path) -> None:
    original = vihf(keys)
    forged = copy.deepcopy(original)
    forged.set("ID", "_forged")
    for value in forged.iterfind(".//saml:AttributeValue", NS):
        if value.text == INS_CX:
            value.text = "180000000000000^^^&1.2.250.1.213.1.4.10&ISO^NH"
    # The signed assertion moves under an extension (Advice) of the forged one; its signature moves to the top.
    signed = copy.deepcopy(original)
    signature = signed.find("ds:Signature", NS)
    assert signature is not None
    signed.remove(signature)
    forged.remove(forged.find("ds:Signature", NS))  # type: ignore[arg-type]
    forged.insert(1, signature)
    advice = etree.Element(f"{{{SAML}}}Advice")
    advice.append(signed)
    forged.insert(3, advice)
    error = refused("wrapping", forged, keys)
    assert "does not reference the assertion" in error.message
    # A forged copy that reuses the original's ID is refused as well.
    twin = copy.deepcopy(forged)
    twin.set("ID", original.get("ID") or "")
    refused("wrapping", twin, keys)
    # The original, untouched, still passes.
    reverify(original, keys)


def test_wrapping_a_second_signature_or_a_moved_one(keys: Keys) -> None:
    assertion = vihf(keys)
    other = vihf(keys)
    extra = etree.SubElement(assertion, f"{{{SAML}}}Advice")
    extra.append(other)
    refused("wrapping", assertion, keys)
    moved = vihf(keys)
    signature = moved.find("ds:Signature", NS)
    assert signature is not None
    moved.remove(signature)
    moved.find("saml:Subject", NS).append(signature)  # type: ignore[union-attr]
    refused("wrapping", moved, keys)
    out_of_place = vihf(keys)
    sig = out_of_place.find("ds:Signature", NS)
    assert sig is not None
    out_of_place.remove(sig)
    out_of_place.insert(2, sig)
    refused("malformed", out_of_place, keys)


def test_an_untrusted_or_expired_certificate_is_refused(keys: Keys) -> None:
    with pytest.raises(SignatureVerificationError) as info:
        verify_vihf(to_bytes(vihf(keys)), trusted=[keys.other_pki.ca.certificate])
    assert info.value.reason == "untrusted_certificate"
    stranger = keys.other_pki.issue_organisation_sign(organisation="EVIL", structure_id="1123456789")
    forged = build_vihf(make_settings(), FileSigner([stranger.certificate], stranger.key))
    refused("untrusted_certificate", forged, keys)
    # A certificate valid when it signed, expired when the assertion is checked.
    short = keys.pki.issue_organisation_sign(
        organisation="CABINET TEST",
        structure_id="1123456789",
        not_before=NOW - dt.timedelta(days=30),
        not_after=NOW - dt.timedelta(days=1),
    )
    old = build_vihf(make_settings(), FileSigner([short.certificate], short.key), now=NOW - dt.timedelta(days=2))
    refused("expired_certificate", old, keys)
    refused("expired_certificate", vihf(keys), keys, now=NOW + dt.timedelta(days=800))


def test_issuer_must_name_the_signing_certificate(keys: Keys) -> None:
    assertion = vihf(keys)
    assertion.remove(assertion.find("ds:Signature", NS))  # type: ignore[arg-type]
    assertion[0].text = "CN=SOMEONE ELSE,O=CABINET TEST,C=FR"
    xmldsig.sign_enveloped(
        assertion,
        keys.signer,
        signature_algorithm=SignatureAlgorithm.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        position=1,
        inclusive_prefixes=INCLUSIVE_PREFIXES,
        prefix=None,
    )
    refused("untrusted_certificate", assertion, keys)
    # The X.500 order with ", " (ANS's example) names the same certificate.
    reordered = vihf(keys)
    reordered.remove(reordered.find("ds:Signature", NS))  # type: ignore[arg-type]
    reordered[0].text = "C=FR, ST=Paris (75), O=CABINET TEST, OU=1123456789, CN=DMP SIGN"
    xmldsig.sign_enveloped(
        reordered,
        keys.signer,
        signature_algorithm=SignatureAlgorithm.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        position=1,
        inclusive_prefixes=INCLUSIVE_PREFIXES,
        prefix=None,
    )
    assert reverify(reordered, keys).issuer.startswith("C=FR")


def test_assertion_dates(keys: Keys) -> None:
    bounded = vihf(keys, settings=make_settings(vihf_validity_seconds=60))
    refused("expired_assertion", bounded, keys, now=NOW + dt.timedelta(hours=1))
    refused("expired_assertion", vihf(keys), keys, now=NOW + dt.timedelta(hours=2), max_age=dt.timedelta(hours=1))
    future = vihf(keys, now=NOW + dt.timedelta(hours=1))
    refused("expired_assertion", future, keys, now=NOW)


def test_mandatory_attributes_and_unreadable_input(keys: Keys) -> None:
    settings = make_settings(vihf_attribute_overrides={"LPS_ID_HOMOLOGATION_DMP": None, "Secteur_Activite": None})
    error = refused("malformed", vihf(keys, settings=settings), keys)
    assert set(error.problems) == {"Secteur_Activite: missing", "LPS_ID_HOMOLOGATION_DMP: missing"}
    refused("malformed", b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", keys)
    refused("malformed", b"<Envelope/>", keys)
    unsigned = vihf(keys)
    unsigned.remove(unsigned.find("ds:Signature", NS))  # type: ignore[arg-type]
    refused("malformed", unsigned, keys)


def test_verify_accepts_only_one_assertion_in_security(keys: Keys) -> None:
    security = etree.Element(f"{{{WSSE}}}Security")
    security.append(vihf(keys))
    assert verify_vihf(security, trusted=keys.trusted).structure_id == "1123456789"
    security.append(vihf(keys))
    refused("malformed", security, keys)
