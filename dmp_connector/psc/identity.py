"""The professional PSC vouches for, as typed data read from the userinfo answer.

PSC's userinfo carries the RPPS record: one or more *exercices* (a profession, a
specialty), each with one or more *activities* (a practice place: structure ids, sector,
name). A DMP or MSSanté call acts for one activity: :meth:`Professional.activity_at`
chooses the one at the practice's structure and says clearly when there is none.

PSC writes an absent datum as ``""`` rather than leaving the key out [V]: it is read as
None here, never as a value. ``repr`` shows no name nor id (identity stays out of logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.codes import Code, professional_specialty
from dmp_connector.config import Organisation, ProfessionalIdKind, StructureIdKind
from dmp_connector.config import Professional as SettingsProfessional
from dmp_connector.errors import MalformedResponseError

from .errors import NoMatchingActivityError

__all__ = ["Activity", "Exercise", "Professional"]

_FROZEN = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="ignore")
PROFESSION_SYSTEM = "1.2.250.1.71.1.2.7"
"""TRE_G15 professions (``codeProfession``)."""
SECTOR_SYSTEM = "1.2.250.1.71.4.2.4"
"""TRE_R02 activity sectors (``codeSecteurDactivite``)."""


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise MalformedResponseError(f"PSC userinfo: {key} is not a string", hint="check psc.issuer")
    return value.strip()


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponseError(f"PSC userinfo: {what} is not an object")
    return value


class Activity(BaseModel):
    """One place where an exercise is practised (PSC ``activities[]``)."""

    model_config = _FROZEN

    structure_id: str | None = None
    """``ancienIdentifiantDeLaStructure``: the national structure id (kind prefix + id), as the VIHF carries it."""
    technical_id: str | None = None
    """``identifiantTechniqueDeLaStructure`` (RPPS technical id, ``R95141`` …)."""
    finess_site: str | None = None
    """``numeroFinessSite``."""
    name: str | None = None
    """``raisonSocialeSite``."""
    sector: str | None = None
    """``codeSecteurDactivite`` (TRE_R02, ``SA07`` …)."""
    mode: str | None = None
    """``codeModeExercice`` (``L`` libéral, ``S`` salarié …)."""
    role: str | None = None
    """``codeRole``."""
    genre: str | None = None
    """``codeGenreActivite``."""
    pharmacist_section: str | None = None
    """``codeSectionPharmacien``."""
    postal_code: str | None = None
    """``codePostal``."""

    def __repr__(self) -> str:
        return f"Activity(sector={self.sector!r}, mode={self.mode!r})"

    @classmethod
    def from_userinfo(cls, data: Mapping[str, Any]) -> Activity:
        """Read one ``activities[]`` object."""
        return cls(
            structure_id=_text(data, "ancienIdentifiantDeLaStructure"),
            technical_id=_text(data, "identifiantTechniqueDeLaStructure"),
            finess_site=_text(data, "numeroFinessSite"),
            name=_text(data, "raisonSocialeSite"),
            sector=_text(data, "codeSecteurDactivite"),
            mode=_text(data, "codeModeExercice"),
            role=_text(data, "codeRole"),
            genre=_text(data, "codeGenreActivite"),
            pharmacist_section=_text(data, "codeSectionPharmacien"),
            postal_code=_text(data, "codePostal"),
        )

    def matches(self, structure: str) -> bool:
        """Whether ``structure`` (national id, FINESS, technical id or exact name) names this activity."""
        wanted = structure.strip()
        ids = {self.structure_id, self.technical_id, self.finess_site}
        if self.finess_site:
            ids.add("1" + self.finess_site)
        return wanted in ids or (self.name is not None and wanted.casefold() == self.name.casefold())

    def organisation(self) -> Organisation:
        """The activity's structure as the SDK's :class:`~dmp_connector.config.Organisation` (VIHF, CDA)."""
        national = self.structure_id or (("1" + self.finess_site) if self.finess_site else None)
        if not national or len(national) < 2:
            raise NoMatchingActivityError(
                "the chosen PSC activity has no national structure id (ancienIdentifiantDeLaStructure)",
                hint="choose an activity at a registered structure",
            )
        try:
            kind = StructureIdKind(national[0])
        except ValueError:
            raise NoMatchingActivityError("the PSC activity's structure id has an unknown kind prefix") from None
        return Organisation(
            id=national[1:],
            id_kind=kind,
            name=self.name or national,
            activity_sector=Code.of(self.sector, SECTOR_SYSTEM) if self.sector else None,
        )


class Exercise(BaseModel):
    """One profession the professional exercises (PSC ``exercices[]``)."""

    model_config = _FROZEN

    profession: str | None = None
    """``codeProfession`` (TRE_G15: ``10`` médecin, ``21`` pharmacien …)."""
    category: str | None = None
    """``codeCategorieProfessionnelle`` (``C`` civil …)."""
    title: str | None = None
    """``codeCiviliteDexercice`` (``DR`` …)."""
    family_name: str | None = None
    """``nomDexercice``."""
    given_name: str | None = None
    """``prenomDexercice``."""
    skill_kind: str | None = None
    """``codeTypeSavoirFaire`` (``S`` specialty …)."""
    skill: str | None = None
    """``codeSavoirFaire`` (``SM26`` …)."""
    activities: tuple[Activity, ...] = ()
    """Where it is practised."""

    def __repr__(self) -> str:
        return f"Exercise(profession={self.profession!r}, skill={self.skill!r}, activities={len(self.activities)})"

    @classmethod
    def from_userinfo(cls, data: Mapping[str, Any]) -> Exercise:
        """Read one ``exercices[]`` object."""
        activities = data.get("activities")
        activities = [] if activities is None or activities == "" else activities
        if not isinstance(activities, list):
            raise MalformedResponseError("PSC userinfo: activities is not a list")
        return cls(
            profession=_text(data, "codeProfession"),
            category=_text(data, "codeCategorieProfessionnelle"),
            title=_text(data, "codeCiviliteDexercice"),
            family_name=_text(data, "nomDexercice"),
            given_name=_text(data, "prenomDexercice"),
            skill_kind=_text(data, "codeTypeSavoirFaire"),
            skill=_text(data, "codeSavoirFaire"),
            activities=tuple(Activity.from_userinfo(_object(a, "an activity")) for a in activities),
        )


class Professional(BaseModel):
    """The professional logged in through PSC: national id, names, exercises and activities."""

    model_config = _FROZEN

    national_id: str = Field(min_length=2)
    """``SubjectNameID`` (``8`` + RPPS): the VIHF's NameID."""
    subject: str
    """The OIDC ``sub``."""
    family_name: str | None = None
    """``family_name``."""
    given_name: str | None = None
    """``given_name``."""
    auth_mode: str | None = None
    """``authMode`` (``CARD``, ``MOBILE`` …): how they authenticated."""
    exercises: tuple[Exercise, ...] = ()
    """``SubjectRefPro.exercices``."""

    def __repr__(self) -> str:
        return f"Professional(exercises={len(self.exercises)}, auth_mode={self.auth_mode!r})"

    __str__ = __repr__

    @classmethod
    def from_userinfo(cls, data: Mapping[str, Any]) -> Professional:
        """Read PSC's userinfo JSON; a missing ``sub`` or national id is a :class:`MalformedResponseError`."""
        subject = _text(data, "sub")
        national = _text(data, "SubjectNameID") or _text(data, "preferred_username")
        if subject is None or national is None:
            raise MalformedResponseError("PSC userinfo has no sub or SubjectNameID", hint="check psc.scope")
        ref = data.get("SubjectRefPro")
        ref = {} if ref is None or ref == "" else ref
        if not isinstance(ref, Mapping):
            raise MalformedResponseError("PSC userinfo: SubjectRefPro is not an object")
        exercises = ref.get("exercices")
        exercises = [] if exercises is None or exercises == "" else exercises
        if not isinstance(exercises, list):
            raise MalformedResponseError("PSC userinfo: exercices is not a list")
        return cls(
            national_id=national,
            subject=subject,
            family_name=_text(data, "family_name"),
            given_name=_text(data, "given_name"),
            auth_mode=_text(data, "authMode"),
            exercises=tuple(Exercise.from_userinfo(_object(e, "an exercise")) for e in exercises),
        )

    def activities(self) -> list[tuple[Exercise, Activity]]:
        """Every (exercise, activity) pair, in PSC's order."""
        return [(exercise, activity) for exercise in self.exercises for activity in exercise.activities]

    def activity_at(self, structure: str | Organisation) -> tuple[Exercise, Activity]:
        """The exercise and activity practised at ``structure`` (an :class:`Organisation`, a national id,
        FINESS, RPPS technical id or exact name), or :class:`NoMatchingActivityError`.

        Several matches in different exercises are ambiguous and refused too: the software must ask
        which profession the user acts in (pass the exercise's activity explicitly then).
        """
        wanted = structure.national_id if isinstance(structure, Organisation) else structure
        found = [(e, a) for e, a in self.activities() if a.matches(wanted)]
        if not found:
            raise NoMatchingActivityError(
                f"none of the professional's {len(self.activities())} PSC activities is at the practice's structure",
                hint="check organisation.id against the structure the professional is registered at in the RPPS, "
                "or let the user choose among Professional.activities()",
            )
        if len({id(e) for e, _ in found}) > 1:
            raise NoMatchingActivityError(
                "the professional practises several professions at this structure: choose the exercise explicitly"
            )
        return found[0]

    def as_settings_professional(self, exercise: Exercise) -> SettingsProfessional:
        """``exercise`` as the SDK's :class:`~dmp_connector.config.Professional` (VIHF subject, CDA author)."""
        if exercise not in self.exercises:
            raise NoMatchingActivityError("the exercise is not one of this professional's")
        kind = ProfessionalIdKind.RPPS if self.national_id.startswith("8") else ProfessionalIdKind.ADELI
        if exercise.profession is None:
            raise NoMatchingActivityError("the PSC exercise has no profession code (codeProfession)")
        return SettingsProfessional(
            id=self.national_id[1:],
            id_kind=kind,
            family_name=exercise.family_name or self.family_name or "-",
            given_name=exercise.given_name or self.given_name or "-",
            profession=Code.of(exercise.profession, PROFESSION_SYSTEM),
            specialty=professional_specialty(exercise.skill) if exercise.skill else None,
        )
