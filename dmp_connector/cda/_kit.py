"""The ANS CDA conformance kit on disk: where its parts are, and its schema compiled once.

The kit (``TestContenuCDA``) is official data the vendor downloads and configures with
``CdaSettings.kit_dir``; the SDK ships none of it and never writes into it.

This is the one module of the package that uses lxml's own parser (for the XSD, whose
``xs:include``/``xs:import`` must resolve relative to the file): the kit is trusted data the
vendor installed, and the parser still has network access, DTD loading and entity
expansion off. Documents to validate never come here: they go through
:func:`dmp_connector.xml.parse_xml`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from dmp_connector.errors import ConfigurationError

__all__ = ["Kit", "load_schema"]

_XSD = Path("infrastructure", "cda", "CDA_extended.xsd")
_HINT = (
    "set [cda] kit_dir (or DMP_CONNECTOR_CDA__KIT_DIR) to the folder of the ANS TestContenuCDA kit,"
    " which holds infrastructure/cda/CDA_extended.xsd, schematrons/ and jeuxDeValeurs/"
)


@dataclass(frozen=True)
class Kit:
    """The parts of a kit folder the validator uses."""

    root: Path

    @property
    def xsd(self) -> Path:
        """``infrastructure/cda/CDA_extended.xsd``: the CDA schema with the French extensions."""
        return self.root / _XSD

    @property
    def schematrons(self) -> Path:
        """``schematrons/``: one ``CI-SIS_<volet>_<version>.sch`` per volet, and ``profils/``."""
        return self.root / "schematrons"

    @property
    def value_sets(self) -> Path:
        """``jeuxDeValeurs/``: the value sets, as IHE SVS XML files."""
        return self.root / "jeuxDeValeurs"

    @classmethod
    def locate(cls, kit_dir: Path | None, *, schema: bool = True, schematrons: bool = True) -> Kit:
        """The kit at ``kit_dir``, or a :class:`ConfigurationError` saying what is missing."""
        if kit_dir is None:
            raise ConfigurationError("no CDA conformance kit is configured", hint=_HINT)
        root = Path(os.path.expanduser(kit_dir))
        if not root.is_dir():
            raise ConfigurationError(f"the CDA kit folder {root} does not exist", hint=_HINT)
        kit = cls(root)
        needed = [("the CDA schema", kit.xsd, schema), ("the schematrons folder", kit.schematrons, schematrons)]
        for what, path, wanted in needed:
            if wanted and not path.exists():
                raise ConfigurationError(
                    f"the CDA kit at {root} is incomplete: {what} {path.relative_to(root)} is missing", hint=_HINT
                )
        return kit


_schemas: dict[Path, etree.XMLSchema] = {}
_schemas_lock = threading.Lock()


def load_schema(path: Path) -> etree.XMLSchema:
    """``CDA_extended.xsd`` compiled once per process (about 0.03 s); thread-safe."""
    key = path.resolve()
    with _schemas_lock:
        schema = _schemas.get(key)
        if schema is None:
            parser = etree.XMLParser(  # noqa: TID251 - trusted kit file, see the docstring
                no_network=True, resolve_entities=False, load_dtd=False, huge_tree=False
            )
            try:
                tree = etree.parse(str(key), parser)  # noqa: TID251 - trusted kit file, see the docstring
                schema = etree.XMLSchema(tree)
            except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
                raise ConfigurationError(
                    f"the CDA schema {path.name} of the kit cannot be loaded: {exc}", hint=_HINT
                ) from exc
            _schemas[key] = schema
        return schema
