"""The typed professional from PSC's userinfo, read from the userinfo example the reference notes quote
(ANS's generate-VIHF test data), and the AIR settings derived from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dmp_connector.config import Organisation, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import MalformedResponseError
from dmp_connector.psc import NoMatchingActivityError, Professional, air_settings

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "psc.md"


@pytest.fixture(scope="module")
def userinfo() -> dict[str, Any]:
    if not REFERENCE.exists():
        pytest.skip(f"the reference notes are not at {REFERENCE}")
    block = re.search(r"```json\n(.*?)\n```", REFERENCE.read_text(encoding="utf-8"), re.S)
    assert block is not None, "psc.md has no userinfo example"
    data: dict[str, Any] = json.loads(block.group(1))
    return data


def test_the_reference_example_reads_as_typed_data(userinfo: dict[str, Any]) -> None:
    pro = Professional.from_userinfo(userinfo)
    assert pro.national_id == "899700366240" and pro.auth_mode == "CARD"
    [(exercise, activity)] = pro.activities()
    assert (exercise.profession, exercise.category, exercise.skill) == ("10", "C", "SM26")
    assert (exercise.given_name, exercise.family_name) == ("KIT", "DOC0036624")
    assert activity.structure_id == "499700366240007" and activity.technical_id == "R95141"
    assert activity.sector == "SA07" and activity.name == "CABINET M DOC0036624"
    assert activity.finess_site is None and activity.pharmacist_section is None  # PSC's "" is absent, not a value
    assert "899700366240" not in repr(pro) and "DOC0036624" not in repr(pro) + str(pro)


def test_activity_matching_by_each_kind_of_structure_id(userinfo: dict[str, Any]) -> None:
    pro = Professional.from_userinfo(userinfo)
    for structure in ("499700366240007", "R95141", "cabinet m doc0036624"):
        assert pro.activity_at(structure)[1].technical_id == "R95141"
    org = Organisation(id="99700366240007", id_kind=StructureIdKind.RPPS_RANG, name="Cabinet")
    assert pro.activity_at(org)[1].structure_id == "499700366240007"
    with pytest.raises(NoMatchingActivityError):
        pro.activity_at("1123456789")


def test_air_settings_from_the_reference_example(userinfo: dict[str, Any]) -> None:
    pro = Professional.from_userinfo(userinfo)
    base = Settings(
        software=SoftwareIdentity(name="LPS", version="1", editor="E"),
        organisation=Organisation(id="99700366240007", id_kind=StructureIdKind.RPPS_RANG, name="Mon cabinet"),
    )
    air = air_settings(base, pro)
    assert air.professional is not None and air.organisation is not None
    assert air.professional.national_id == "899700366240"  # NameID = SubjectNameID
    assert air.organisation.national_id == "499700366240007"  # ancienIdentifiantDeLaStructure
    assert air.organisation.activity_sector is not None and air.organisation.activity_sector.code == "SA07"
    assert air.professional.specialty is not None and air.professional.specialty.code == "SM26"
    assert air.dmp.authentication_modes["consultation"] == "INDIRECTE_RENFORCEE"
    assert air.dmp.authentication_modes["deposit"] == "INDIRECTE"
    assert air.signing.vihf_attribute_overrides["urn:oasis:names:tc:xspa:1.0:subject:subject-id"] == "KIT DOC0036624"
    kept = air_settings(base, pro, modes={"consultation": "INDIRECTE_RENFORCEE", "deposit": "INDIRECTE_RENFORCEE"})
    assert kept.dmp.authentication_modes["deposit"] == "INDIRECTE_RENFORCEE"


def test_several_exercises_at_one_structure_are_ambiguous(userinfo: dict[str, Any]) -> None:
    data = json.loads(json.dumps(userinfo))
    exercise = data["SubjectRefPro"]["exercices"][0]
    data["SubjectRefPro"]["exercices"].append({**exercise, "codeProfession": "21", "codeSavoirFaire": ""})
    pro = Professional.from_userinfo(data)
    with pytest.raises(NoMatchingActivityError, match="several professions"):
        pro.activity_at("R95141")


@pytest.mark.parametrize(
    "broken",
    [
        {"sub": ""},
        {"SubjectNameID": "", "preferred_username": ""},
        {"SubjectRefPro": []},
        {"SubjectRefPro": {"exercices": {}}},
        {"given_name": 12},
        {"SubjectRefPro": {"exercices": ["10"]}},
        {"SubjectRefPro": {"exercices": [{"codeProfession": "10", "activities": [None]}]}},
    ],
)
def test_malformed_userinfo_is_a_typed_error(userinfo: dict[str, Any], broken: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponseError):
        Professional.from_userinfo({**userinfo, **broken})
