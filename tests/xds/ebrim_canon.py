"""A generic reading of ebRIM 3.0 objects, independent of the SDK's model, to compare two messages.

The corpus test reads a message with the SDK, writes it back, and compares both with this module:
every registry object by id, with its attributes (schema defaults applied), slots, names and
descriptions (value, ``xml:lang``, ``charset``), version, classifications (nested or at list level)
and external identifiers. Values are compared trimmed, as ebRIM/XDS readers trim them. Not compared:
the ids of classifications and external identifiers (the writer derives them from the entry) and the
``Name`` of an external identifier (TF-3 fixes it: ``XDSDocumentEntry.uniqueId`` …).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lxml import etree

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_OBJECTS = ("ExtrinsicObject", "RegistryPackage", "Association", "ObjectRef")
_ATTRIBUTES = ("lid", "home", "status", "objectType", "mimeType", "associationType", "sourceObject", "targetObject")
_DEFAULTS = {
    # rim.xsd's default, and ebRIM 3.0's objectType of every RegistryPackage and Association
    # (the writer leaves them out, as the registry knows them).
    ("ExtrinsicObject", "mimeType"): "application/octet-stream",
    # An ExtrinsicObject without objectType is read as a stable entry (the only kind before On-Demand).
    ("ExtrinsicObject", "objectType"): "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1",
    ("RegistryPackage", "objectType"): "urn:oasis:names:tc:ebxml-regrep:objecttype:registryobject:registrypackage",
    ("Association", "objectType"): "urn:oasis:names:tc:ebxml-regrep:objecttype:registryobject:association",
}
# HL7 v2 values (CX, XCN, XON): trailing empty components and subcomponents carry nothing (HL7 v2.5
# section 2.5.5.2 lets a sender leave them out), so "^Smitty^Gerald^^^" and "^Smitty^Gerald" are equal.
_HL7_SLOTS = frozenset(
    {"authorPerson", "authorInstitution", "legalAuthenticator", "sourcePatientId", "intendedRecipient"}
)
_HL7_IDENTIFIERS = frozenset(
    {
        "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
        "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
        "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a",
    }
)


def _hl7(value: str) -> str:
    return "^".join(component.rstrip("&") for component in value.split("^")).rstrip("^")


def _tag(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _rim(element: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in element if isinstance(c.tag, str) and c.tag == f"{{{RIM}}}{name}"]


def _slots(element: etree._Element) -> tuple[tuple[str, tuple[str, ...]], ...]:
    slots = []
    for slot in _rim(element, "Slot"):
        name = (slot.get("name") or "").strip()
        values = tuple((v.text or "").strip() for vl in _rim(slot, "ValueList") for v in _rim(vl, "Value"))
        if name in _HL7_SLOTS:
            values = tuple(_hl7(v) for v in values)
        elif name == "size" and all(v.isdigit() for v in values):
            values = tuple(str(int(v)) for v in values)  # a number of bytes: "061224" is 61224
        slots.append((name, values))
    return tuple(sorted(slots))


def _strings(element: etree._Element, name: str) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (s.get(XML_LANG) or "", (s.get("charset") or "").upper(), s.get("value") or "")
        for holder in _rim(element, name)
        for s in _rim(holder, "LocalizedString")
    )


def _classification(element: etree._Element) -> tuple[Any, ...]:
    return (
        "".join((element.get("classificationScheme") or "").split()).lower(),
        "".join((element.get("classificationNode") or "").split()).lower(),
        (element.get("nodeRepresentation") or "").strip(),
        _slots(element),
        _strings(element, "Name"),
    )


def _identifier(element: etree._Element) -> tuple[str, str]:
    scheme = "".join((element.get("identificationScheme") or "").split()).lower()
    value = (element.get("value") or "").strip()
    return scheme, _hl7(value) if scheme in _HL7_IDENTIFIERS else value


def registry_objects(registry_object_list: etree._Element) -> dict[str, dict[str, Any]]:
    """Every object of a ``rim:RegistryObjectList`` by id, in a form two messages can be compared in."""
    loose_classifications: dict[str, list[tuple[Any, ...]]] = {}
    loose_identifiers: dict[str, list[tuple[str, str]]] = {}
    for child in registry_object_list:
        if _tag(child) == "Classification":
            owner = (child.get("classifiedObject") or "").strip()
            loose_classifications.setdefault(owner, []).append(_classification(child))
        elif _tag(child) == "ExternalIdentifier":
            owner = (child.get("registryObject") or "").strip()
            loose_identifiers.setdefault(owner, []).append(_identifier(child))
    found: dict[str, dict[str, Any]] = {}
    for child in registry_object_list:
        kind = _tag(child)
        if kind not in _OBJECTS:
            continue
        object_id = (child.get("id") or "").strip()
        attributes = {}
        for name in _ATTRIBUTES:
            value = (child.get(name) or "").strip() or _DEFAULTS.get((kind, name), "")
            if name == "objectType":
                value = value.lower()
            if value:
                attributes[name] = value
        versions = [v.get("versionName") for v in _rim(child, "VersionInfo")]
        classifications = [_classification(c) for c in _rim(child, "Classification")]
        classifications += loose_classifications.get(object_id, [])
        identifiers = [_identifier(c) for c in _rim(child, "ExternalIdentifier")] + loose_identifiers.get(object_id, [])
        found[object_id] = {
            "kind": kind,
            "attributes": attributes,
            "slots": _slots(child),
            "name": _strings(child, "Name"),
            "description": _strings(child, "Description"),
            "version": versions[0] if versions else None,
            "classifications": Counter(classifications),
            "identifiers": Counter(identifiers),
        }
    return found


def differences(before: etree._Element, after: etree._Element) -> list[str]:
    """What differs between the objects of two RegistryObjectLists, one line per object and part."""
    old, new = registry_objects(before), registry_objects(after)
    found = [f"{i}: lost" for i in old if i not in new] + [f"{i}: added" for i in new if i not in old]
    for object_id, parts in old.items():
        other = new.get(object_id)
        if other is None:
            continue
        for part, value in parts.items():
            if other[part] != value:
                if isinstance(value, Counter):
                    lost, added = value - other[part], other[part] - value
                    found.append(f"{object_id}: {part} lost {list(lost)[:2]} added {list(added)[:2]}")
                else:
                    found.append(f"{object_id}: {part} {value!r} -> {other[part]!r}")
    return found
