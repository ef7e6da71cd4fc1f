"""Writing a read model back: its element as read, with only the changed parts written anew.

Each model that has an element of its own is described by a table of *parts*: a key, how
to get the part's value from the model's fields, and which children of the element hold
it. When a read model has changed, :func:`patch` takes a copy of the element as read and,
for each part whose value differs from the one read, replaces the children that held it
with the children a fresh rendering of the model has there (inserting them in schema
order when the element had none). Whatever no changed part covers — null flavors,
translations, ``originalText``, comments, white space, an attribute the model does not
know — stays as it was.

A table that missed a field would write a changed value nowhere; :func:`patch` is
therefore followed by a re-reading of the result (``build._emit``), and a result that
does not read back as the model is replaced by the fresh rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree

from dmp_connector.ins import InsOid

from ._namespaces import HL7, copy_element, hl7, local_name
from .model import (
    OTHER_HEADER_ELEMENTS,
    AssignedEntity,
    AssociatedEntity,
    Author,
    ClinicalDocument,
    Encounter,
    HealthCareFacility,
    InformationRecipient,
    LegalAuthenticator,
    Organization,
    Participant,
    Patient,
    Performer,
    Section,
    ServiceEvent,
    StructuredBody,
    _Model,
)

__all__ = ["PARTS", "Part", "patch"]

Fields = Mapping[str, Any]
Selector = Callable[[etree._Element], list[etree._Element]]

_INS_ROOTS: Final = frozenset(oid.value for oid in InsOid)


@dataclass(frozen=True)
class Part:
    """One part of a model's element: a value and the children (or attribute) that hold it."""

    key: str
    get: Callable[[Fields], Any]
    parent: str = ""
    """Path (local names, ``/``-separated) from the element to the children's parent; empty: the element."""
    select: Selector | None = None
    """The part's children among the parent's; None for an attribute part."""
    attribute: str | None = None
    """The attribute that holds the part, for an attribute part."""
    inner: str | None = None
    """For children that only wrap one element each (``component/section``): that element's name. When the
    counts agree, each wrapper as read is kept and only what it wraps is replaced."""


def _named(*names: str) -> Selector:
    tags = frozenset(hl7(n) for n in names)
    return lambda parent: [c for c in parent if c.tag in tags]


def _first(name: str) -> Selector:
    tag = hl7(name)

    def select(parent: etree._Element) -> list[etree._Element]:
        found = parent.find(tag)
        return [] if found is None else [found]

    return select


def _untyped(typed: frozenset[str], *, skip_first: str | None = None) -> Selector:
    """Children the model keeps as raw XML: other namespaces, or CDA names it does not type."""

    def select(parent: etree._Element) -> list[etree._Element]:
        skip = parent.find(hl7(skip_first)) if skip_first is not None else None
        return [
            c
            for c in parent
            if isinstance(c.tag, str)
            and c is not skip
            and not (c.tag.startswith(f"{{{HL7}}}") and local_name(c) in typed)
        ]

    return select


def _field(key: str, name: str | None = None, *, parent: str = "", first: bool = False) -> Part:
    return Part(key, lambda f: f[key], parent, (_first if first else _named)(name or key))


def _attribute(key: str, attribute: str) -> Part:
    return Part(key, lambda f: f[key], attribute=attribute)


def _ins_id(parent: etree._Element) -> list[etree._Element]:
    for child in parent.iterchildren(hl7("id")):
        if (child.get("root") or "").strip() in _INS_ROOTS and child.get("extension"):
            return [child]
    return []


def _other_ids(parent: etree._Element) -> list[etree._Element]:
    ins = _ins_id(parent)
    return [c for c in parent.iterchildren(hl7("id")) if c not in ins]


def _all_ids(key: str) -> Part:
    return Part(key, lambda f: f[key], "", _named("id"))


_PATIENT_TYPED: Final = frozenset({"name", "administrativeGenderCode", "birthTime", "birthplace"})
_ROLE_TYPED: Final = frozenset({"id", "addr", "telecom", "patient"})
_EVENT_TYPED: Final = frozenset({"id", "code", "effectiveTime"})
_ENCOUNTER_TYPED: Final = frozenset({"id", "code", "effectiveTime", "location"})
_SECTION_TYPED: Final = frozenset({"templateId", "id", "code", "title", "text", "entry", "component"})


def _traits(f: Fields) -> Any:
    return f["identity"].traits


