"""MSSanté addresses: kinds, patients only from a qualified INS, the whitelist and the trust space."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dmp_connector.errors import IdentityNotQualifiedError, UnsafeXmlError, ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid
from dmp_connector.mssante.address import (
    MSSANTE_DOMAINS,
    PATIENT_DOMAIN,
    DomainWhitelist,
    MailboxKind,
    MssanteAddress,
    SuffixTrustSpace,
    UntrustedRecipientError,
    require_trusted,
)

TRAITS = IdentityTraits.build(
    birth_name="ADRTROIS", birth_first_names="DOMINIQUE", sex="F", birth_date="1997-02-26", birth_place="2A020"
)
INS_ADRTROIS = INS.parse("297022A02077878", oid=InsOid.NIR)
QUALIFIED = Identity(traits=TRAITS, ins=INS_ADRTROIS, status=IdentityStatus.QUAL)

WHITELIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
  <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
  <ListeDomaines>
    <Domaine>
      <Nom>medecin.mssante.fr</Nom>
      <Description>Mailiz</Description>
      <DNCertificatOperateur>CN=smtp1.mailiz.mssante.fr,O=ANS,C=FR</DNCertificatOperateur>
      <ResponsableContact>contact@example.org</ResponsableContact>
      <SupportContact>support@example.org</SupportContact>
      <DateMAJ>2024-06-07T10:24:42Z</DateMAJ>
    </Domaine>
    <Domaine>
      <Nom>15-20.mssante.fr</Nom>
      <DNCertificatOperateur>CN=smtp-1.example.fr</DNCertificatOperateur>
      <DateMAJ>not a date</DateMAJ>
    </Domaine>
    <Domaine>
      <Nom>15-20.MSSANTE.fr</Nom>
      <DNCertificatOperateur>CN=smtp-2.example.fr</DNCertificatOperateur>
    </Domaine>
    <Domaine>
      <Nom>patient.mssante.fr</Nom>
      <DNCertificatOperateur>CN=smtps1.ens.atos-infogerance.fr,O=CNAM</DNCertificatOperateur>
    </Domaine>
  </ListeDomaines>
</ListeBlancheMSSante>
"""


def test_professional_addresses_parse_with_or_without_a_display_name() -> None:
    plain = MssanteAddress.parse("jean.dupont@Medecin.MSSante.fr")
    assert plain.address == "jean.dupont@medecin.mssante.fr"
    assert plain.domain == "medecin.mssante.fr"
    assert plain.local_part == "jean.dupont"
    assert plain.kind is None and not plain.is_patient
    named = MssanteAddress.parse('"Dr Jean Dupont" <jean.dupont@medecin.mssante.fr>', kind=MailboxKind.PERSONAL)
    assert named.display_name == "Dr Jean Dupont"
    assert named.kind is MailboxKind.PERSONAL
    assert str(named) == "Dr Jean Dupont <jean.dupont@medecin.mssante.fr>"
    accented = MssanteAddress(address="secretariat@ch-x.mssante.fr", display_name="Secrétariat Cardiologie")
    assert accented.header_address().display_name == "Secrétariat Cardiologie"


@pytest.mark.parametrize(
    "text",
    ["", "no-at-sign", "a@b", "two@@x.mssante.fr", "a b@x.mssante.fr", ".a@x.mssante.fr", "a@-x.mssante.fr", "é@x.fr"],
)
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        MssanteAddress.parse(text)


def test_display_names_cannot_inject_headers() -> None:
    with pytest.raises(ValidationError):
        MssanteAddress(address="a@x.mssante.fr", display_name="x\r\nBcc: evil@example.org")


def test_a_patient_address_comes_from_a_qualified_identity_only() -> None:
    address = MssanteAddress.for_patient(QUALIFIED)
    assert address.address == f"297022A02077878@{PATIENT_DOMAIN}"
    assert address.kind is MailboxKind.PATIENT and address.is_patient
    assert address.patient is QUALIFIED
    for status in (IdentityStatus.PROV, IdentityStatus.RECUP, IdentityStatus.VALI):
        identity = QUALIFIED.updated(status=status)
        with pytest.raises(IdentityNotQualifiedError):
            MssanteAddress.for_patient(identity)


def test_a_patient_address_hides_the_matricule_in_reprs() -> None:
    address = MssanteAddress.for_patient(QUALIFIED)
    assert "297022A02077878" not in repr(address)
    assert "297022A02077878" not in address.masked()
    assert "qualified=True" in repr(address)


