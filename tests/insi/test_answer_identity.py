"""INSi 00 answers compared with the traits searched, by the RNIV rules: each rule on its own.

The client-level tests (tests/security/test_hostile_answers.py) show that a different person is
refused end to end; these pin down what counts as the same person, so that a rule too strict
(refusing a true match) or too loose (taking another person) shows here.
"""

from __future__ import annotations

import pytest

from dmp_connector.ins import INS, IdentityTraits, InsOid
from dmp_connector.ins.insi import InsiIdentity, SearchCriteria, searched_traits_problems

INS_TEST = INS.parse("2 75 05 99 134 012 67", oid=InsOid.NIR_TEST, lenient=True)


def traits(**changes: str) -> IdentityTraits:
    values = {
        "birth_name": "DE LA FONTAINE",
        "birth_first_names": "JEAN PIERRE",
        "sex": "M",
        "birth_date": "1975-05-14",
        "birth_place": "75056",
    }
    values.update(changes)
    return IdentityTraits.build(**values)


def answer(**changes: str) -> InsiIdentity:
    return InsiIdentity(active=INS_TEST, traits=traits(**changes))


@pytest.mark.parametrize(
    ("returned", "criteria", "problems"),
    [
        ({}, SearchCriteria(), []),
        ({"birth_name": "DELAFONTAINE"}, SearchCriteria(), []),  # separators only: the same name
        ({"birth_name": "DE LA FONTAINE-MARTIN"}, SearchCriteria(), ["birth_name"]),
        ({"birth_first_names": "JEAN PIERRE PAUL"}, SearchCriteria(), []),  # the first sent opens the list
        ({"birth_first_names": "PIERRE JEAN"}, SearchCriteria(), ["birth_first_names"]),
        ({"birth_first_names": "JEAN"}, SearchCriteria(all_first_names=True), ["birth_first_names"]),
        ({"sex": "F"}, SearchCriteria(), ["sex"]),
        ({"birth_date": "1975-05-15"}, SearchCriteria(), ["birth_date"]),
        ({"birth_place": "13055"}, SearchCriteria(), []),  # not sent: not compared
        ({"birth_place": "13055"}, SearchCriteria(birth_place=True), ["birth_place"]),
        ({"birth_place": "99999"}, SearchCriteria(birth_place=True), []),  # unknown place agrees
        ({"birth_name": "PROVISOIRE", "birth_first_names": "MATRICULE"}, SearchCriteria(), []),  # NIA placeholders
        ({"birth_name": "PROVISOIRE", "birth_first_names": "MATRICULE", "sex": "F"}, SearchCriteria(), ["sex"]),
    ],
)
def test_what_counts_as_the_person_searched(
    returned: dict[str, str], criteria: SearchCriteria, problems: list[str]
) -> None:
    assert searched_traits_problems(traits(), criteria, answer(**returned)) == problems


def test_an_unknown_part_of_a_birth_date_agrees() -> None:
    def born(date: str) -> IdentityTraits:
        return IdentityTraits.build(birth_name="DE LA FONTAINE", birth_first_names="JEAN", sex="M", birth_date=date)

    assert searched_traits_problems(born("00/00/1975"), SearchCriteria(), answer()) == []
    other_year = born("00/00/1976")
    assert searched_traits_problems(other_year, SearchCriteria(), answer()) == ["birth_date"]
