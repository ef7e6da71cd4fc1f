"""Every answer shape of ins.md §2.4 parses into typed results, sync and async, from respx fixtures."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
import respx

from dmp_connector.errors import MalformedResponseError, PatientMismatchError, UnsafeXmlError
from dmp_connector.ins import IdentityTraits, InsOid
from dmp_connector.ins.insi import CarteVitaleBeneficiary, InsiResult, InsiResultCode, SearchCriteria, VitaleNir

from . import fixtures
from .helpers import ADRUN, MODES, URL, call, settings, traits

SOAP_OK = {"Content-Type": "application/soap+xml; charset=utf-8"}


def searched_for(body: bytes) -> IdentityTraits:
    """The traits of the person a captured answer is about: what a search that found them sent."""

    def text(local: str) -> str | None:
        match = re.search(rf"<(?:\w+:)?{local}>([^<]*)<".encode(), body)
        return match.group(1).decode() if match else None

    name, first = text("NomNaissance"), text("ListePrenom") or text("Prenom")
    sex, born = text("Sexe"), text("DateNaissance")
    if not (name and first and sex and born):
        return ADRUN
    return traits(name, first, sex, born)


def answer(mode: str, body: bytes, *, searched: IdentityTraits | None = None) -> InsiResult:
    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, headers=SOAP_OK, content=body))
        subject = searched if searched is not None else searched_for(body)
        result: InsiResult = call(mode, settings(), "search", subject, criteria=SearchCriteria())
    return result


@MODES
def test_found_about_another_person_is_refused(mode: str) -> None:
    """A 00 naming someone else than the traits searched (ADRTROIS for ADRUN) is an error, never a result."""
    with pytest.raises(PatientMismatchError) as info:
        answer(mode, fixtures.FOUND_DEFAULT_NS, searched=ADRUN)
    assert set(info.value.problems) == {"birth_name", "birth_first_names", "birth_date"}
    assert "ADRTROIS" not in str(info.value) and "ADRUN" not in str(info.value)


@MODES
def test_a_carte_vitale_search_answered_with_another_person_is_refused(mode: str) -> None:
    """A 00 whose birth date and name are not the card beneficiary's (ADRTROIS for ADRUN) is an error."""
    card = CarteVitaleBeneficiary(holder=VitaleNir(number="2751263220749"), birth_date="1975-12-01", birth_name="ADRUN")
    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, headers=SOAP_OK, content=fixtures.FOUND_DEFAULT_NS))
        with pytest.raises(PatientMismatchError) as info:
            call(mode, settings(), "search_carte_vitale", card)
        assert set(info.value.problems) == {"birth_date", "birth_name"}
        assert "ADRTROIS" not in str(info.value) and "ADRUN" not in str(info.value)
        assert "1997" not in str(info.value) and "1975" not in str(info.value)
        nameless = card.model_copy(update={"birth_name": None})  # the date alone still decides
        with pytest.raises(PatientMismatchError) as info:
            call(mode, settings(), "search_carte_vitale", nameless)
        assert info.value.problems == ("birth_date",)
        own = CarteVitaleBeneficiary(
            holder=VitaleNir(number="2970220020778"), birth_date="1997-02-26", birth_name="Adrtrois"
        )
        found = call(mode, settings(), "search_carte_vitale", own).identity
    assert found is not None and found.active.matricule == "297022A02077878"


@MODES
def test_found_with_a_default_namespace(mode: str) -> None:
    result = answer(mode, fixtures.FOUND_DEFAULT_NS)
    assert result.code is InsiResultCode.FOUND and result.found and result.label == "OK"
    assert result.criteria == SearchCriteria()
    found = result.identity
    assert found is not None
    assert found.active.matricule == "297022A02077878" and found.active.oid is InsOid.NIR
    assert found.active.key_valid and found.all_keys_valid
    assert found.history == () and found.replaced == ()
    assert found.traits.birth_name == "ADRTROIS"
    assert found.traits.birth_first_names == ("DOMINIQUE",)
    assert found.traits.sex.value == "F"
    assert found.traits.birth_date.iso() == "1997-02-26"
    assert found.traits.birth_place == "2A020"
    assert found.first_name is None
    assert not found.is_nia and not found.placeholder_traits


@MODES
def test_found_with_prefixes_read_by_namespace(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_PREFIXED).identity
    assert found is not None
    assert found.active.matricule == "275126322074974"
    assert found.traits.birth_name == "ADRUN"


@MODES
def test_two_former_matricules_with_inverted_dates(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_HISTORY_TWO).identity
    assert found is not None
    assert found.active.matricule == "109076322083489"
    assert [entry.ins.matricule for entry in found.history] == ["209076322083439", "209066322012355"]
    first, second = found.history
    assert first.start == date(2019, 3, 1) and first.end == date(2019, 2, 28) and first.dates_inverted
    assert second.start is None and second.end is None and not second.dates_inverted
    assert [ins.matricule for ins in found.replaced] == ["209076322083439", "209066322012355"]
    assert found.traits.birth_first_names == ("PIERRE-ALAIN", "MURIEL", "FLORIANT")
    assert found.traits.first_first_name == "PIERRE-ALAIN"


