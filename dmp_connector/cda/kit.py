"""Which ANS CDA conformance kit a folder holds, and what it lacks — before a validation finds out.

The SDK is tested with the **TestContenuCDA 3.0 kit as of 2025-10** (ANS commit ``4b488ae1``,
2025-10-10), published by the ANS on GitHub (``ansforge/TestContenuCDA-3-0``, now
``ansforge/interop-outil-cda-testcontenucda3.0-outil-validation-documents-cda``). The vendor
downloads it and gives its folder to the validator (``[cda] kit_dir`` or ``--kit``);
:func:`describe_kit` (``dmp-connector cda kit DIR``) tells which kit a folder is, by the volet
schematrons it carries, and which parts are missing: the CDA schema, the kit-wide and volet
schematrons, the value sets the schematrons name, the kit's own schematron engine
(``schematrons/moteur``), the examples, and the Saxon engine of the ``validation`` extra.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from .validation import GENERIC_SCHEMATRONS

__all__ = ["KIT_REPOSITORY", "TESTED_KIT", "KitDescription", "describe_kit"]

KIT_REPOSITORY = "https://github.com/ansforge/TestContenuCDA-3-0"
"""Where the ANS publishes the kit (the repository now also answers as
``ansforge/interop-outil-cda-testcontenucda3.0-outil-validation-documents-cda``)."""
TESTED_KIT = "TestContenuCDA 3.0, 2025-10 (ANS commit 4b488ae1, 2025-10-10)"
"""The kit the SDK's tests run every example and schematron of."""

_KNOWN: tuple[tuple[str, str], ...] = (
    ("CI-SIS_CANCER-FRCP_2025.01.sch", TESTED_KIT),
    ("CI-SIS_VSM_2023.01.sch", "TestContenuCDA 3.0 older than 2025-10 (e.g. 2025-02, ANS commit 7cd489b)"),
)
"""Kits by a volet schematron that first appeared in them, newest first."""
_ENGINE = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
_VALUE_SET_REFERENCE = re.compile(r"jeuxDeValeurs/([A-Za-z0-9_.\-]+\.xml)")


@dataclass(frozen=True)
class KitDescription:
    """What :func:`describe_kit` found in a kit folder."""

    root: Path
    kit: str
    """Which kit it is (:data:`TESTED_KIT` for the one the SDK is tested with), or why it is not recognised."""
    tested: bool
    """True when it is the kit the SDK is tested with."""
    schema: bool
    """``infrastructure/cda/CDA_extended.xsd`` is there."""
    volet_schematrons: int
    """``schematrons/CI-SIS_<volet>_<version>.sch`` files."""
    generic_schematrons: tuple[str, ...]
    """The kit-wide schematrons present (StrucMin, IHE …)."""
    value_sets: int
    """``jeuxDeValeurs/*.xml`` files."""
    missing_value_sets: tuple[str, ...]
    """Value sets the schematrons name that the folder lacks (names compared case-insensitively)."""
    engine: bool
    """The kit's own ISO schematron skeleton (``schematrons/moteur/iso_*.xsl``) is there."""
    examples: int
    """``ExemplesCDA/*.xml`` files."""
    saxon: bool
    """saxonche (the ``validation`` extra), which runs the schematrons, is installed."""
    lacks: tuple[str, ...] = field(default=())
    """What is missing, one line each, in words."""

    @property
    def usable(self) -> bool:
        """Schema and schematrons are there: ``cda validate`` can run (with saxonche for the schematrons)."""
        return self.schema and self.volet_schematrons > 0 and len(self.generic_schematrons) == len(GENERIC_SCHEMATRONS)


def describe_kit(root: str | Path) -> KitDescription:
    """Describe the kit folder ``root``: which kit it is and what it lacks (it reads names, not contents, except
    the schematrons' references to value sets)."""
    folder = Path(root).expanduser()
    schematrons = folder / "schematrons"
    volets = sorted(p.name for p in schematrons.glob("CI-SIS_*.sch")) if schematrons.is_dir() else []
    kit = next((name for marker, name in _KNOWN if marker in volets), None)
    if kit is None:
        kit = "not a TestContenuCDA 3.0 kit" if not volets else "a kit this SDK does not recognise"
    generic = tuple(name for name, path in GENERIC_SCHEMATRONS.items() if (schematrons / path).is_file())
    value_files = list((folder / "jeuxDeValeurs").glob("*.xml"))
    have = {p.name.lower() for p in value_files}
    named: set[str] = set()
    if schematrons.is_dir():
        for path in schematrons.rglob("*.sch"):
            named.update(_VALUE_SET_REFERENCE.findall(path.read_text(encoding="utf-8", errors="replace")))
    missing = tuple(sorted(name for name in named if name.lower() not in have))
    engine = all((schematrons / "moteur" / name).is_file() for name in _ENGINE)
    examples = len(list((folder / "ExemplesCDA").glob("*.xml")))
    saxon = importlib.util.find_spec("saxonche") is not None
    schema = (folder / "infrastructure" / "cda" / "CDA_extended.xsd").is_file()
    lacks: list[str] = []
    if not folder.is_dir():
        lacks.append(f"the folder {folder} does not exist")
    if not schema:
        lacks.append("the CDA schema infrastructure/cda/CDA_extended.xsd")
    if not volets:
        lacks.append("the volet schematrons schematrons/CI-SIS_*.sch")
    lacks += [
        f"the kit-wide schematron {name} ({GENERIC_SCHEMATRONS[name]})"
        for name in GENERIC_SCHEMATRONS
        if name not in generic
    ]
    if not have:
        lacks.append("the value sets jeuxDeValeurs/*.xml")
    if missing:
        shown = ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
        lacks.append(f"{len(missing)} of the {len(named)} value sets the schematrons name ({shown})")
    if not engine:
        lacks.append("the kit's schematron engine schematrons/moteur/iso_*.xsl (only needed to cross-check ours)")
    if not examples:
        lacks.append("the examples ExemplesCDA/*.xml")
    if not saxon:
        lacks.append("saxonche, which runs the schematrons: pip install 'dmp-connector[validation]'")
    return KitDescription(
        root=folder,
        kit=kit,
        tested=kit == TESTED_KIT,
        schema=schema,
        volet_schematrons=len(volets),
        generic_schematrons=generic,
        value_sets=len(value_files),
        missing_value_sets=missing,
        engine=engine,
        examples=examples,
        saxon=saxon,
        lacks=tuple(lacks),
    )
