"""The matricule INS: key algorithm, parsing rules, OIDs, formats, and that it never shows in clear."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dmp_connector.errors import InvalidIdentifierError
from dmp_connector.ins import INS, InsKind, InsOid, MatriculeRules, compute_key

# --------------------------------------------------------------------------- strategies


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """A 13-character body that passes the default structure rules."""
    sex = draw(st.sampled_from("12"))
    year = draw(st.integers(0, 99))
    month = draw(st.one_of(st.integers(1, 12), st.integers(20, 99)))
    department = draw(st.one_of(st.sampled_from(["2A", "2B"]), st.integers(0, 99).map(lambda n: f"{n:02d}")))
    rest = draw(st.integers(0, 999_999))
    return f"{sex}{year:02d}{month:02d}{department}{rest:06d}"


def matricule_of(body: str) -> str:
    return body + compute_key(body)


def raises_invalid(text: str) -> InvalidIdentifierError:
    with pytest.raises(InvalidIdentifierError) as info:
        INS.parse(text)
    return info.value


# --------------------------------------------------------------------------- key algorithm

# The reference's vectors (ins.md §1.2), each key recomputed there.
KEY_VECTORS = [
    ("2550814168025", "38"),
    ("2940375120005", "91"),
    ("284052A321025", "52"),
    ("180032B020401", "23"),
    ("297022A020778", "78"),
    ("2790351215189", "89"),
    ("2070585756270", "97"),
    ("1850575123035", "09"),
]


@pytest.mark.parametrize(("body", "key"), KEY_VECTORS)
def test_reference_key_vectors(body: str, key: str) -> None:
    assert compute_key(body) == key


def test_remainder_zero_gives_key_97_and_small_keys_are_zero_padded() -> None:
    assert compute_key("2070585756270") == "97"
    assert compute_key("1850575123035") == "09"


def test_the_issue_example_has_a_right_key() -> None:
    assert compute_key("2 90 05 2A 004 012") == "66"
    assert INS.parse("2 90 05 2A 004 012 66").matricule == "290052A00401266"


@given(bodies())
def test_key_is_always_two_digits_from_01_to_97(body: str) -> None:
    key = compute_key(body)
    assert len(key) == 2
    assert 1 <= int(key) <= 97


@given(bodies(), st.sampled_from(list(InsOid)))
def test_compute_key_then_parse_round_trips(body: str, oid: InsOid) -> None:
    ins = INS.parse(matricule_of(body), oid=oid)
    assert ins.matricule == matricule_of(body)
    assert (ins.nir13, ins.key, ins.oid) == (body, compute_key(body), oid)
    assert ins.key_valid
    assert INS.parse(ins.formatted(), oid=oid) == ins
    assert INS.from_parts(ins.nir13, ins.key, oid) == ins
    assert INS.from_parts(ins.nir13, None, oid) == ins
    assert INS.model_validate(ins.model_dump()) == ins


@given(bodies(), st.data())
def test_spaces_dots_dashes_and_case_are_ignored(body: str, data: st.DataObject) -> None:
    text = matricule_of(body).lower()
    pieces = []
    for char in text:
        pieces.append(char)
        pieces.append(data.draw(st.sampled_from(["", "", " ", ".", "-", "  "])))
    assert INS.parse("".join(pieces)).matricule == matricule_of(body)


@given(bodies(), st.integers(0, 14), st.sampled_from("0123456789AB"))
def test_any_single_character_change_is_caught(body: str, position: int, replacement: str) -> None:
    original = matricule_of(body)
    assume(original[position] != replacement)
    changed = original[:position] + replacement + original[position + 1 :]
    with pytest.raises(InvalidIdentifierError):
        INS.parse(changed)


@given(bodies(), st.integers(0, 13))
def test_any_adjacent_swap_is_caught(body: str, position: int) -> None:
    original = matricule_of(body)
    assume(original[position] != original[position + 1])
    swapped = original[:position] + original[position + 1] + original[position] + original[position + 2 :]
    with pytest.raises(InvalidIdentifierError):
        INS.parse(swapped)


@given(bodies(), st.integers(0, 12).filter(lambda p: p not in (5, 6)), st.sampled_from("AB"))
def test_corsica_letters_are_refused_anywhere_but_the_department(body: str, position: int, letter: str) -> None:
    changed = body[:position] + letter + body[position + 1 :]
    with pytest.raises(InvalidIdentifierError):
        compute_key(changed)


def test_corsica_replacement_happens_at_the_department_only() -> None:
    # The CNAM library replaces "2B" anywhere and calls this valid with key 78; it is not a NIR.
    with pytest.raises(InvalidIdentifierError, match="department position"):
        compute_key("2B34567890123")
    assert compute_key("284052A321025") == "52"
    assert compute_key("284052B321025") == "79"
    assert compute_key("284052a321025") == "52"
    with pytest.raises(InvalidIdentifierError):
        compute_key("284053A321025")  # "3A" is no department


# --------------------------------------------------------------------------- parsing rules


@pytest.mark.parametrize(("text", "length"), [("2900", 4), ("29005190040126", 14), ("2900519004012661", 16)])
def test_wrong_length_is_refused_with_the_length(text: str, length: int) -> None:
    error = raises_invalid(text)
    assert f"not {length}" in error.message


def test_a_body_without_key_is_refused_but_from_parts_computes_one() -> None:
    error = raises_invalid("2 90 05 2A 004 012")
    assert "key is missing" in error.message
    assert INS.from_parts("290052A004012", None, InsOid.NIR).key == "66"


def test_wrong_key_is_refused_and_the_message_does_not_repeat_the_matricule() -> None:
    error = raises_invalid("290052A00401267")
    assert "key" in error.message
    assert "290052A004012" not in str(error)
    assert "lenient" in (error.hint or "")


@pytest.mark.parametrize("sex", "034589")
def test_impossible_sex_digits_are_refused(sex: str) -> None:
    body = sex + "90052A004012"
    error = raises_invalid(matricule_of(body))
    assert "sex" in error.message


def test_provisional_and_mig_numbers_are_named() -> None:
    assert "NNP" in raises_invalid(matricule_of("790052A004012")).message
    assert "MIG" in raises_invalid(matricule_of("590052A004012")).message


@pytest.mark.parametrize("month", ["00", "13", "19"])
def test_impossible_months_are_refused(month: str) -> None:
    body = f"290{month}2A004012"
    error = raises_invalid(matricule_of(body))
    assert "month" in error.message


@pytest.mark.parametrize("month", ["01", "12", "20", "42", "45", "50", "99"])
def test_unknown_month_values_are_accepted_by_default(month: str) -> None:
    assert INS.parse(matricule_of(f"290{month}99100012")).nir13[3:5] == month


def test_unknown_month_ranges_are_a_setting() -> None:
    strict = MatriculeRules(unknown_months=((20, 42), (50, 99)))
    assert INS.parse(matricule_of("2904299100012"), rules=strict).key_valid
    with pytest.raises(InvalidIdentifierError, match="20–42, 50–99"):
        INS.parse(matricule_of("2904599100012"), rules=strict)
    calendar_only = MatriculeRules(unknown_months=())
    with pytest.raises(InvalidIdentifierError, match="01–12"):
        INS.parse(matricule_of("2902099100012"), rules=calendar_only)


def test_sex_digits_are_a_setting() -> None:
    wider = MatriculeRules(sex_digits=frozenset("1234"))
    assert INS.parse(matricule_of("390052A004012"), rules=wider).nir13[0] == "3"


def test_born_abroad_department_99() -> None:
    ins = INS.parse(matricule_of("1850199350123"))  # 99 + country 350
    assert ins.nir13[5:7] == "99"


def test_a_letter_out_of_place_is_refused() -> None:
    assert "only digits" in raises_invalid("2900O2A00401266").message


def test_key_must_be_two_digits() -> None:
    with pytest.raises(InvalidIdentifierError, match="two digits"):
        INS.from_parts("290052A004012", "6", InsOid.NIR)
    with pytest.raises(InvalidIdentifierError, match="two digits"):
        INS.from_parts("290052A004012", "6X", InsOid.NIR)


def test_parse_takes_text_only() -> None:
    with pytest.raises(TypeError):
        INS.parse(290052400401266)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lenient reading


@pytest.mark.parametrize(
    ("matricule", "expected_key", "source"),
    [
        ("221042545611404", "83", "ANS CDA example CSE-CS24_2025.01.xml"),
        ("224027511583555", "12", "ANS CDA example CSE-CS24_2025.01.xml"),
        ("123456789012244", "12", "FR Core example"),
        ("181036322045660", "76", "CNDA TEST_2.08_cas2.xml, HERMANN GATIEN"),
        ("281036322045610", "26", "CNDA TEST_2.08_cas2.xml"),
        ("181016322075142", "40", "a Dart fixture's ADRDEUX LAURENT"),
    ],
)
def test_official_material_with_wrong_keys_is_read_leniently_and_flagged(
    matricule: str, expected_key: str, source: str
) -> None:
    with pytest.raises(InvalidIdentifierError):
        INS.parse(matricule)
    ins = INS.parse(matricule, lenient=True)
    assert not ins.key_valid, source
    assert ins.key == matricule[13:]
    assert ins.expected_key == expected_key
    assert "key_valid=False" in repr(ins)
    assert INS.model_validate(ins.model_dump()) == ins


def test_lenient_still_refuses_what_is_not_a_key_problem() -> None:
    with pytest.raises(InvalidIdentifierError, match="sex"):
        INS.parse("790052A00401200", lenient=True)
    with pytest.raises(InvalidIdentifierError):
        INS.parse("2900", lenient=True)


def test_writers_refuse_an_ins_with_a_wrong_key() -> None:
    ins = INS.parse("221042545611404", oid=InsOid.NIR_TEST, lenient=True)
    for write in (ins.to_cda_id, ins.to_xds_cx, ins.mssante_address):
        with pytest.raises(InvalidIdentifierError, match="key is wrong"):
            write()


def test_direct_construction_checks_key_consistency() -> None:
    assert INS(matricule="290052A00401266", oid=InsOid.NIR).key_valid
    with pytest.raises(InvalidIdentifierError, match="does not match"):
        INS(matricule="290052A00401267", oid=InsOid.NIR)
    assert not INS(matricule="290052A00401267", oid=InsOid.NIR, key_valid=False).key_valid
    with pytest.raises(InvalidIdentifierError, match="key_valid is False"):
        INS(matricule="290052A00401266", oid=InsOid.NIR, key_valid=False)
    with pytest.raises(InvalidIdentifierError, match="15 characters"):
        INS(matricule="2 90 05 2A 004 012 66", oid=InsOid.NIR)


# --------------------------------------------------------------------------- published test identities

# ins.md §2.9 and the ANS/DMP test patients: (birth name, matricule, OID, key right?)
TEST_IDENTITIES = [
    ("ADRUN ZOE", "275126322074974", InsOid.NIR, True),
    ("ADRTROIS DOMINIQUE", "297022A02077878", InsOid.NIR, True),
    ("ADRTROIS TOUSSAINT", "160012B02077713", InsOid.NIR, True),
    ("ADRDEUX LAURENT", "181016322075140", InsOid.NIR, True),
    ("TCHITCHI CATARINA", "236066322083656", InsOid.NIR, True),
    ("ECETINSI PIERRE-ALAIN", "109076322083489", InsOid.NIR, True),
    ("ECETINSI history", "209076322083439", InsOid.NIR, True),
    ("NESSI MICHELANGELO", "110086322083060", InsOid.NIR, True),
    ("CORSE ANTHONY", "180032B02040123", InsOid.NIR, True),
    ("HERMANN GATIEN", "181036322045660", InsOid.NIR, False),
    ("PROVISOIRE MATRICULE", "109076322088835", InsOid.NIA, True),
    ("PAT-TROIS DOMINIQUE", "279035121518989", InsOid.NIR_TEST, True),
    ("DMP kit test INS", "207058575627097", InsOid.NIR_TEST, True),
]


@pytest.mark.parametrize(("who", "matricule", "oid", "key_right"), TEST_IDENTITIES)
def test_every_published_test_identity_parses(who: str, matricule: str, oid: InsOid, key_right: bool) -> None:
    ins = INS.parse(matricule, oid=oid, lenient=True)
    assert ins.key_valid is key_right, who
    assert ins.kind is (InsKind.NIA if oid is InsOid.NIA else InsKind.NIR)
    if key_right:
        assert INS.parse(matricule, oid=oid) == ins


# --------------------------------------------------------------------------- OIDs and environments


def test_oid_facts() -> None:
    assert [o.value for o in InsOid] == [
        "1.2.250.1.213.1.4.8",
        "1.2.250.1.213.1.4.9",
        "1.2.250.1.213.1.4.10",
        "1.2.250.1.213.1.4.11",
    ]
    assert [o.is_test for o in InsOid] == [False, False, True, True]
    assert [o.kind for o in InsOid] == [InsKind.NIR, InsKind.NIA, InsKind.NIR, InsKind.NIR]


def test_oid_parse_accepts_urn_and_names_the_non_ins_oids() -> None:
    assert InsOid.parse("urn:oid:1.2.250.1.213.1.4.9") is InsOid.NIA
    assert InsOid.parse(" 1.2.250.1.213.1.4.11 ") is InsOid.NIR_DEMO
    with pytest.raises(InvalidIdentifierError, match="social-security"):
        InsOid.parse("1.2.250.1.213.1.4.13")
    with pytest.raises(InvalidIdentifierError, match="INS-C"):
        InsOid.parse("1.2.250.1.213.1.4.2")
    with pytest.raises(InvalidIdentifierError, match="not an INS OID"):
        InsOid.parse("1.2.250.1.213.1.4.5")


def test_kind_follows_the_oid_not_the_shape() -> None:
    assert INS.parse("109076322088835", oid=InsOid.NIA).kind is InsKind.NIA
    assert INS.parse("109076322088835", oid=InsOid.NIR).kind is InsKind.NIR


@pytest.mark.parametrize("oid", [InsOid.NIR_TEST, InsOid.NIR_DEMO])
def test_production_refuses_test_oids(oid: InsOid) -> None:
    with pytest.raises(InvalidIdentifierError, match="refused in production"):
        INS.parse("279035121518989", oid=oid, production=True)
    with pytest.raises(InvalidIdentifierError, match="refused in production"):
        INS.from_parts("2790351215189", "89", oid.value, production=True)


@pytest.mark.parametrize("oid", list(InsOid))
def test_outside_production_every_oid_is_accepted(oid: InsOid) -> None:
    # The INSi qualification platform answers with .8/.9 for its fictitious persons.
    assert INS.parse("279035121518989", oid=oid, production=False).oid is oid
    assert INS.parse("279035121518989", oid=oid).oid is oid


def test_production_accepts_real_oids() -> None:
    assert INS.parse("297022A02077878", oid=InsOid.NIR, production=True).is_test is False


# --------------------------------------------------------------------------- formats


def test_exchange_formats() -> None:
    ins = INS.parse("2 79 03 51 215 189 89", oid=InsOid.NIR_TEST)
    assert ins.to_cda_id() == ("1.2.250.1.213.1.4.10", "279035121518989")
    assert ins.to_xds_cx() == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert ins.mssante_address() == "279035121518989@patient.mssante.fr"
    assert ins.formatted() == "2 79 03 51 215 189 89"


def test_reading_back_the_exchange_formats() -> None:
    ins = INS.parse("297022A02077878")
    assert INS.from_xds_cx(ins.to_xds_cx()) == ins
    assert INS.from_xds_cx(f"'{ins.to_xds_cx()}^^20100907'") == ins
    assert INS.from_cda_id(*ins.to_cda_id()) == ins
    with pytest.raises(InvalidIdentifierError, match="NH"):
        INS.from_xds_cx("297022A02077878^^^&1.2.250.1.213.1.4.8&ISO^PI")
    with pytest.raises(InvalidIdentifierError, match="ISO"):
        INS.from_xds_cx("297022A02077878^^^1.2.250.1.213.1.4.8^NH")


# --------------------------------------------------------------------------- never in clear


@given(bodies(), st.sampled_from(list(InsOid)))
def test_repr_and_str_never_show_the_matricule(body: str, oid: InsOid) -> None:
    ins = INS.parse(matricule_of(body), oid=oid)
    for shown in (repr(ins), str(ins), ins.masked(), f"{ins}", repr([ins])):
        assert body not in shown
        assert body[1:13] not in shown
    assert ins.masked().startswith(body[0])
    assert ins.masked().endswith(ins.key)


def test_error_messages_never_repeat_the_matricule() -> None:
    bad = ["290052A00401267", "790052A00401266", "290002A00401266", "290052A0040126", "29005CA00401266"]
    for text in bad:
        error = raises_invalid(text)
        assert text[:13] not in str(error)
        assert text[1:12] not in str(error)


def test_ins_is_hashable_and_frozen() -> None:
    a, b = INS.parse("297022A02077878"), INS.parse("2 97 02 2A 020 778 78")
    assert a == b
    assert len({a, b}) == 1
    with pytest.raises(Exception, match="frozen"):
        a.matricule = "x"  # type: ignore[misc]


def test_matches_is_the_one_identity_comparison() -> None:
    from dmp_connector.xds import Cx

    ins = INS.parse("279035121518989", oid=InsOid.NIR_TEST)
    assert ins.matches(INS.parse("2 79 03 51 215 189 89", oid=InsOid.NIR_TEST))
    assert ins.matches(Cx.parse(ins.to_xds_cx()))
    assert ins.matches(Cx(id=ins.matricule, assigning_authority=InsOid.NIR_TEST.value))  # no identifier type
    assert not ins.matches(None)  # limited metadata names nobody
    assert not ins.matches(INS.parse("279035121518989", oid=InsOid.NIR))  # same digits, another authority
    assert not ins.matches(Cx(id=ins.matricule, assigning_authority=InsOid.NIR.value, id_type="NH"))
    assert not ins.matches(Cx.parse(INS.parse("275126322074974", oid=InsOid.NIR_TEST).to_xds_cx()))
    wrong_key = INS.parse("279035121518988", oid=InsOid.NIR_TEST, lenient=True)
    assert not ins.matches(wrong_key) and wrong_key.matches(wrong_key)