def test_a_read_patient_address_is_a_patient_kind_without_an_identity() -> None:
    read = MssanteAddress.parse(f"297022A02077878@{PATIENT_DOMAIN}")
    assert read.kind is MailboxKind.PATIENT
    assert read.patient is None
    with pytest.raises(ValidationError):
        MssanteAddress(address=f"x@{PATIENT_DOMAIN}", kind=MailboxKind.PERSONAL)
    with pytest.raises(ValidationError):
        MssanteAddress(address="x@medecin.mssante.fr", kind=MailboxKind.PATIENT)


def test_an_identity_that_does_not_match_the_address_is_refused() -> None:
    other = Identity(traits=TRAITS, ins=INS.parse("290052A00401266", oid=InsOid.NIR), status=IdentityStatus.QUAL)
    with pytest.raises(ValidationError):
        MssanteAddress(address=f"297022A02077878@{PATIENT_DOMAIN}", patient=other)


def test_the_suffix_trust_space_follows_label_boundaries() -> None:
    assert MSSANTE_DOMAINS.contains("medecin.mssante.fr")
    assert MSSANTE_DOMAINS.contains(PATIENT_DOMAIN)
    assert MSSANTE_DOMAINS.contains("interop-mssante.apicrypt.org")
    assert not MSSANTE_DOMAINS.contains("evilmssante.fr")
    assert not MSSANTE_DOMAINS.contains("mssante.fr.example.org")
    assert not MSSANTE_DOMAINS.contains("gmail.com")
    assert SuffixTrustSpace(domains=("x.fr",)).contains("X.FR.")


def test_the_whitelist_is_read_from_the_official_format() -> None:
    whitelist = DomainWhitelist.from_xml(WHITELIST)
    assert whitelist.generated_at == datetime(2025, 3, 13, 14, 54, 10, tzinfo=UTC)
    assert whitelist.domains == {"medecin.mssante.fr", "15-20.mssante.fr", PATIENT_DOMAIN}
    assert len(whitelist.entries_for("15-20.mssante.fr")) == 2
    first = whitelist.entries[0]
    assert first.description == "Mailiz"
    assert first.operator_certificate_dn == "CN=smtp1.mailiz.mssante.fr,O=ANS,C=FR"
    assert first.updated_at == datetime(2024, 6, 7, 10, 24, 42, tzinfo=UTC)
    assert whitelist.entries[1].updated_at is None
    assert whitelist.contains("Medecin.MSSante.fr")
    assert not whitelist.contains("pharmacien.mssante.fr")


def test_the_whitelist_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "listeblanchemssante.xml"
    path.write_bytes(WHITELIST)
    assert DomainWhitelist.load(path).contains("medecin.mssante.fr")


def test_a_file_that_is_not_a_whitelist_is_refused() -> None:
    with pytest.raises(ValidationError, match="ListeBlancheMSSante"):
        DomainWhitelist.from_xml(b"<ListeBlancheMSSante/>")
    with pytest.raises(ValidationError, match="unreadable"):
        DomainWhitelist.from_xml(
            b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema"><ListeDomaines>'
            b"<Domaine><Description>x</Description></Domaine></ListeDomaines></ListeBlancheMSSante>"
        )


def test_the_whitelist_goes_through_the_hardened_parser() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ListeBlancheMSSante>&a;</ListeBlancheMSSante>'
    with pytest.raises(UnsafeXmlError):
        DomainWhitelist.from_xml(bomb)


def test_recipients_outside_the_trust_space_are_refused_together() -> None:
    whitelist = DomainWhitelist.from_xml(WHITELIST)
    good = MssanteAddress.parse("jean.dupont@medecin.mssante.fr")
    require_trusted([good, MssanteAddress.for_patient(QUALIFIED)], whitelist)
    with pytest.raises(UntrustedRecipientError) as caught:
        require_trusted(
            [good, MssanteAddress.parse("x@gmail.com"), MssanteAddress.parse("y@pharmacien.mssante.fr")], whitelist
        )
    assert caught.value.domains == ("gmail.com", "pharmacien.mssante.fr")
    assert isinstance(caught.value, ValidationError)
    assert len(caught.value.problems) == 2
    with pytest.raises(UntrustedRecipientError):
        require_trusted([MssanteAddress.parse("someone@example.org")])