@MODES
def test_one_former_nia_replaced_by_a_nir(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_HISTORY_ONE).identity
    assert found is not None
    assert len(found.history) == 1
    (entry,) = found.history
    assert entry.ins.oid is InsOid.NIA and entry.ins.matricule == "109076322088835"
    assert entry.start == date(2010, 8, 20) and entry.end == date(2011, 12, 31)
    assert found.replaced == (entry.ins,)
    assert found.traits.birth_first_names == ("MICHELANGELO", "ANTHONY")


@MODES
def test_history_repeating_the_active_ins(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_HISTORY_REPEATS_ACTIVE).identity
    assert found is not None
    assert len(found.history) == 1 and found.history[0].ins == found.active
    assert found.replaced == ()
    assert found.first_name == "ANTHONY"
    assert found.traits.birth_place == "2B020"
    assert found.active.matricule == "180032B02040123"


@MODES
def test_wrong_keys_are_kept_and_flagged_never_fixed(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_BAD_KEYS).identity
    assert found is not None
    assert found.active.matricule == "181036322045660"
    assert not found.active.key_valid and found.active.expected_key == "76"
    assert not found.all_keys_valid
    assert [ins.matricule for ins in found.replaced] == ["281036322045610"]
    assert not found.replaced[0].key_valid


@MODES
def test_nia_with_placeholder_traits(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_NIA_PLACEHOLDER).identity
    assert found is not None
    assert found.is_nia and found.active.oid is InsOid.NIA
    assert found.placeholder_traits
    assert found.first_name == "MATRICULE"
    assert found.traits.birth_name == "PROVISOIRE"


@MODES
def test_prenom_without_liste_prenom_and_a_computed_key(mode: str) -> None:
    found = answer(mode, fixtures.FOUND_PRENOM_ONLY).identity
    assert found is not None
    assert found.traits.birth_first_names == ("LAURENT",) and found.first_name == "LAURENT"
    assert found.active.matricule == "181016322075140" and found.active.key_valid
    assert found.traits.birth_place is None
    assert found.traits.birth_date.is_lunar and found.traits.birth_date.iso() == "1981-02-30"


@MODES
@pytest.mark.parametrize(
    ("body", "code", "label"),
    [
        (fixtures.NOT_FOUND, InsiResultCode.NOT_FOUND, "Aucune identite trouvee"),
        (fixtures.AMBIGUOUS, InsiResultCode.AMBIGUOUS, "Plusieurs identites trouvees"),
    ],
)
def test_none_and_several_carry_no_identity(mode: str, body: bytes, code: InsiResultCode, label: str) -> None:
    result = answer(mode, body)
    assert result.code is code and result.label == label
    assert result.identity is None and not result.found


@MODES
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (fixtures.UNKNOWN_CODE, r"unknown result code '03'"),
        (fixtures.FOUND_WITHOUT_INDIVIDU, r"00 \(one identity\) but has no INDIVIDU"),
        (fixtures.TIQ_WITHOUT_SEX, r"TIQ lacks Sexe"),
        (fixtures.BAD_OID, r"unusable matricule or OID"),
        (fixtures.WRONG_NAMESPACE, r"not a RESULTAT"),
        (fixtures.TRUNCATED, r"not well-formed"),
    ],
)
def test_bad_answers_are_malformed(mode: str, body: bytes, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message) as info:
        answer(mode, body)
    assert "2751263220749" not in str(info.value)


@MODES
def test_hostile_answer_is_refused_unread(mode: str) -> None:
    with pytest.raises(UnsafeXmlError):
        answer(mode, fixtures.HOSTILE)


def test_unknown_code_is_not_retried() -> None:
    with respx.mock:
        route = respx.post(URL).mock(return_value=httpx.Response(200, headers=SOAP_OK, content=fixtures.UNKNOWN_CODE))
        with pytest.raises(MalformedResponseError):
            call("sync", settings(), "search", ADRUN)
        assert route.call_count == 1


def test_result_refuses_an_identity_without_code_00() -> None:
    found = answer("sync", fixtures.FOUND_DEFAULT_NS)
    with pytest.raises(ValueError, match="exactly when its code is 00"):
        InsiResult(code=InsiResultCode.NOT_FOUND, label="x", identity=found.identity)


def test_repr_of_a_result_shows_no_matricule_and_no_trait() -> None:
    text = repr(answer("sync", fixtures.FOUND_HISTORY_TWO)) + repr(
        answer("sync", fixtures.FOUND_HISTORY_REPEATS_ACTIVE)
    )
    for secret in ("109076322083489", "1090763220834", "ECETINSI", "PIERRE-ALAIN", "2009-07-14", "ANTHONY", "CORSE"):
        assert secret not in text
