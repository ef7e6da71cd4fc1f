"""Coded values shared by every service (HL7 CE/CD, XDS ``Code``, VIHF roles)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Code"]

# An OID, or one of the symbolic XDS coding schemes ("URN", "ASTM") the DMP's signature entry uses.
_CODE_SYSTEM = r"^([0-2](\.(0|[1-9][0-9]*))+|URN|ASTM)$"


class Code(BaseModel):
    """A code from a national terminology, with the OID of its code system.

    One type for the CDA ``code/@code/@codeSystem``, the XDS ``Code`` and the VIHF
    role, so that a code read from one is written to the other without mapping.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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
