"""Identity statuses and attributes: what the RNIV forbids cannot be built, and the two guards hold."""

from __future__ import annotations

import pydantic
import pytest

from dmp_connector.errors import IdentityNotQualifiedError, InvalidIdentifierError, ValidationError
from dmp_connector.ins import INS, Identity, IdentityStatus, IdentityTraits, InsOid

TRAITS = IdentityTraits.build(
    birth_name="ADRTROIS",
    birth_first_names="DOMINIQUE",
    sex="F",
    birth_date="1997-02-26",
    birth_place="2A020",
)
INS_ADRTROIS = INS.parse("297022A02077878", oid=InsOid.NIR)
PURPOSES = ["a CDA document", "a DMP call", "an MSSanté patient address"]


def identity(**fields: object) -> Identity:
    data: dict[str, object] = {"traits": TRAITS}
    data.update(fields)
    return Identity.model_validate(data)


def test_statuses_and_what_they_mean() -> None:
    assert [s.value for s in IdentityStatus] == ["PROV", "RECUP", "VALI", "QUAL"]
    assert [s.ins_retrieved for s in IdentityStatus] == [False, True, False, True]
    assert [s.document_checked for s in IdentityStatus] == [False, False, True, True]


def test_a_new_identity_is_provisional() -> None:
    plain = Identity(traits=TRAITS)
    assert plain.status is IdentityStatus.PROV
    assert plain.ins is None
    assert not (plain.doubtful or plain.fictitious or plain.homonym)


@pytest.mark.parametrize("status", [IdentityStatus.RECUP, IdentityStatus.QUAL])
def test_recup_and_qual_need_an_ins(status: IdentityStatus) -> None:
    with pytest.raises(ValidationError, match="holds the INS"):
        identity(status=status)
    assert identity(status=status, ins=INS_ADRTROIS).ins == INS_ADRTROIS


@pytest.mark.parametrize("attribute", ["doubtful", "fictitious"])
@pytest.mark.parametrize("status", [IdentityStatus.RECUP, IdentityStatus.VALI, IdentityStatus.QUAL])
def test_doubtful_or_fictitious_identities_stay_provisional(attribute: str, status: IdentityStatus) -> None:
    with pytest.raises(ValidationError, match="EXI SI 09") as info:
        identity(status=status, ins=INS_ADRTROIS, **{attribute: True})
    assert info.value.problems
    assert identity(**{attribute: True}).status is IdentityStatus.PROV


def test_doubtful_and_fictitious_do_not_combine_but_homonym_does() -> None:
    with pytest.raises(ValidationError, match="both doubtful and fictitious"):
        identity(doubtful=True, fictitious=True)
    assert identity(doubtful=True, homonym=True).homonym
    assert identity(status=IdentityStatus.QUAL, ins=INS_ADRTROIS, homonym=True).may_call_insi()


@pytest.mark.parametrize("attribute", ["doubtful", "fictitious"])
def test_doubtful_or_fictitious_identities_must_not_call_insi(attribute: str) -> None:
    flagged = identity(**{attribute: True})
    assert not flagged.may_call_insi()
    with pytest.raises(IdentityNotQualifiedError, match=f"marked {attribute}"):
        flagged.require_insi_allowed()


@pytest.mark.parametrize("status", [IdentityStatus.PROV, IdentityStatus.VALI])
def test_other_identities_may_call_insi(status: IdentityStatus) -> None:
    plain = identity(status=status)
    assert plain.may_call_insi()
    plain.require_insi_allowed()


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize(
    ("status", "ins"),
    [
        (IdentityStatus.PROV, None),
        (IdentityStatus.PROV, INS_ADRTROIS),
        (IdentityStatus.VALI, None),
        (IdentityStatus.VALI, INS_ADRTROIS),
        (IdentityStatus.RECUP, INS_ADRTROIS),
    ],
)
def test_only_a_qualified_identity_may_carry_its_ins(purpose: str, status: IdentityStatus, ins: INS | None) -> None:
    with pytest.raises(IdentityNotQualifiedError) as info:
        identity(status=status, ins=ins).require_qualified(purpose)
    assert purpose in info.value.message
    assert status.value in info.value.message
    assert info.value.hint
    assert INS_ADRTROIS.matricule not in str(info.value)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_qualified_identity_gives_its_ins(purpose: str) -> None:
    qualified = identity(status=IdentityStatus.QUAL, ins=INS_ADRTROIS)
    ins = qualified.require_qualified(purpose)
    assert ins.mssante_address() == "297022A02077878@patient.mssante.fr"


def test_a_qualified_identity_with_a_wrong_key_is_refused() -> None:
    wrong = INS.parse("181036322045660", lenient=True)
    qualified = identity(status=IdentityStatus.QUAL, ins=wrong)
    with pytest.raises(InvalidIdentifierError, match="wrong key"):
        qualified.require_qualified("a DMP call")


def test_updated_checks_the_rules_again() -> None:
    recovered = identity(status=IdentityStatus.RECUP, ins=INS_ADRTROIS)
    assert recovered.updated(status=IdentityStatus.QUAL).status is IdentityStatus.QUAL
    with pytest.raises(ValidationError, match="EXI SI 09"):
        recovered.updated(doubtful=True)
    downgraded = recovered.updated(doubtful=True, status=IdentityStatus.PROV)
    assert downgraded.ins == INS_ADRTROIS
    with pytest.raises(IdentityNotQualifiedError):
        downgraded.require_qualified("a CDA document")


def test_identity_repr_hides_the_matricule_and_the_traits() -> None:
    qualified = identity(status=IdentityStatus.QUAL, ins=INS_ADRTROIS)
    for shown in (repr(qualified), str(qualified)):
        assert INS_ADRTROIS.matricule not in shown
        assert INS_ADRTROIS.nir13 not in shown
        assert "ADRTROIS" not in shown
        assert "DOMINIQUE" not in shown
        assert "QUAL" in shown


def test_validation_errors_do_not_echo_the_input() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Identity.model_validate({"traits": TRAITS, "ins": INS_ADRTROIS, "status": "BOGUS"})
    assert INS_ADRTROIS.matricule not in str(info.value)
    assert "ADRTROIS" not in str(info.value)
