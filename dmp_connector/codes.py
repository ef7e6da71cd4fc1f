"""Coded values shared by every service (HL7 CE/CD, XDS ``Code``, VIHF roles)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RPPS_SPECIALTY_SYSTEM", "XDS_AUTHOR_SPECIALTY_SYSTEM", "Code", "professional_specialty"]

RPPS_SPECIALTY_SYSTEM: Final = "1.2.250.1.71.4.2.5"
"""Code system of a professional's specialty (the RPPS savoir-faire, e.g. ``SM26``), as the VIHF role
carries it [V DRIMbox ``ProvideAndRegisterRequest.java``, the ANS/CNAM editor kit]."""
XDS_AUTHOR_SPECIALTY_SYSTEM: Final = "1.2.250.1.213.1.1.4.5"
"""Code system of the CDA author code and the XDS authorSpecialty: JDV_J01 (TRE_A02 ``G15_<profession>/<specialty>``)
as the ANS CDA kit's value set gives it."""

# An OID, or one of the symbolic XDS coding schemes ("URN", "ASTM") the DMP's signature entry uses.
_CODE_SYSTEM = r"^([0-2](\.(0|[1-9][0-9]*))+|URN|ASTM)$"


class Code(BaseModel):
    """A code from a national terminology, with the OID of its code system.

    One type for the CDA ``code/@code/@codeSystem``, the XDS ``Code`` and the VIHF
    role, so that a code read from one is written to the other without mapping.
    """

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    code: str = Field(min_length=1)
    """The code itself, e.g. ``SA07`` or ``10``."""
    code_system: str = Field(pattern=_CODE_SYSTEM)
    """OID of the code system (``1.2.250.1.71.4.2.4`` for TRE_R02 …); XDS also knows the symbolic
    coding schemes ``URN`` and ``ASTM``, which the DMP's submission-set signature entry uses."""
    display_name: str | None = None
    """Human label; optional on the wire, required by some volets."""

    @classmethod
    def of(cls, code: str, code_system: str, display_name: str | None = None) -> Code:
        """Positional shorthand for constants: ``Code.of("SA07", "1.2.250.1.71.4.2.4", "Cabinet")``."""
        return cls(code=code, code_system=code_system, display_name=display_name)


def professional_specialty(code: str, display_name: str | None = None) -> Code:
    """A professional's specialty for ``Professional.specialty``: ``professional_specialty("SM26")``.

    The one mapping of a specialty: the VIHF role carries this code under
    :data:`RPPS_SPECIALTY_SYSTEM`; the CDA author code and the XDS authorSpecialty are the JDV_J01
    code ``G15_<profession>/<code>`` under :data:`XDS_AUTHOR_SPECIALTY_SYSTEM`, derived from it by
    ``dmp_connector.cda.author_specialty``. Give the specialty once, here; never a code system by hand.
    """
    return Code(code=code, code_system=RPPS_SPECIALTY_SYSTEM, display_name=display_name)


from dmp_connector._help import document_fields  # noqa: E402 - after the models it documents

document_fields(globals()[name] for name in __all__ if name in globals())
