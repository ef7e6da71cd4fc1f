"""Identity traits: name normalisation, first names, sex, partial and lunar birth dates, comparison."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dmp_connector.errors import InvalidIdentifierError, ValidationError
from dmp_connector.ins import (
    BirthDate,
    DifferenceKind,
    IdentityTraits,
    Sex,
    first_name_coherent,
    normalize_name,
    split_first_names,
)

INSI_NAME = re.compile(r"^[A-Z]+(?:(?:--?|[' ])[A-Z]+)*$")

# Letters people's names are typed with in France: plain, accented, ligatures, both cases.
LATIN = "abcdefghijklmnopqrstuvwxyzàâäçéèêëîïôöùûüÿñœæ"
LATIN += LATIN.upper()
latin_names = st.text(st.sampled_from(LATIN + " -'’"), min_size=1, max_size=30)


def ecetinsi(**overrides: object) -> IdentityTraits:
    data: dict[str, object] = {
        "birth_name": "ECETINSI",
        "birth_first_names": "PIERRE-ALAIN MURIEL FLORIANT",
        "sex": "M",
        "birth_date": "2009-07-14",
        "birth_place": "63220",
    }
    data.update(overrides)
    return IdentityTraits.build(**data)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Dupont", "DUPONT"),
        ("  élodie  ", "ELODIE"),
        ("Müller-D’Arc", "MULLER-D'ARC"),
        ("d'aeion", "D'AEION"),
        ("de   vinci", "DE VINCI"),
        ("Martin - Dupont", "MARTIN-DUPONT"),
        ("MARTIN--DUPONT", "MARTIN--DUPONT"),
        ("Martin - - Dupont", "MARTIN--DUPONT"),
        ("Martin–Dupont", "MARTIN-DUPONT"),
        ("Œdipe", "OEDIPE"),
        ("Lætitia", "LAETITIA"),
        ("Strauß", "STRAUSS"),
        ("François-Xavier", "FRANCOIS-XAVIER"),
        ("Ñúñez", "NUNEZ"),
        ("Łukasz Søren", "LUKASZ SOREN"),
        ("D' Arc", "D'ARC"),
        ("ﬁlippi", "FILIPPI"),
    ],
)
def test_names_are_normalised_like_insi_writes_them(raw: str, normalised: str) -> None:
    assert normalize_name(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("Dupont2", "'2'"),
        ("Dupont.", "'.'"),
        ("Du/pont", "'/'"),
        ("Ж", "CYRILLIC"),
        ("", "empty"),
        ("   ", "empty"),
        ("-Dupont", "starts or ends"),
        ("Dupont'", "starts or ends"),
        ("Martin---Dupont", "more than two hyphens"),
        ("O''Neil", "two apostrophes"),
        ("O'-Neil", "apostrophe next to a hyphen"),
    ],
)
def test_what_cannot_be_normalised_is_refused_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_name(raw, what="the birth name")
    assert reason in info.value.message
    assert info.value.message.startswith("the birth name")


@given(st.text(max_size=40))
def test_normalisation_either_gives_the_insi_alphabet_or_a_validation_error(raw: str) -> None:
    try:
        result = normalize_name(raw)
    except ValidationError:
        return
    assert INSI_NAME.match(result)


@given(latin_names)
def test_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalize_name(raw)
    except ValidationError:
        assume(False)
        return
    assert normalize_name(once) == once


@given(latin_names)
def test_normalisation_removes_diacritics_and_ignores_case(raw: str) -> None:
    try:
        result = normalize_name(raw)
    except ValidationError:
        assume(False)
        return
    assert result.isascii()
    assert INSI_NAME.match(result)
    assert normalize_name(raw.lower()) == result
    assert normalize_name(raw.upper()) == result
    assert normalize_name(raw.swapcase()) == result


@given(st.text(st.sampled_from("ÀÁÂÃÄÅàáâãäå"), min_size=1, max_size=5))
def test_every_accented_a_becomes_a(raw: str) -> None:
    assert normalize_name(raw) == "A" * len(raw)


# --------------------------------------------------------------------------- first names


def test_first_names_split_on_spaces_and_commas_and_keep_hyphens() -> None:
    assert split_first_names("Pierre-Alain  Muriel, Floriant") == ("PIERRE-ALAIN", "MURIEL", "FLORIANT")


def test_a_sequence_keeps_a_compound_first_name_whole() -> None:
    assert split_first_names(["Jean Pierre", "Marie"]) == ("JEAN PIERRE", "MARIE")


def test_an_empty_list_of_first_names_is_refused() -> None:
    with pytest.raises(ValidationError, match="empty"):
        split_first_names("  ")
    with pytest.raises(ValidationError, match="empty"):
        split_first_names([])


@pytest.mark.parametrize(
    ("chosen", "coherent"),
    [
        ("JEAN", True),
        ("JEAN-CHRISTOPHE", True),
        ("JEAN CHRISTOPHE", True),
        ("Jean Christophe Pierre", True),
        ("CHRISTOPHE", False),
        ("JEAN PIERRE", False),
        ("JEANNE", False),
        ("", False),
    ],
)
def test_first_name_coherence_rule(chosen: str, coherent: bool) -> None:
    # RNIV EXI ID 10: hyphen and apostrophe count as spaces.
    assert first_name_coherent(chosen, "JEAN CHRISTOPHE PIERRE") is coherent
    assert first_name_coherent(chosen, ("JEAN", "CHRISTOPHE", "PIERRE")) is coherent


# --------------------------------------------------------------------------- sex


def test_sex_values() -> None:
    assert [s.value for s in Sex] == ["M", "F", "I"]
    assert Sex.parse("f") is Sex.F
    assert Sex.M.insi_searchable and Sex.F.insi_searchable
    assert not Sex.I.insi_searchable
    with pytest.raises(ValidationError, match="M, F or I"):
        Sex.parse("X")


# --------------------------------------------------------------------------- birth dates


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1975-12-31", (1975, 12, 31)),
        ("19751231", (1975, 12, 31)),
        ("31/12/1975", (1975, 12, 31)),
        ("31-12-1975", (1975, 12, 31)),
        ("1975-12-00", (1975, 12, None)),
        ("00/12/1975", (1975, 12, None)),
        ("1975-00-15", (1975, None, 15)),
        ("1975-00-00", (1975, None, None)),
        ("1975-12", (1975, 12, None)),
        ("1975", (1975, None, None)),
    ],
)
def test_birth_date_formats_and_unknown_parts(text: str, parts: tuple[int, int | None, int | None]) -> None:
    value = BirthDate.parse(text)
    assert (value.year, value.month, value.day) == parts
    assert value.is_partial is (None in parts)
    assert BirthDate.parse(value.iso()) == value


def test_birth_date_renderings_keep_unknown_parts() -> None:
    full = BirthDate.parse("1975-12-31")
    assert (full.iso(), full.cda(), full.datamatrix()) == ("1975-12-31", "19751231", "31-12-1975")
    assert str(full) == "1975-12-31"
    no_day = BirthDate.parse("1975-12-00")
    assert (no_day.iso(), no_day.cda(), no_day.datamatrix()) == ("1975-12-00", "19751201", "00-12-1975")
    no_month = BirthDate.parse("1975-00-15")
    assert (no_month.iso(), no_month.cda()) == ("1975-00-15", "19750115")
    year_only = BirthDate.parse("1975-00-00")
    assert (year_only.iso(), year_only.cda()) == ("1975-00-00", "19751231")


@pytest.mark.parametrize(
    ("text", "lunar"),
    [
        ("1960-02-30", True),
        ("1960-04-31", True),
        ("1960-13-01", True),
        ("1960-00-32", True),
        ("1900-02-29", True),
        ("2000-02-29", False),
        ("1960-00-31", False),
        ("1960-02-00", False),
    ],
)
def test_lunar_dates_are_kept_and_flagged(text: str, lunar: bool) -> None:
    value = BirthDate.parse(text)
    assert value.is_lunar is lunar
    assert value.iso() == text
    if lunar:
        with pytest.raises(ValidationError, match="not a calendar date"):
            BirthDate.parse(text, allow_lunar=False)
        with pytest.raises(ValidationError):
            value.as_date()


def test_calendar_dates_convert() -> None:
    assert BirthDate.parse("2000-02-29").as_date() == date(2000, 2, 29)
    assert BirthDate.from_date(date(1997, 2, 26)).iso() == "1997-02-26"
    with pytest.raises(ValidationError):
        BirthDate.parse("1975-12-00").as_date()


@pytest.mark.parametrize("text", ["", "1975/12/31", "31.12.1975", "75-12-31", "0000-01-01", "tomorrow"])
def test_unreadable_birth_dates_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        BirthDate.parse(text)


# --------------------------------------------------------------------------- traits


def test_build_normalises_every_name() -> None:
    traits = IdentityTraits.build(
        birth_name="Pat-Trois",
        birth_first_names="Dominique Marie-Louise",
        sex="f",
        birth_date="28/03/1979",
        birth_place="51215",
        used_name="  dupont ",
        used_first_name="Domi",
    )
    assert traits.birth_name == "PAT-TROIS"
    assert traits.birth_first_names == ("DOMINIQUE", "MARIE-LOUISE")
    assert traits.first_first_name == "DOMINIQUE"
    assert traits.first_names_text == "DOMINIQUE MARIE-LOUISE"
    assert (traits.used_name, traits.used_first_name) == ("DUPONT", "DOMI")
    assert traits.sex is Sex.F
    assert traits.birth_date == BirthDate(year=1979, month=3, day=28)


def test_several_first_names() -> None:
    traits = ecetinsi()
    assert traits.birth_first_names == ("PIERRE-ALAIN", "MURIEL", "FLORIANT")
    assert traits.first_first_name == "PIERRE-ALAIN"


@pytest.mark.parametrize(("place", "expected"), [("2a020", "2A020"), ("2B020", "2B020"), ("97411", "97411")])
def test_corsica_and_overseas_birth_places(place: str, expected: str) -> None:
    traits = ecetinsi(birth_place=place)
    assert traits.birth_place == expected
    assert not traits.born_abroad


def test_born_abroad_and_unknown_place() -> None:
    assert ecetinsi(birth_place="99350").born_abroad
    unknown = ecetinsi(birth_place="99999")
    assert unknown.born_abroad and unknown.birth_place_unknown
    assert ecetinsi(birth_place=None).birth_place is None
    assert ecetinsi(birth_place=" ").birth_place is None


@pytest.mark.parametrize("place", ["6322", "632200", "2C020", "A2020", "63 22"])
def test_malformed_birth_places_are_refused(place: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="COG"):
        ecetinsi(birth_place=place)


def test_every_name_problem_is_reported_at_once_naming_the_trait() -> None:
    with pytest.raises(ValidationError) as info:
        IdentityTraits.build(
            birth_name="Dupont2",
            birth_first_names="Jean 3",
            sex="X",
            birth_date="someday",
            used_name="a.b",
        )
    problems = info.value.problems
    assert len(problems) == 5
    assert any(p.startswith("the birth name") for p in problems)
    assert any(p.startswith("a birth first name") for p in problems)
    assert any(p.startswith("the used name") for p in problems)
    assert any("sex" in p for p in problems)
    assert any("birth date" in p for p in problems)
    assert "Dupont" not in str(info.value)


def test_birth_date_may_be_given_as_any_form() -> None:
    assert ecetinsi(birth_date=date(2009, 7, 14)).birth_date == ecetinsi().birth_date
    assert ecetinsi(birth_date=BirthDate(year=2009, month=7, day=14)).birth_date == ecetinsi().birth_date
    assert ecetinsi(birth_date="2009-07-00").birth_date.is_partial


def test_traits_read_as_they_are_can_be_normalised_later() -> None:
    # A CDA may carry mixed case ("Ruth Isabelle"): held as is, normalised on demand.
    raw = IdentityTraits(
        birth_name="de Vinci",
        birth_first_names=("Ruth", "Isabelle"),
        sex=Sex.F,
        birth_date=BirthDate(year=1950, month=1, day=2),
    )
    assert raw.birth_name == "de Vinci"
    normalised = raw.normalized()
    assert normalised.birth_name == "DE VINCI"
    assert normalised.birth_first_names == ("RUTH", "ISABELLE")
    assert normalised.normalized() == normalised
    with pytest.raises(ValidationError, match="empty"):
        IdentityTraits(birth_name=" ", birth_first_names=("A",), sex=Sex.F, birth_date=raw.birth_date)


# --------------------------------------------------------------------------- comparison


def test_identical_traits_match_whatever_the_case() -> None:
    insi = ecetinsi()
    typed = ecetinsi(birth_name="Écetinsi", birth_first_names="pierre-alain muriel floriant")
    comparison = typed.compare(insi)
    assert comparison.matches
    assert comparison.differences == ()
    assert comparison.minor_only


@pytest.mark.parametrize(
    ("change", "trait", "kind"),
    [
        ({"birth_name": "ECET INSI"}, "birth_name", DifferenceKind.SEPARATORS),
        ({"birth_name": "DUPONT"}, "birth_name", DifferenceKind.DIFFERENT),
        ({"sex": "F"}, "sex", DifferenceKind.DIFFERENT),
        ({"birth_date": "2009-07-15"}, "birth_date", DifferenceKind.DIFFERENT),
        ({"birth_date": "2008-07-14"}, "birth_date", DifferenceKind.DIFFERENT),
        ({"birth_date": "2009-07-00"}, "birth_date", DifferenceKind.LESS_PRECISE),
        ({"birth_date": "2009-00-00"}, "birth_date", DifferenceKind.LESS_PRECISE),
        ({"birth_place": "75056"}, "birth_place", DifferenceKind.DIFFERENT),
        ({"birth_place": "99350"}, "birth_place", DifferenceKind.DIFFERENT),
        ({"birth_place": "99999"}, "birth_place", DifferenceKind.LESS_PRECISE),
        ({"birth_place": None}, "birth_place", DifferenceKind.MISSING),
    ],
)
def test_comparison_names_the_differing_trait(change: dict[str, object], trait: str, kind: DifferenceKind) -> None:
    comparison = ecetinsi(**change).compare(ecetinsi())
    assert not comparison.matches
    assert comparison.traits == (trait,)
    difference = comparison.get(trait)
    assert difference is not None
    assert difference.kind is kind
    assert comparison.get("sex" if trait != "sex" else "birth_name") is None


def test_first_names_comparison() -> None:
    insi = ecetinsi()
    fewer = ecetinsi(birth_first_names="PIERRE-ALAIN").compare(insi)
    assert fewer.traits == ("birth_first_names",)
    assert fewer.differences[0].kind is DifferenceKind.LESS_PRECISE
    assert fewer.minor_only

    separators = ecetinsi(birth_first_names=["PIERRE ALAIN", "MURIEL", "FLORIANT"]).compare(insi)
    assert separators.traits == ("birth_first_names", "first_first_name")
    assert {d.kind for d in separators.differences} == {DifferenceKind.SEPARATORS}

    other = ecetinsi(birth_first_names="PIERRE MURIEL FLORIANT").compare(insi)
    assert other.traits == ("birth_first_names", "first_first_name")
    assert {d.kind for d in other.differences} == {DifferenceKind.DIFFERENT}
    assert not other.minor_only

    reordered = ecetinsi(birth_first_names="PIERRE-ALAIN FLORIANT MURIEL").compare(insi)
    assert reordered.traits == ("birth_first_names",)
    assert reordered.differences[0].kind is DifferenceKind.DIFFERENT


def test_several_differences_come_in_trait_order_with_both_values() -> None:
    comparison = ecetinsi(birth_name="DUPONT", sex="F", birth_place="75056").compare(ecetinsi())
    assert comparison.traits == ("birth_name", "sex", "birth_place")
    name = comparison.differences[0]
    assert (name.ours, name.theirs) == ("DUPONT", "ECETINSI")
    assert comparison.differences[1].ours == "F"


def test_used_names_are_not_insi_traits_and_are_not_compared() -> None:
    assert ecetinsi(used_name="DURAND").compare(ecetinsi()).matches


# --------------------------------------------------------------------------- never in clear


def test_reprs_hide_the_trait_values() -> None:
    traits = ecetinsi()
    comparison = ecetinsi(birth_name="DUPONT", birth_date="2001-01-01").compare(traits)
    for shown in (repr(traits), str(traits), repr(comparison), str(comparison), repr(comparison.differences[0])):
        for secret in ("ECETINSI", "DUPONT", "PIERRE", "MURIEL", "2009", "2001", "63220"):
            assert secret not in shown, shown
    assert "birth_name" in repr(comparison)
