"""The DMP's reinforced indirect mode (AIR, ``INDIRECTE_RENFORCEE``) from a PSC login.

The public implementations build the AIR VIHF from PSC's userinfo (reference notes
``psc.md`` §7, DRIMbox): NameID = ``SubjectNameID``; ``Identifiant_Structure`` = the
chosen activity's ``ancienIdentifiantDeLaStructure``; ``Secteur_Activite`` = its
``codeSecteurDactivite``; roles = the exercise's ``codeProfession`` and
``codeSavoirFaire``; ``subject-id`` = ``prénom nom`` of the exercise;
``AuthnContextClassRef`` ``…:TLSClient`` with ``AuthnContextDecl`` ``APP_BROWSER_AUTH``.
The PSC token itself goes neither in the VIHF nor in any header to the DMP [V].

:func:`air_settings` returns the settings a :class:`~dmp_connector.dmp.DmpClient` is
opened with for that professional: nothing else in the DMP client changes. The access
mode is chosen per transaction (``dmp.authentication_modes``): AIR for consultation and
``INDIRECTE`` for deposit, delete and administration, as DRIMbox does; change it there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from dmp_connector.config import DmpTransaction, Organisation, Settings
from dmp_connector.errors import ConfigurationError

from .client import AsyncPscSession, PscSession
from .identity import Activity, Exercise, Professional

__all__ = ["DEFAULT_AIR_MODES", "air_settings"]

_Mode = Literal["DIRECTE", "INDIRECTE", "INDIRECTE_RENFORCEE"]
_SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"

DEFAULT_AIR_MODES: Mapping[DmpTransaction, _Mode] = {
    "consultation": "INDIRECTE_RENFORCEE",
    "deposit": "INDIRECTE",
    "delete": "INDIRECTE",
    "administration": "INDIRECTE",
}
"""DRIMbox's choice [V]: AIR for consultation, indirect for deposit and delete (administration: [I])."""


def air_settings(
    settings: Settings,
    who: PscSession | AsyncPscSession | Professional,
    *,
    structure: str | Organisation | None = None,
    activity: tuple[Exercise, Activity] | None = None,
    modes: Mapping[DmpTransaction, _Mode] | None = None,
) -> Settings:
    """``settings`` for DMP calls made by the PSC-logged-in professional at the practice's structure.

    The activity is the one at ``structure`` (default: ``settings.organisation``), or the
    ``activity`` given (from :meth:`Professional.activities`, when the user chose it). Raises
    :class:`~dmp_connector.psc.NoMatchingActivityError` when the professional has none there.
    """
    professional = who if isinstance(who, Professional) else who.professional
    if activity is None:
        wanted = structure if structure is not None else settings.organisation
        if wanted is None:
            raise ConfigurationError(
                "AIR needs the practice's structure to choose the PSC activity",
                hint="set [organisation] or pass structure=",
            )
        activity = professional.activity_at(wanted)
    exercise, chosen = activity
    organisation = chosen.organisation()
    pro = professional.as_settings_professional(exercise)
    overrides = dict(settings.signing.vihf_attribute_overrides)
    if settings.psc.air_subject_id == "given_family":  # always this professional's, never a previous one's
        overrides[_SUBJECT_ID] = f"{pro.given_name} {pro.family_name}"
    dmp = settings.dmp.model_copy(
        update={"authentication_modes": dict(modes if modes is not None else DEFAULT_AIR_MODES)}
    )
    signing_update: dict[str, object] = {"vihf_attribute_overrides": overrides}
    if not isinstance(who, Professional):  # the VIHF's AuthnInstant is when this professional logged in at PSC
        signing_update["vihf_authn_instant"] = who.auth_time
    signing = settings.signing.model_copy(update=signing_update)
    return settings.model_copy(
        update={"professional": pro, "organisation": organisation, "dmp": dmp, "signing": signing}
    )