PARTS: Final[Mapping[type[_Model], Sequence[Part]]] = {
    ClinicalDocument: (
        _field("template_ids", "templateId"),
        _field("id", first=True),
        _field("type_code", "code", first=True),
        _field("title", first=True),
        _field("effective_time", "effectiveTime", first=True),
        _field("confidentiality", "confidentialityCode", first=True),
        _field("language", "languageCode", first=True),
        Part("set_id", lambda f: f["set_id"] or f["id"], "", _first("setId")),
        _field("version", "versionNumber", first=True),
        _field("patient", "patientRole", parent="recordTarget", first=True),
        _field("authors", "author"),
        _field("custodian", "representedCustodianOrganization", parent="custodian/assignedCustodian", first=True),
        _field("information_recipients", "informationRecipient"),
        _field("legal_authenticator", "legalAuthenticator", first=True),
        _field("participants", "participant"),
        Part("service_events", lambda f: f["service_events"], "", _named("documentationOf"), inner="serviceEvent"),
        _field("replaces", "relatedDocument", first=True),
        _field("encounter", "encompassingEncounter", parent="componentOf", first=True),
        _field("body", "component", first=True),
        Part("other_header", lambda f: f["other_header"], "", _named(*OTHER_HEADER_ELEMENTS)),
    ),
    Patient: (
        Part("ins", lambda f: f["identity"].ins, "", _ins_id),
        Part("other_ids", lambda f: f["other_ids"], "", _other_ids),
        _field("addresses", "addr"),
        _field("telecoms", "telecom"),
        Part(
            "name",
            lambda f: (
                _traits(f).birth_name,
                _traits(f).birth_first_names,
                _traits(f).used_name,
                _traits(f).used_first_name,
                f["name_prefix"],
                f["usage_name"],
            ),
            "patient",
            _first("name"),
        ),
        Part("sex", lambda f: _traits(f).sex, "patient", _first("administrativeGenderCode")),
        Part("birth_date", lambda f: _traits(f).birth_date, "patient", _first("birthTime")),
        Part("birth_place", lambda f: (_traits(f).birth_place, f["birth_place_name"]), "patient", _first("birthplace")),
        Part("extras", lambda f: f["extras"], "patient", _untyped(_PATIENT_TYPED)),
        Part("role_extras", lambda f: f["role_extras"], "", _untyped(_ROLE_TYPED)),
    ),
    Author: (
        _field("function_code", "functionCode", first=True),
        _field("time", first=True),
        _field("entity", "assignedAuthor", first=True),
    ),
    LegalAuthenticator: (
        _field("time", first=True),
        _field("entity", "assignedEntity", first=True),
    ),
    AssignedEntity: (
        _field("id", first=True),
        _field("code", first=True),
        _field("addresses", "addr"),
        _field("telecoms", "telecom"),
        _field("person", "name", parent="assignedPerson", first=True),
        _field("device", "assignedAuthoringDevice", first=True),
        _field("organization", "representedOrganization", first=True),
    ),
    Organization: (
        _field("id", first=True),
        _field("name", first=True),
        _field("telecoms", "telecom"),
        _field("addresses", "addr"),
        _field("industry_class", "standardIndustryClassCode", first=True),
    ),
    Performer: (
        _field("template_ids", "templateId"),
        _field("function_code", "functionCode", first=True),
        _field("time", first=True),
        _field("entity", "assignedEntity", first=True),
    ),
    ServiceEvent: (
        _attribute("class_code", "classCode"),
        _all_ids("ids"),
        Part("code", lambda f: (f["code"], f["code_translations"]), "", _first("code")),
        _field("effective_time", "effectiveTime", first=True),
        _field("performer", "performer", first=True),
        Part("extras", lambda f: f["extras"], "", _untyped(_EVENT_TYPED, skip_first="performer")),
    ),
    Encounter: (
        _all_ids("ids"),
        _field("code", first=True),
        _field("effective_time", "effectiveTime", first=True),
        _field("facility", "healthCareFacility", parent="location", first=True),
        Part("extras", lambda f: f["extras"], "", _untyped(_ENCOUNTER_TYPED)),
    ),
    HealthCareFacility: (
        _field("id", first=True),
        _field("code", first=True),
        _field("place_name", "name", parent="location", first=True),
        _field("place_address", "addr", parent="location", first=True),
    ),
    Participant: (
        _attribute("type_code", "typeCode"),
        _field("template_ids", "templateId"),
        _field("function_code", "functionCode", first=True),
        _field("time", first=True),
        _field("entity", "associatedEntity", first=True),
    ),
    AssociatedEntity: (
        _attribute("class_code", "classCode"),
        _all_ids("ids"),
        _field("code", first=True),
        _field("addresses", "addr"),
        _field("telecoms", "telecom"),
        _field("person", "name", parent="associatedPerson", first=True),
        _field("organization", "scopingOrganization", first=True),
    ),
    InformationRecipient: (
        _attribute("type_code", "typeCode"),
        _field("ids", "id", parent="intendedRecipient"),
        _field("addresses", "addr", parent="intendedRecipient"),
        _field("telecoms", "telecom", parent="intendedRecipient"),
        _field("person", "name", parent="intendedRecipient/informationRecipient", first=True),
        _field("organization", "receivedOrganization", parent="intendedRecipient", first=True),
    ),
    Section: (
        _attribute("xml_id", "ID"),
        _field("template_ids", "templateId"),
        _field("id", first=True),
        _field("code", first=True),
        _field("title", first=True),
        _field("text", first=True),
        Part("extras", lambda f: f["extras"], "", _untyped(_SECTION_TYPED)),
        _field("entries", "entry"),
        Part("subsections", lambda f: f["subsections"], "", _named("component"), inner="section"),
    ),
    StructuredBody: (
        Part("sections", lambda f: f["sections"], "structuredBody", _named("component"), inner="section"),
    ),
}


