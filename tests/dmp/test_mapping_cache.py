"""The submission author and the derived sourceId are made once per configuration (issue 22): the same values."""

from __future__ import annotations

import pytest

from dmp_connector.dmp.mapping import derived_oid, source_id, submission_author
from dmp_connector.xds import Author, Xcn, Xon
from tests.dmp.client_support import SETTINGS


def _made_now(organisation_name: str, organisation_id: str, professional: tuple[str, str, str]) -> Author:
    return Author(
        person=Xcn.national_professional(*professional),
        institutions=(Xon.national_structure(organisation_name, organisation_id),),
    )


def test_the_author_is_the_one_made_from_the_settings_every_time() -> None:
    organisation, professional = SETTINGS.organisation, SETTINGS.professional
    assert organisation is not None and professional is not None
    expected = _made_now(
        organisation.name,
        organisation.national_id,
        (professional.national_id, professional.family_name, professional.given_name),
    )
    assert submission_author(SETTINGS) == expected
    assert submission_author(SETTINGS) == expected  # from the cache
    other = SETTINGS.model_copy(update={"professional": professional.model_copy(update={"family_name": "MARTIN"})})
    assert submission_author(other).person == Xcn.national_professional(
        professional.national_id, "MARTIN", professional.given_name
    )
    assert submission_author(SETTINGS) == expected


def test_an_invalid_configured_author_is_refused_each_time() -> None:
    professional = SETTINGS.professional
    assert professional is not None
    bad = SETTINGS.model_copy(update={"professional": professional.model_copy(update={"family_name": "A^B"})})
    for _ in range(2):
        with pytest.raises(ValueError, match="family_name"):
            submission_author(bad)


def test_the_derived_source_id_is_derived_oids() -> None:
    software = SETTINGS.software
    expected = derived_oid("2.25", "source-id", software.name, software.editor)
    unset = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"source_id": None})})
    assert source_id(unset) == expected
    assert source_id(unset) == expected
    renamed = unset.model_copy(update={"software": software.model_copy(update={"name": software.name + " 2"})})
    assert source_id(renamed) == derived_oid("2.25", "source-id", software.name + " 2", software.editor)
