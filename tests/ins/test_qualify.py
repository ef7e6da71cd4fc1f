"""Identity.qualify: RECUP -> QUAL (PROV -> VALI) once an identity document is checked, recording which."""

from __future__ import annotations

import datetime as dt

import pytest

from dmp_connector import Identity, IdentityDocumentKind, IdentityStatus, IdentityTraits
from dmp_connector.errors import IdentityNotQualifiedError, InvalidIdentifierError, ValidationError
from dmp_connector.ins import INS, IdentityDocument

TRAITS = IdentityTraits.build(birth_name="ADRUN", birth_first_names="ZOE", sex="F", birth_date="1975-12-31")
GOOD = INS.from_parts("2751263220305", None, "1.2.250.1.213.1.4.8")


def retrieved(**changes: object) -> Identity:
    return Identity(traits=TRAITS, ins=GOOD, status=IdentityStatus.RECUP).updated(**changes)


def test_recup_becomes_qual_and_records_the_document() -> None:
    day = dt.date(2024, 3, 12)
    qualified = retrieved().qualify(IdentityDocumentKind.PASSPORT, checked_on=day)
    assert qualified.status is IdentityStatus.QUAL
    assert qualified.document == IdentityDocument(kind=IdentityDocumentKind.PASSPORT, checked_on=day)
    assert qualified.require_qualified("a test") == GOOD


def test_prov_becomes_vali() -> None:
    validated = Identity(traits=TRAITS).qualify("CN")
    assert validated.status is IdentityStatus.VALI
    assert validated.document is not None and validated.document.kind is IdentityDocumentKind.NATIONAL_ID_CARD
    assert validated.document.checked_on == dt.date.today()


def test_a_minor_s_birth_certificate_needs_a_parent_s_high_trust_document() -> None:
    with pytest.raises(ValidationError, match="parent's or guardian's"):
        retrieved().qualify(IdentityDocumentKind.BIRTH_CERTIFICATE)
    with pytest.raises(ValidationError, match="parent's or guardian's"):
        retrieved().qualify(
            IdentityDocumentKind.BIRTH_CERTIFICATE, accompanied_by=IdentityDocumentKind.FAMILY_RECORD_BOOK
        )
    qualified = retrieved().qualify(
        IdentityDocumentKind.FAMILY_RECORD_BOOK, accompanied_by=IdentityDocumentKind.NATIONAL_ID_CARD
    )
    assert qualified.document is not None and qualified.document.accompanied_by is IdentityDocumentKind.NATIONAL_ID_CARD


@pytest.mark.parametrize(
    ("identity", "error", "match"),
    [
        (Identity(traits=TRAITS, doubtful=True), IdentityNotQualifiedError, "doubtful"),
        (Identity(traits=TRAITS, fictitious=True), IdentityNotQualifiedError, "fictitious"),
        (Identity(traits=TRAITS, ins=GOOD, status=IdentityStatus.QUAL), IdentityNotQualifiedError, "already QUAL"),
        (Identity(traits=TRAITS, status=IdentityStatus.VALI), IdentityNotQualifiedError, "already VALI"),
    ],
)
def test_every_rule_break_is_a_typed_error(identity: Identity, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        identity.qualify(IdentityDocumentKind.PASSPORT)


def test_other_rule_breaks() -> None:
    with pytest.raises(ValidationError, match="not an identity document"):
        retrieved().qualify("CARTE-VITALE")
    with pytest.raises(ValidationError, match="qualifies alone"):
        retrieved().qualify(IdentityDocumentKind.PASSPORT, accompanied_by=IdentityDocumentKind.NATIONAL_ID_CARD)
    with pytest.raises(ValidationError, match="future"):
        retrieved().qualify(IdentityDocumentKind.PASSPORT, checked_on=dt.date.today() + dt.timedelta(days=1))


def test_an_ins_with_a_wrong_key_is_not_qualified() -> None:
    other = "00" if GOOD.matricule[13:] != "00" else "01"
    wrong = INS.parse(GOOD.matricule[:13] + other, lenient=True)
    assert not wrong.key_valid
    identity = Identity(traits=TRAITS, ins=wrong, status=IdentityStatus.RECUP)
    with pytest.raises(InvalidIdentifierError, match="wrong key"):
        identity.qualify(IdentityDocumentKind.PASSPORT)
    assert identity.status is IdentityStatus.RECUP