def covered_fields(model: type[_Model]) -> frozenset[str]:
    """The fields of ``model`` whose change some part of its table writes (for the tests)."""
    probe: dict[str, Any] = {}

    class _Recorder(dict[str, Any]):
        def __missing__(self, key: str) -> Any:
            probe[key] = True
            return _Anything()

    for part in PARTS[model]:
        try:
            part.get(_Recorder())
        except Exception:  # noqa: S112 - a getter that walks into a sub-object records its field first
            continue
    return frozenset(probe)


class _Anything:
    def __getattr__(self, name: str) -> _Anything:
        return self


def changed_parts(model: type[_Model], now: Fields, before: Fields) -> list[Part]:
    """The parts of ``model``'s table whose value differs between two sets of fields."""
    return [part for part in PARTS[model] if part.get(now) != part.get(before)]


def patch(original: etree._Element, fresh: etree._Element, parts: Sequence[Part]) -> etree._Element:
    """A copy of ``original`` where each part's children are those ``fresh`` has there."""
    out = copy_element(original)
    out.tail = None
    for part in parts:
        if part.attribute is not None:
            value = fresh.get(part.attribute)
            if value is None:
                if part.attribute in out.attrib:
                    del out.attrib[part.attribute]
            else:
                out.set(part.attribute, value)
            continue
        assert part.select is not None
        _replace(out, fresh, part.parent, part.select, part.inner)
    return out


def _find(element: etree._Element, path: str) -> etree._Element | None:
    if not path:
        return element
    return element.find("/".join(hl7(step) for step in path.split("/")))


def _replace(out: etree._Element, fresh: etree._Element, path: str, select: Selector, inner: str | None = None) -> None:
    target, source = _find(out, path), _find(fresh, path)
    if target is None:
        # The element as read lacks the parent: write the parent's first step from the fresh rendering.
        first, _, _ = path.partition("/")
        _replace(out, fresh, "", _named(first))
        return
    olds = select(target)
    news = select(source) if source is not None else []
    if inner is not None and olds and len(olds) == len(news):
        pairs = [(o.find(hl7(inner)), n.find(hl7(inner))) for o, n in zip(olds, news, strict=True)]
        if all(o is not None and n is not None for o, n in pairs):
            olds, news = [o for o, _ in pairs if o is not None], [n for _, n in pairs if n is not None]
    if olds:
        # One for one in place, so that a comment or an untyped element between two of them keeps its place.
        for old, new in zip(olds, news, strict=False):
            new.tail = old.tail
            parent = old.getparent()
            assert parent is not None
            parent.replace(old, new)
        for old in olds[len(news) :]:
            parent = old.getparent()
            assert parent is not None
            parent.remove(old)
        if len(news) > len(olds):
            anchor = news[len(olds) - 1]
            parent = anchor.getparent()
            assert parent is not None
            index = parent.index(anchor)
            for offset, new in enumerate(news[len(olds) :], start=1):
                new.tail = anchor.tail
                parent.insert(index + offset, new)
        return
    if not news:
        return
    assert source is not None
    order = list(dict.fromkeys(local_name(c) for c in source if isinstance(c.tag, str)))
    rank = {name: i for i, name in enumerate(order)}
    mine = rank.get(local_name(news[0]), len(order))
    position = 0
    for i, child in enumerate(target):
        if isinstance(child.tag, str) and rank.get(local_name(child), len(order)) <= mine:
            position = i + 1
    # The new children take the white space that precedes them, so that an indented document stays indented.
    tail = target[position - 1].tail if position > 0 else target.text
    for offset, new in enumerate(news):
        new.tail = tail
        target.insert(position + offset, new)
    if position > 0:
        target[position - 1].tail = tail


def kept(original: etree._Element, tag: str) -> etree._Element:
    """A copy of an element as read, renamed to ``tag`` (a model read in one place may be written in another)."""
    out = copy_element(original)
    out.tail = None
    if local_name(out) != tag:
        out.tag = hl7(tag)
    return out
