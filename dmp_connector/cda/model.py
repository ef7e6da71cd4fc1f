"""The typed model of a CI-SIS CDA R2 document: header, bodies, sections and entries.

Every model here is a frozen pydantic model that refuses unknown fields. A model that
exists obeys the rules that every CI-SIS document obeys (a time zone on every date-time,
an end after its start, an INS only for a qualified identity with all its traits, the
code systems the reference fixes, a PDF that looks like a PDF). The rules that depend on
the current value sets, and the INS key, are checked by :func:`dmp_connector.cda.build`,
so that any document received can still be read into the model.

Every failure is a :class:`dmp_connector.errors.ValidationError` whose ``problems`` name
each field that failed; pydantic's own error never escapes. No message repeats the value.

How the header maps onto the XML (``ClinicalDocument`` children, in schema order)::

    realmCode FR, typeId            constants
    templateId*                     template_ids
    id, code, title                 id, type_code, title
    effectiveTime                   effective_time        (time zone required)
    confidentialityCode, languageCode, setId, versionNumber
                                    confidentiality, language, set_id, version
    recordTarget                    patient               (Identity + local ids)
    author+                         authors
    custodian                       custodian
    informationRecipient*           information_recipients
    legalAuthenticator              legal_authenticator
    participant*                    participants
    documentationOf+                service_events
    relatedDocument RPLC            replaces
    componentOf                     encounter
    component                       body                  (StructuredBody | NonXmlBody)
    dataEnterer, informant, authenticator, inFulfillmentOf, authorization
                                    other_header          (kept as XML, rebuilt in place)

Structured bodies: a :class:`Section` holds its narrative as a :class:`Narrative` and its
entries as :class:`Entry` objects. The volet packages implement typed entries (any object
with ``to_element()``) and register a reader per templateId with
:func:`register_entry_reader`; :func:`dmp_connector.cda.parse` gives every entry no reader
claims back as a :class:`RawEntry`, which rebuilds byte for byte the same element.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol, Self, runtime_checkable

import pydantic
from lxml import etree
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dmp_connector.codes import XDS_AUTHOR_SPECIALTY_SYSTEM, Code
from dmp_connector.errors import ValidationError
from dmp_connector.ins import Identity, IdentityStatus, InsOid

from ._namespaces import HL7, fragment_text, local_name, new_root, parse_fragment
from ._source import Source

if TYPE_CHECKING:
    from dmp_connector.config import Organisation, Professional, Settings

__all__ = [
    "CISIS_TEMPLATE",
    "CONFIDENTIALITY_SYSTEM",
    "HL7_FRANCE_TEMPLATE",
    "IDNAT_PS",
    "IDNAT_STRUCT",
    "LOINC",
    "MON_ESPACE_SANTE_CUSTODIAN",
    "NORMAL",
    "XDS_SD_TEMPLATE",
    "Address",
    "AddressPart",
    "AddressPartKind",
    "AssignedEntity",
    "AssociatedEntity",
    "Author",
    "ClinicalDocument",
    "Device",
    "Encounter",
    "Entry",
    "EntryReader",
    "HealthCareFacility",
    "InformationRecipient",
    "InstanceId",
    "LegalAuthenticator",
    "Narrative",
    "NonXmlBody",
    "Organization",
    "Participant",
    "Patient",
    "Performer",
    "Period",
    "PersonName",
    "RawElement",
    "RawEntry",
    "Section",
    "ServiceEvent",
    "StructuredBody",
    "Telecom",
    "Timestamp",
    "new_oid",
    "read_entry",
    "register_entry_reader",
]

# --------------------------------------------------------------------------- constants

HL7_FRANCE_TEMPLATE: Final = "2.16.840.1.113883.2.8.2.1"
"""templateId of conformance to the HL7 France CDA rules (exactly one per document)."""
CISIS_TEMPLATE: Final = "1.2.250.1.213.1.1.1.1"
"""templateId of conformance to the CI-SIS header rules (exactly one per document)."""
XDS_SD_TEMPLATE: Final = "1.3.6.1.4.1.19376.1.2.20"
"""IHE XDS-SD templateId, mandatory on a non-structured (PDF) document, which takes no volet templateId."""
IDNAT_PS: Final = "1.2.250.1.71.4.2.1"
"""OID of the professionals' national ids (IdNat_PS: ``8`` + RPPS, ``0`` + ADELI)."""
IDNAT_STRUCT: Final = "1.2.250.1.71.4.2.2"
"""OID of the organisations' national ids (IdNat_Struct: ``1`` + FINESS, ``3`` + SIRET …)."""
MON_ESPACE_SANTE_CUSTODIAN: Final = "1.2.250.1.213.4.1"
"""Custodian id root of documents a patient produces (hosted by Mon espace santé)."""
LOINC: Final = "2.16.840.1.113883.6.1"
"""LOINC, the code system of most document types."""
TYPE_DOC_COMPLEMENTAIRE: Final = "1.2.250.1.213.1.1.4.12"
"""TRE_A05-TypeDocComplementaire, the French document types LOINC lacks (``SYNTH`` …)."""
CONFIDENTIALITY_SYSTEM: Final = "2.16.840.1.113883.5.25"
"""HL7 Confidentiality, the only code system of ``confidentialityCode`` (N, R, V)."""
NORMAL: Final = Code.of("N", CONFIDENTIALITY_SYSTEM, "Normal")
"""Confidentiality ``N``, what every ANS example carries; DMP masking codes go in the XDS metadata."""
GENDER_SYSTEM: Final = "2.16.840.1.113883.5.1"
"""HL7 AdministrativeGender, the code system of the patient's sex (JDV_J143)."""
TRE_A00_PRODUCTEUR_NON_PS: Final = "1.2.250.1.213.1.1.4.6"
"""TRE_A00-ProducteurDocNonPS: ``EXP_PATIENT``, ``SNR`` … allowed next to professional codes."""
TRE_R02_SECTEUR_ACTIVITE: Final = "1.2.250.1.71.4.2.4"
"""TRE_R02-SecteurActivite, the code system of care facility types (JDV_J02)."""
TRE_A01_CADRE_EXERCICE: Final = "1.2.250.1.213.1.1.4.9"
"""TRE_A01-CadreExercice, the code system of practice settings (JDV_J04)."""

_INS_ROOTS: Final = frozenset(oid.value for oid in InsOid)

# An OID, or a UUID (the examples use UUID roots for some parent documents).
_OID = r"[0-2](?:\.(?:0|[1-9][0-9]*))+"
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_II_ROOT = re.compile(rf"^(?:{_OID}|{_UUID})$")
_WHITESPACE: Final = re.compile(r"\s")  # str.isspace, one C call per id instead of a generator


def new_oid() -> str:
    """A fresh, globally unique OID under ``2.25`` (an OID made from a random UUID, ISO/IEC 9834-8).

    44 characters at most, under the 64 that an XDS ``uniqueId`` allows; used for document ids
    and set ids when the caller has no OID branch of its own.
    """
    return f"2.25.{uuid.uuid4().int}"


# --------------------------------------------------------------------------- errors and base

_READING: ContextVar[bool] = ContextVar("dmp_connector_cda_reading", default=False)


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """While reading a received document: accept what the rules forbid but documents carry.

    Only one thing is relaxed: a date-time without time zone (one ANS example has one). The
    builder refuses such a document; :func:`parse` must still read it.
    """
    token = _READING.set(True)
    try:
        yield
    finally:
        _READING.reset(token)


def _translate(exc: pydantic.ValidationError, model: str) -> ValidationError:
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or model
        problems.append(f"{where}: {err['msg']}")
    return ValidationError(f"invalid {model}: " + "; ".join(problems), problems=problems)


class _Model(BaseModel):
    """Frozen, closed, and failing with our :class:`ValidationError` rather than pydantic's."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    _source: Source | None = PrivateAttr(default=None)
    """The element this model was read from (set by :func:`~dmp_connector.cda.parse`); see ``_source.py``."""

    def __init__(self, /, **data: Any) -> None:
        # What BaseModel.__init__ does, without its frame and a second packing of ``data`` (issue 22: some 3 k
        # instructions a model, forty models a document read); a validator giving another instance than ``self``
        # (none of ours does) goes through BaseModel.__init__ again, which validates the same and warns.
        try:
            validated = self.__pydantic_validator__.validate_python(data, self_instance=self)
            if validated is not self:
                super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _translate(exc, type(self).__name__) from None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _use_source_post_init(cls)


def _init_source(self: BaseModel, context: Any, /) -> None:
    """The post-init pydantic generates for a model whose one private attribute is ``_source`` (default None).

    pydantic's own (``init_private_attributes``, wrapped once more per subclass level) runs twice per model and
    looks the default up through ``PrivateAttr.get_default`` each time: about half of what building a small model
    costs (issue 22). This sets the same ``__pydantic_private__`` in one step.
    """
    if getattr(self, "__pydantic_private__", None) is None:
        object.__setattr__(self, "__pydantic_private__", {"_source": None})


def _generated_post_init(function: Any) -> bool:
    """Whether ``function`` is pydantic's generated private-attribute post-init (possibly wrapped), or ours."""
    while function is not None and function is not _init_source:
        if getattr(function, "__qualname__", None) == "init_private_attributes" and getattr(
            function, "__module__", ""
        ).startswith("pydantic."):
            return True
        function = getattr(function, "__wrapped__", None)
    return function is _init_source


def _use_source_post_init(cls: type[BaseModel]) -> None:
    """Give ``cls`` :func:`_init_source` as its post-init when that is exactly what pydantic generated for it.

    Only when its private attributes are ``_source`` alone, with default None, and no class of its own
    hierarchy defines a ``model_post_init`` of its own (pydantic wraps a user-defined one: that is kept).
    """
    private = cls.__private_attributes__
    if set(private) != {"_source"} or private["_source"].get_default(call_default_factory=True) is not None:
        return
    for klass in cls.__mro__:
        if klass is BaseModel:
            break
        own = vars(klass).get("model_post_init")
        if own is not None and not _generated_post_init(own):
            return
    cls.model_post_init = _init_source  # type: ignore[method-assign]


_use_source_post_init(_Model)


def _fail(problems: list[str], what: str) -> None:
    if problems:
        raise ValidationError(f"invalid {what}: " + "; ".join(problems), problems=problems)


# --------------------------------------------------------------------------- raw XML


class RawElement(_Model):
    """An element the model does not type, kept as XML so that a rebuilt document still holds it.

    ``xml`` is the element with only the namespace declarations it uses; it is checked to be
    well-formed on construction (through the hardened parser).
    """

    xml: str = Field(min_length=1)
    """The element as text."""

    @field_validator("xml")
    @classmethod
    def _well_formed(cls, value: str) -> str:
        parse_fragment(value, what="a kept XML element")
        return value

    @property
    def name(self) -> str:
        """The element's local name."""
        return local_name(self.to_element())

    def to_element(self) -> etree._Element:
        """A fresh lxml element."""
        return parse_fragment(self.xml, what="a kept XML element")

    @classmethod
    def from_element(cls, element: etree._Element) -> RawElement:
        """Keep ``element`` (and its subtree) as it is."""
        return cls(xml=fragment_text(element))


# --------------------------------------------------------------------------- times


def _coerce_time(value: Any) -> Any:
    """ISO text (JSON, TOML strings) to ``date`` (10 characters) or ``datetime``; objects pass."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(
                "a time is an ISO 8601 date (YYYY-MM-DD) or date-time with offset (YYYY-MM-DDTHH:MM:SS+01:00)"
            ) from None
    return value


def _require_zone(value: datetime | date, info: ValidationInfo) -> datetime | date:
    if isinstance(value, datetime) and value.utcoffset() is None and not _READING.get():
        owner = (info.config or {}).get("title")
        field = f"{owner}.{info.field_name}" if owner and info.field_name else info.field_name or "time"
        raise ValidationError(
            f"{field}: a date-time without time zone is refused (CI-SIS requires YYYYMMDDHHMMSS+ZZZZ)",
            problems=(f"{field}: date-time without time zone",),
            hint="give an aware datetime, e.g. datetime.now(ZoneInfo('Europe/Paris'))",
        )
    return value


Timestamp = Annotated[datetime | date, BeforeValidator(_coerce_time), AfterValidator(_require_zone)]
"""A CDA ``TS``: a date, or a date-time that carries its time zone (a naive one is refused)."""


def _instant(value: datetime | date) -> datetime:
    """A comparable instant: a date counts as its midnight, naive read values as UTC."""
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else value.replace(tzinfo=None)
    return datetime(value.year, value.month, value.day)


def _before(a: datetime | date, b: datetime | date) -> bool:
    """True when ``b`` is strictly before ``a``'s start (dates compare by day)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        if (a.utcoffset() is None) != (b.utcoffset() is None):
            return False
        return b < a
    return (b.date() if isinstance(b, datetime) else b) < (a.date() if isinstance(a, datetime) else a)


class Period(_Model):
    """A CDA ``IVL_TS``: a start and/or an end, or a single point (``@value``).

    ``<effectiveTime><low value="20240110093000+0100"/><high value="…"/></effectiveTime>``
    """

    low: Timestamp | None = None
    """Start (``low``)."""
    high: Timestamp | None = None
    """End (``high``); refused when before the start."""
    value: Timestamp | None = None
    """A single point in time (``@value``), for participants whose time is not an interval."""
    null_flavor: str | None = Field(default=None, min_length=1)
    """``@nullFlavor`` (``UNK``, ``NA``, ``MSK`` …): a time that is unknown or does not apply, kept as said."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.low is not None and self.high is not None and _before(self.low, self.high):
            raise ValidationError(
                "the end of a period is before its start", problems=("period.high: before period.low",)
            )
        if self.low is None and self.high is None and self.value is None and self.null_flavor is None:
            raise ValidationError(
                "a period needs a start, an end, a value or a null flavor", problems=("period: empty",)
            )
        return self

    @classmethod
    def unknown(cls, null_flavor: str = "UNK") -> Period:
        """A time that is not known (``nullFlavor="UNK"``) or does not apply (``"NA"``)."""
        return cls(null_flavor=null_flavor)


# --------------------------------------------------------------------------- data types


class InstanceId(_Model):
    """A CDA ``II``: ``<id root="1.2.250.1.71.4.2.1" extension="801234567897"/>``."""

    root: str
    """An OID (or a UUID, as some received documents use)."""
    extension: str | None = Field(default=None, min_length=1)
    """The id within ``root``'s namespace, if ``root`` is not the whole id."""

    @field_validator("root")
    @classmethod
    def _root(cls, value: str) -> str:
        if _READING.get() and value and _WHITESPACE.search(value) is None:
            return value  # received documents hold malformed UUIDs (ANS examples); kept as read
        if not _II_ROOT.match(value):
            raise ValidationError("an id root is an OID (digits and dots) or a UUID", problems=("id.root",))
        return value

    @classmethod
    def of(cls, root: str, extension: str | None = None) -> InstanceId:
        """Positional shorthand."""
        return cls(root=root, extension=extension)


def _as_instance_id(value: Any) -> Any:
    return InstanceId(root=value) if isinstance(value, str) else value


TemplateId = Annotated[InstanceId, BeforeValidator(_as_instance_id)]
"""A templateId: an :class:`InstanceId` whose ``extension`` is the volet version; plain text is the root."""


class PersonName(_Model):
    """A professional's or contact's name (``PN``): one family name, at most one given name.

    ``<name><prefix>M</prefix><given>Marcel</given><family>CAMPARINI</family><suffix>DR</suffix></name>``
    """

    family: str = Field(min_length=1)
    """Family name."""
    given: str | None = Field(default=None, min_length=1)
    """Given name."""
    prefix: str | None = Field(default=None, min_length=1)
    """Civility (JDV_J245: ``M``, ``MME``)."""
    suffix: str | None = Field(default=None, min_length=1)
    """Title (JDV_J246: ``DR``, ``PR`` …)."""


class AddressPartKind(StrEnum):
    """The CDA address parts (ADXP), named as the XML elements."""

    DELIMITER = "delimiter"
    COUNTRY = "country"
    STATE = "state"
    COUNTY = "county"
    CITY = "city"
    POSTAL_CODE = "postalCode"
    STREET_ADDRESS_LINE = "streetAddressLine"
    HOUSE_NUMBER = "houseNumber"
    HOUSE_NUMBER_NUMERIC = "houseNumberNumeric"
    DIRECTION = "direction"
    STREET_NAME = "streetName"
    STREET_NAME_BASE = "streetNameBase"
    STREET_NAME_TYPE = "streetNameType"
    ADDITIONAL_LOCATOR = "additionalLocator"
    UNIT_ID = "unitID"
    UNIT_TYPE = "unitType"
    CARE_OF = "careOf"
    CENSUS_TRACT = "censusTract"
    DELIVERY_ADDRESS_LINE = "deliveryAddressLine"
    DELIVERY_INSTALLATION_TYPE = "deliveryInstallationType"
    DELIVERY_INSTALLATION_AREA = "deliveryInstallationArea"
    DELIVERY_INSTALLATION_QUALIFIER = "deliveryInstallationQualifier"
    DELIVERY_MODE = "deliveryMode"
    DELIVERY_MODE_IDENTIFIER = "deliveryModeIdentifier"
    BUILDING_NUMBER_SUFFIX = "buildingNumberSuffix"
    POST_BOX = "postBox"
    PRECINCT = "precinct"


class AddressPart(_Model):
    """One part of an address, e.g. ``<city>PARIS</city>``."""

    kind: AddressPartKind
    """Which part."""
    value: str
    """Its text."""


class Address(_Model):
    """A postal address (``AD``) as an ordered list of parts, or a null flavor.

    ``<addr use="WP"><houseNumber>8</houseNumber><streetName>Rue X</streetName><postalCode>92100</postalCode>…</addr>``
    """

    parts: tuple[AddressPart, ...] = ()
    """The parts in document order."""
    text: str | None = Field(default=None, min_length=1)
    """Free text of an address written without parts (``<addr>12 rue …</addr>``)."""
    use: str | None = None
    """``@use`` (``H`` home, ``WP`` work …)."""
    null_flavor: str | None = None
    """``@nullFlavor`` (``MSK``, ``NASK`` …) for an address withheld or unknown."""

    @classmethod
    def of(
        cls,
        *,
        house_number: str | None = None,
        street_name: str | None = None,
        street_address_line: str | None = None,
        additional_locator: str | None = None,
        postal_code: str | None = None,
        city: str | None = None,
        country: str | None = None,
        use: str | None = None,
    ) -> Address:
        """An address from its common French parts, in the order the ANS examples write them."""
        pairs = (
            (AddressPartKind.HOUSE_NUMBER, house_number),
            (AddressPartKind.STREET_NAME, street_name),
            (AddressPartKind.STREET_ADDRESS_LINE, street_address_line),
            (AddressPartKind.ADDITIONAL_LOCATOR, additional_locator),
            (AddressPartKind.POSTAL_CODE, postal_code),
            (AddressPartKind.CITY, city),
            (AddressPartKind.COUNTRY, country),
        )
        parts = tuple(AddressPart(kind=k, value=v) for k, v in pairs if v)
        return cls(parts=parts, use=use)

    def part(self, kind: AddressPartKind) -> str | None:
        """The first part of ``kind``, or None."""
        return next((p.value for p in self.parts if p.kind is kind), None)


class Telecom(_Model):
    """A telecom address (``TEL``): ``tel:``, ``fax:``, ``mailto:`` URL, or a null flavor."""

    value: str | None = Field(default=None, min_length=1)
    """The URL, e.g. ``tel:0144534551`` or ``mailto:dr.x@medecin.mssante.fr``."""
    use: str | None = None
    """``@use`` (``H``, ``WP``, ``MC`` mobile, ``EC`` emergency …)."""
    null_flavor: str | None = None
    """``@nullFlavor`` when the address is not given."""

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.value is None) == (self.null_flavor is None):
            raise ValidationError("a telecom has either a value or a null flavor", problems=("telecom",))
        return self


class Organization(_Model):
    """An organisation: ``representedOrganization``, ``scopingOrganization``, the custodian's.

    ``<representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1750512345"/><name>…</name>``
    ``<standardIndustryClassCode code="AMBULATOIRE" codeSystem="1.2.250.1.213.1.1.4.9"/></representedOrganization>``
    """

    id: InstanceId | None = None
    """National id: root ``1.2.250.1.71.4.2.2`` (IdNat_Struct), extension = kind prefix + FINESS/SIRET …"""
    name: str | None = Field(default=None, min_length=1)
    """Name."""
    telecoms: tuple[Telecom, ...] = ()
    """Telephone, mail."""
    addresses: tuple[Address, ...] = ()
    """Addresses."""
    industry_class: Code | None = None
    """``standardIndustryClassCode``: the practice setting (JDV_J04) on the service event's performer."""

    @classmethod
    def from_settings(cls, organisation: Organisation, *, industry_class: Code | None = None) -> Organization:
        """The organisation of :class:`dmp_connector.Settings` with its IdNat_Struct id."""
        return cls(
            id=InstanceId(root=IDNAT_STRUCT, extension=organisation.national_id),
            name=organisation.name,
            industry_class=industry_class,
        )


class Device(_Model):
    """A software or device author (``assignedAuthoringDevice``)."""

    manufacturer_model_name: str | None = Field(default=None, min_length=1)
    """Manufacturer and model."""
    software_name: str | None = Field(default=None, min_length=1)
    """Software name and version."""


class AssignedEntity(_Model):
    """A person (or device) in a role: ``assignedAuthor`` or ``assignedEntity``.

    ``<assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567897"/>``
    ``<code code="G15_10/SM26" codeSystem="1.2.250.1.213.1.1.4.5" displayName="…"/>``
    ``<assignedPerson><name>…</name></assignedPerson><representedOrganization>…</assignedAuthor>``
    """

    id: InstanceId | None
    """IdNat_PS (root ``1.2.250.1.71.4.2.1``, extension ``8`` + RPPS or ``0`` + ADELI); None for a
    performer whose id is unknown (written ``<id nullFlavor="UNK"/>``); an author always has one."""
    code: Code | None = None
    """Profession/specialty (JDV_J01, mostly TRE_A02 ``G15_<profession>[/<savoir-faire>]``)."""
    addresses: tuple[Address, ...] = ()
    """Work addresses."""
    telecoms: tuple[Telecom, ...] = ()
    """Work telecoms."""
    person: PersonName | None = None
    """``assignedPerson/name``."""
    device: Device | None = None
    """``assignedAuthoringDevice`` (authors only), instead of a person."""
    organization: Organization | None = None
    """``representedOrganization``."""

    @model_validator(mode="after")
    def _who(self) -> Self:
        if self.person is not None and self.device is not None:
            raise ValidationError("an author is a person or a device, not both", problems=("person/device",))
        return self

    @classmethod
    def from_professional(
        cls,
        professional: Professional,
        *,
        organisation: Organisation | None = None,
        code: Code | None = None,
        industry_class: Code | None = None,
    ) -> AssignedEntity:
        """A professional of :class:`dmp_connector.Settings` with the JDV_J01 code derived from it.

        Without ``code``, the TRE_A02 code is ``G15_<profession>/<specialty>`` (or
        ``G15_<profession>``) and its display name is looked up in JDV_J01; a combination the
        value set lacks is refused: pass ``code`` explicitly.
        """
        return cls(
            id=InstanceId(root=IDNAT_PS, extension=professional.national_id),
            code=code if code is not None else author_specialty(professional),
            person=PersonName(family=professional.family_name, given=professional.given_name),
            organization=(
                Organization.from_settings(organisation, industry_class=industry_class)
                if organisation is not None
                else None
            ),
        )


def author_specialty(professional: Professional) -> Code:
    """The JDV_J01 code (TRE_A02 ``G15_…``) for a professional's profession and specialty."""
    from .valuesets import JDV_J01_XDS_AUTHOR_SPECIALTY  # generated module; imported late to keep startup light

    system = XDS_AUTHOR_SPECIALTY_SYSTEM
    base = f"G15_{professional.profession.code}"
    wanted = [f"{base}/{professional.specialty.code}", base] if professional.specialty is not None else [base]
    for candidate in wanted:
        found = JDV_J01_XDS_AUTHOR_SPECIALTY.get(candidate, system)
        if found is not None:
            return found
    raise ValidationError(
        f"no JDV_J01 author specialty matches profession {professional.profession.code}"
        + (f" and specialty {professional.specialty.code}" if professional.specialty is not None else ""),
        problems=("author.code",),
        hint="pass the author's JDV_J01 code explicitly (code=Code.of('G15_10/SM26', '1.2.250.1.213.1.1.4.5', …))",
    )


class Author(_Model):
    """A document author (``author``): when it authored, in which function, who.

    ``<author><functionCode …/><time value="20240110093000+0100"/><assignedAuthor>…</assignedAuthor></author>``
    """

    time: Timestamp
    """When the author wrote the document."""
    entity: AssignedEntity
    """The author (``assignedAuthor``); its id root is IdNat_PS, or an INS OID for a patient author."""
    function_code: Code | None = None
    """``functionCode`` (JDV_J47), e.g. the attending physician."""

    @model_validator(mode="after")
    def _id_root(self) -> Self:
        root = self.entity.id.root if self.entity.id is not None else "none"
        if root != IDNAT_PS and root not in _INS_ROOTS:
            raise ValidationError(
                f"an author's id root is {IDNAT_PS} (IdNat_PS), or an INS OID for a patient author; not {root}",
                problems=("author.entity.id.root",),
                hint="use the professional's national id: '8' + RPPS or '0' + ADELI, under 1.2.250.1.71.4.2.1",
            )
        return self

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        time: datetime,
        code: Code | None = None,
        function_code: Code | None = None,
    ) -> Author:
        """The configured professional, on behalf of the configured organisation, as author at ``time``."""
        entity = AssignedEntity.from_professional(
            settings.require_professional(), organisation=settings.require_organisation(), code=code
        )
        return cls(time=time, entity=entity, function_code=function_code)


class LegalAuthenticator(_Model):
    """The professional who takes responsibility for the document (``legalAuthenticator``).

    ``<legalAuthenticator><time value="…"/><signatureCode code="S"/><assignedEntity>…</assignedEntity>``
    """

    time: Timestamp
    """When the document was validated."""
    entity: AssignedEntity
    """Who validated it (``assignedEntity``; ``assignedPerson`` required)."""

    @model_validator(mode="after")
    def _person(self) -> Self:
        if self.entity.person is None:
            raise ValidationError(
                "the legal authenticator is a person: assignedPerson is required",
                problems=("legal_authenticator.entity.person",),
            )
        return self

    @classmethod
    def from_settings(cls, settings: Settings, *, time: datetime, code: Code | None = None) -> LegalAuthenticator:
        """The configured professional as legal authenticator at ``time``."""
        entity = AssignedEntity.from_professional(
            settings.require_professional(), organisation=settings.require_organisation(), code=code
        )
        return cls(time=time, entity=entity)


class Performer(_Model):
    """The performer of a service event (``performer typeCode="PRF"``)."""

    entity: AssignedEntity
    """Who performed it; the main event's performer carries the practice setting in
    ``organization.industry_class`` (JDV_J04)."""
    function_code: Code | None = None
    """``functionCode``."""
    time: Period | None = None
    """``time``, when the performer's participation has its own period."""
    template_ids: tuple[TemplateId, ...] = ()
    """templateIds some volets put on the performer."""

    @model_validator(mode="after")
    def _setting(self) -> Self:
        org = self.entity.organization
        setting = org.industry_class if org is not None else None
        if setting is not None and setting.code_system not in (TRE_A01_CADRE_EXERCICE, TRE_A00_PRODUCTEUR_NON_PS):
            raise ValidationError(
                "the practice setting (standardIndustryClassCode) comes from JDV_J04: code system "
                f"{TRE_A01_CADRE_EXERCICE} (TRE_A01) or {TRE_A00_PRODUCTEUR_NON_PS} (TRE_A00)",
                problems=("performer.entity.organization.industry_class.code_system",),
            )
        return self


class ServiceEvent(_Model):
    """The act the document documents (``documentationOf/serviceEvent``).

    ``<serviceEvent><code …/><effectiveTime><low value="…"/><high value="…"/></effectiveTime>``
    ``<performer typeCode="PRF">…</performer></serviceEvent>``
    """

    ids: tuple[InstanceId, ...] = ()
    """Ids of the act."""
    code: Code | None = None
    """What the act is (volets fix it: VSM ``34117-2`` …); an XDS event code."""
    code_translations: tuple[RawElement, ...] = ()
    """``code/translation`` elements, as written (CR-IMG: the CCAM act, the modality, the region)."""
    effective_time: Period | None = None
    """When it took place: ``low`` is the XDS serviceStartTime, ``high`` the serviceStopTime."""
    performer: Performer | None = None
    """Who performed it (required on the first service event)."""
    class_code: str | None = None
    """``@classCode`` when not the default ``ACT``."""
    extras: tuple[RawElement, ...] = ()
    """Children the model does not type (``lab:statusCode`` …), kept as they came."""

    @classmethod
    def of(
        cls,
        *,
        start: datetime | date,
        end: datetime | date | None = None,
        performer: AssignedEntity,
        practice_setting: Code,
        code: Code | None = None,
    ) -> ServiceEvent:
        """The main service event: a period, a performer, and the practice setting on the performer's organisation.

        The practice setting (JDV_J04, e.g. ``AMBULATOIRE``) becomes the XDS practiceSettingCode.
        """
        org = performer.organization or Organization()
        organization = Organization(
            id=org.id, name=org.name, telecoms=org.telecoms, addresses=org.addresses, industry_class=practice_setting
        )
        entity = AssignedEntity(
            id=performer.id,
            code=performer.code,
            addresses=performer.addresses,
            telecoms=performer.telecoms,
            person=performer.person,
            device=performer.device,
            organization=organization,
        )
        return cls(code=code, effective_time=Period(low=start, high=end), performer=Performer(entity=entity))


class HealthCareFacility(_Model):
    """Where the encounter took place (``location/healthCareFacility``).

    ``<healthCareFacility><id …/><code code="SA07" codeSystem="1.2.250.1.71.4.2.4" displayName="…"/>``
    ``<location><name>…</name><addr>…</addr></location></healthCareFacility>``
    """

    id: InstanceId | None = None
    """The facility's id (root ``1.2.250.1.71.4.2.2``)."""
    code: Code | None = None
    """Facility type (JDV_J02: TRE_R02 ``SA07`` …): the XDS healthcareFacilityTypeCode."""
    place_name: str | None = Field(default=None, min_length=1)
    """``location/name``."""
    place_address: Address | None = None
    """``location/addr``."""

    @model_validator(mode="after")
    def _system(self) -> Self:
        if self.code is not None and self.code.code_system not in (TRE_R02_SECTEUR_ACTIVITE, TRE_A00_PRODUCTEUR_NON_PS):
            raise ValidationError(
                "the care facility type comes from JDV_J02: code system "
                f"{TRE_R02_SECTEUR_ACTIVITE} (TRE_R02) or {TRE_A00_PRODUCTEUR_NON_PS} (TRE_A00)",
                problems=("encounter.facility.code.code_system",),
            )
        return self


class Encounter(_Model):
    """The care context (``componentOf/encompassingEncounter``).

    ``<encompassingEncounter><code code="AMB" …/><effectiveTime><low value="…"/></effectiveTime>``
    ``<location><healthCareFacility>…</healthCareFacility></location></encompassingEncounter>``
    """

    effective_time: Period | None
    """When the encounter took place; None is written ``<effectiveTime nullFlavor="NA"/>`` (as IPS-FR does)."""
    ids: tuple[InstanceId, ...] = ()
    """Encounter ids (visit or stay number)."""
    code: Code | None = None
    """Encounter type (JDV_J142: ``IMP``, ``AMB``, ``EXTERNE`` …)."""
    facility: HealthCareFacility | None = None
    """The care facility; its ``code`` is the XDS healthcareFacilityTypeCode."""
    extras: tuple[RawElement, ...] = ()
    """``responsibleParty``, ``encounterParticipant``, ``dischargeDispositionCode``: kept as they came."""


class AssociatedEntity(_Model):
    """A participant's role (``associatedEntity``)."""

    class_code: str = Field(min_length=1)
    """``@classCode`` (JDV_J141: ``PROV``, ``ECON``, ``NOK`` …)."""
    ids: tuple[InstanceId, ...] = ()
    """Ids (IdNat_PS for a professional)."""
    code: Code | None = None
    """Role or profession."""
    addresses: tuple[Address, ...] = ()
    """Addresses."""
    telecoms: tuple[Telecom, ...] = ()
    """Telecoms."""
    person: PersonName | None = None
    """``associatedPerson/name``."""
    organization: Organization | None = None
    """``scopingOrganization``."""


class Participant(_Model):
    """Another participant (``participant``): referring physician (REF), attending (INF + PCP) …

    ``<participant typeCode="REF"><time xsi:type="IVL_TS"><high value="20240101"/></time>``
    ``<associatedEntity classCode="PROV">…</associatedEntity></participant>``
    """

    type_code: str = Field(min_length=1)
    """``@typeCode`` (JDV_J144: ``REF``, ``REFB``, ``INF``, ``RESP``, ``PRF``, ``CON``, ``VRF``)."""
    entity: AssociatedEntity
    """Who."""
    function_code: Code | None = None
    """``functionCode`` (JDV_J47)."""
    time: Period | None = None
    """``time`` (written ``xsi:type="IVL_TS"``); required by :func:`~dmp_connector.cda.build` (CI-SIS
    participant: time 1..1): ``Period.unknown()`` when it is not known."""
    template_ids: tuple[TemplateId, ...] = ()
    """templateIds some volets put on the participant."""


class InformationRecipient(_Model):
    """An intended recipient (``informationRecipient/intendedRecipient``)."""

    type_code: str = "PRCP"
    """``PRCP`` primary recipient, ``TRC`` copy."""
    ids: tuple[InstanceId, ...] = ()
    """Ids (IdNat_PS root for a professional)."""
    addresses: tuple[Address, ...] = ()
    """Addresses."""
    telecoms: tuple[Telecom, ...] = ()
    """Telecoms (an MSSanté address …)."""
    person: PersonName | None = None
    """``informationRecipient/name``."""
    organization: Organization | None = None
    """``receivedOrganization``."""


# --------------------------------------------------------------------------- patient


class Patient(_Model):
    """The patient (``recordTarget/patientRole``), built from an :class:`~dmp_connector.ins.Identity`.

    With an INS the identity must be qualified (QUAL) and hold the traits the INS rules
    require; the patient is then written as the kit writes it::

        <id root="1.2.250.1.213.1.4.8" extension="<matricule>"/>       INS first, then other_ids
        <patient><name><family qualifier="BR">…</family><given>all birth first names</given>
          <given qualifier="BR">first birth first name</given>
          <family qualifier="CL">used name</family><given qualifier="CL">used first name</given></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19790328"/>
        <birthplace><place><addr><county>51215</county></addr></place></birthplace></patient>

    A read document's identity is QUAL when it carries an INS (only a qualified identity may
    carry one: that is the producer's statement, not a qualification on your side) and PROV
    otherwise.
    """

    identity: Identity
    """The identity; its INS (if any) goes first in ``patientRole/id``."""
    other_ids: tuple[InstanceId, ...] = ()
    """Other patient ids: the IPP under the facility's OID, a child's NIR (``1.2.250.1.213.1.4.13``) …"""
    addresses: tuple[Address, ...] = ()
    """``patientRole/addr``."""
    telecoms: tuple[Telecom, ...] = ()
    """``patientRole/telecom``."""
    name_prefix: str | None = Field(default=None, min_length=1)
    """``name/prefix``."""
    usage_name: str | None = Field(default=None, min_length=1)
    """``family@SP``: a usage name distinct from the used name."""
    birth_place_name: str | None = Field(default=None, min_length=1)
    """``birthplace/place/addr/city``: the birth place's name next to its COG code."""
    extras: tuple[RawElement, ...] = ()
    """Children of ``patient`` the model does not type (``guardian``, ``sdtc:deceasedInd`` …)."""
    role_extras: tuple[RawElement, ...] = ()
    """Children of ``patientRole`` the model does not type (``providerOrganization``)."""

    @model_validator(mode="after")
    def _ins_rules(self) -> Self:
        ins = self.identity.ins
        if ins is None:
            if not self.other_ids:
                raise ValidationError(
                    "the patient has no id: give a qualified identity with its INS, or a local id (IPP)",
                    problems=("patient.other_ids",),
                )
            return self
        if self.identity.status is not IdentityStatus.QUAL:
            self.identity.require_qualified("a CDA document")  # raises IdentityNotQualifiedError
        if self.identity.traits.birth_place is None:
            raise ValidationError(
                "a patient with an INS needs the birth place (INSEE COG code) in the document",
                problems=("patient.identity.traits.birth_place",),
                hint="the INS traits include the birth place; INSi gives 99999 when it is unknown",
            )
        if any(i.root in _INS_ROOTS for i in self.other_ids):
            raise ValidationError("a second INS among the patient's other ids", problems=("patient.other_ids",))
        return self

    @classmethod
    def from_identity(cls, identity: Identity, *, require_ins: bool = True, **fields: Any) -> Patient:
        """The patient of a new document; refuses an identity that may not carry its INS.

        ``require_ins`` (the default) refuses any identity but a qualified one, with
        :class:`~dmp_connector.errors.IdentityNotQualifiedError`: a document for the DMP
        must carry the INS. Pass ``require_ins=False`` and a local id in ``other_ids``
        for a document that goes elsewhere without it.
        """
        if require_ins:
            identity.require_qualified("a CDA document")
        return cls(identity=identity, **fields)


# --------------------------------------------------------------------------- bodies

# The elements of the CDA narrative block (NarrativeBlock.xsd); anything else is refused early.
_NARRATIVE_ELEMENTS: Final = frozenset(
    {
        "text",
        "content",
        "linkHtml",
        "sub",
        "sup",
        "br",
        "footnote",
        "footnoteRef",
        "renderMultiMedia",
        "paragraph",
        "list",
        "item",
        "table",
        "caption",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "th",
        "td",
        "col",
        "colgroup",
    }
)


class Narrative(_Model):
    """A section's human-readable block (``section/text``), held as the serialized ``<text>`` element.

    Built from plain text, paragraphs or a narrative fragment; checked on construction to be
    well-formed and made only of the CDA narrative elements (``paragraph``, ``table``,
    ``list``, ``content`` …, in the CDA namespace)::

        Narrative.from_text("Pas d'allergie connue")
        Narrative.from_markup("<paragraph>Asthme</paragraph><list><item>Ventoline</item></list>")
    """

    xml: str = Field(min_length=1)
    """``<text xmlns="urn:hl7-org:v3">…</text>``."""

    @field_validator("xml")
    @classmethod
    def _narrative(cls, value: str) -> str:
        root = parse_fragment(value, what="a section narrative")
        problems = []
        if root.tag != f"{{{HL7}}}text":
            problems.append("the narrative's root is a CDA <text> element")
        for element in root.iter():
            if not isinstance(element.tag, str):
                continue
            if not element.tag.startswith(f"{{{HL7}}}") or local_name(element) not in _NARRATIVE_ELEMENTS:
                problems.append(f"<{local_name(element)}> is not a CDA narrative element")
                break
        _fail(problems, "narrative")
        return value

    @classmethod
    def from_element(cls, element: etree._Element) -> Narrative:
        """A narrative from a ``<text>`` element of a document."""
        return cls(xml=fragment_text(element))

    @classmethod
    def from_markup(cls, markup: str) -> Narrative:
        """A narrative from the content of ``<text>``: text and narrative elements without namespace."""
        return cls(xml=f'<text xmlns="{HL7}">{markup}</text>')

    @classmethod
    def from_text(cls, text: str) -> Narrative:
        """A narrative of plain text (escaped)."""
        element = new_root("text")
        element.text = text
        return cls.from_element(element)

    @classmethod
    def from_paragraphs(cls, *paragraphs: str) -> Narrative:
        """One ``<paragraph>`` per string."""
        element = new_root("text")
        for paragraph in paragraphs:
            etree.SubElement(element, f"{{{HL7}}}paragraph").text = paragraph
        return cls.from_element(element)

    def to_element(self) -> etree._Element:
        """A fresh ``<text>`` element."""
        return parse_fragment(self.xml, what="a section narrative")


@runtime_checkable
class Entry(Protocol):
    """A section entry: anything that renders itself as a CDA ``<entry>`` element.

    The volet packages implement typed entries; a reader registered for the templateId of
    the entry's clinical statement (:func:`register_entry_reader`) reads one back. It
    should be a frozen pydantic model so that sections compare by value.
    """

    def to_element(self) -> etree._Element:
        """The ``<entry>`` element (with its ``observation``, ``act`` … child)."""
        ...


EntryReader = Callable[[etree._Element], Entry]
"""Reads an ``<entry>`` element into a typed entry; may raise ValidationError to decline it."""

_ENTRY_READERS: dict[str, EntryReader] = {}


def register_entry_reader(template_id: str, reader: EntryReader) -> None:
    """Have :func:`dmp_connector.cda.parse` read entries whose statement has ``template_id`` with ``reader``.

    The statement is the element inside ``<entry>`` (``observation``, ``act`` …); its
    templateId roots are looked up in order, after those of ``<entry>`` itself. A reader that raises
    :class:`~dmp_connector.errors.ValidationError` leaves the entry as a :class:`RawEntry`.
    Registering the same templateId twice replaces the earlier reader.
    """
    if not re.match(rf"^{_OID}$", template_id):
        raise ValidationError("a templateId to register is an OID", problems=("template_id",))
    _ENTRY_READERS[template_id] = reader


def registered_entry_readers() -> Mapping[str, EntryReader]:
    """The registered readers by templateId (read-only view)."""
    return dict(_ENTRY_READERS)


class RawEntry(_Model):
    """An entry as it came, for entries no registered reader claims: rebuilt exactly as read."""

    xml: str = Field(min_length=1)
    """The ``<entry>`` element as text."""

    @field_validator("xml")
    @classmethod
    def _entry(cls, value: str) -> str:
        root = parse_fragment(value, what="a section entry")
        if root.tag != f"{{{HL7}}}entry":
            raise ValidationError("a raw entry is a CDA <entry> element", problems=("entry",))
        return value

    @classmethod
    def from_element(cls, element: etree._Element) -> RawEntry:
        """Keep an ``<entry>`` element as it is."""
        return cls(xml=fragment_text(element))

    def to_element(self) -> etree._Element:
        """A fresh ``<entry>`` element."""
        return parse_fragment(self.xml, what="a section entry")


def read_entry(element: etree._Element) -> Entry:
    """The typed entry a registered reader makes of ``element``, else a :class:`RawEntry`.

    A typed entry that is one of our models remembers ``element``, so that an unchanged
    entry is written back as it came even where its type does not hold everything.
    """
    entry = _read_entry(element)
    if isinstance(entry, _Model):
        entry._source = Source(element, dict(entry.__dict__))
    return entry


def _read_entry(element: etree._Element) -> Entry:
    # Some entries carry their templateIds on <entry> itself (IHE PALM, the CR-BIO results entry).
    for template in element.findall(f"{{{HL7}}}templateId"):
        own = _ENTRY_READERS.get(template.get("root") or "")
        if own is not None:
            try:
                return own(element)
            except ValidationError:
                return RawEntry.from_element(element)
    for statement in element:
        if not isinstance(statement.tag, str) or local_name(statement) in ("templateId", "typeId", "realmCode"):
            continue
        for template in statement.findall(f"{{{HL7}}}templateId"):
            reader = _ENTRY_READERS.get(template.get("root") or "")
            if reader is None:
                continue
            try:
                return reader(element)
            except ValidationError:
                break
        break
    return RawEntry.from_element(element)


class Section(_Model):
    """A section of a structured body.

    ``<component><section><templateId root="…"/><id …/><code …/><title>…</title><text>…</text>``
    ``<entry>…</entry><component><section>…</section></component></section></component>``
    """

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        arbitrary_types_allowed=True,
    )

    title: str | None = None
    """``title``."""
    text: Narrative | None = None
    """The narrative block (``text``); most volets require it."""
    code: Code | None = None
    """What the section is (mostly LOINC)."""
    template_ids: tuple[TemplateId, ...] = ()
    """Section templateIds; plain OIDs are accepted and become roots without extension."""
    entries: tuple[Entry, ...] = ()
    """Coded entries: typed ones from the volets, :class:`RawEntry` for the others."""
    subsections: tuple[Section, ...] = ()
    """Nested sections (``component/section``)."""
    id: InstanceId | None = None
    """``id``."""
    xml_id: str | None = Field(default=None, min_length=1)
    """``@ID``, the anchor narrative references point at."""
    extras: tuple[RawElement, ...] = ()
    """``confidentialityCode``, ``languageCode``, ``subject``, ``author``, ``informant``: kept as they came."""


class StructuredBody(_Model):
    """A structured body (``component/structuredBody``): the sections of an N3 document."""

    sections: tuple[Section, ...] = Field(min_length=1)
    """Top-level sections, in order."""


_PDF_TAIL = 1024


class NonXmlBody(_Model):
    """A non-structured body (CDA "level 1"): a PDF carried in base64.

    ``<component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0…</text>``
    ``</nonXMLBody></component>``

    ``data`` holds the PDF bytes themselves (not the base64): :func:`build` streams the
    base64 into the output without a second encoded copy. Bytes that do not start with
    ``%PDF-`` and end with ``%%EOF`` (in the last kilobyte) are refused.
    """

    data: bytes = Field(repr=False)
    """The PDF (PDF/A recommended); never copied by the model."""
    media_type: str = "application/pdf"
    """``@mediaType``; only ``application/pdf`` is built (the DMP's formatCode for it is
    ``urn:ihe:iti:xds-sd:pdf:2008``)."""

    @model_validator(mode="after")
    def _pdf(self) -> Self:
        if self.media_type != "application/pdf":
            raise ValidationError(
                f"only application/pdf bodies are supported, not {self.media_type}", problems=("body.media_type",)
            )
        if not self.data.startswith(b"%PDF-"):
            raise ValidationError(
                "the body is not a PDF: it does not start with %PDF-",
                problems=("body.data: no %PDF- header",),
                hint="pass the bytes of a PDF file (PDF/A recommended), not its base64 or a path",
            )
        if b"%%EOF" not in self.data[-_PDF_TAIL:]:
            raise ValidationError(
                "the body is not a complete PDF: no %%EOF marker at its end",
                problems=("body.data: no %%EOF trailer",),
                hint="the file may be truncated",
            )
        return self

    def __repr__(self) -> str:
        return f"NonXmlBody(media_type={self.media_type!r}, size={len(self.data)})"


# --------------------------------------------------------------------------- document

# Header elements kept as XML, in schema order (cda.md §1.8).
OTHER_HEADER_ELEMENTS: Final = ("dataEnterer", "informant", "authenticator", "inFulfillmentOf", "authorization")


def _type_code_systems() -> frozenset[str]:
    return frozenset({LOINC, TYPE_DOC_COMPLEMENTAIRE})


class ClinicalDocument(_Model):
    """A CI-SIS CDA R2 document: the header fields and one body.

    ``template_ids`` is the complete list written: by default the HL7 France and CI-SIS
    templates, plus the IHE XDS-SD one for a PDF body; a structured volet adds its own
    (with its version in ``extension``). Build one with :meth:`from_settings` to type less.
    """

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        arbitrary_types_allowed=True,
    )

    id: InstanceId
    """Unique id of this version (the XDS uniqueId); see :func:`new_oid`."""
    type_code: Code
    """Document type (``code``), from JDV_J07: LOINC (``11502-2`` …) or TRE_A05 (``SYNTH`` …), with display name."""
    title: str = Field(min_length=1)
    """``title``."""
    effective_time: Timestamp
    """Creation time (``effectiveTime``) with its time zone: the XDS creationTime."""
    patient: Patient
    """The patient."""
    authors: tuple[Author, ...] = Field(min_length=1)
    """Authors, at least one."""
    custodian: Organization
    """The organisation that keeps the document (id root ``1.2.250.1.71.4.2.2``, or ``1.2.250.1.213.4.1``)."""
    legal_authenticator: LegalAuthenticator
    """Who takes responsibility for the content."""
    service_events: tuple[ServiceEvent, ...] = Field(min_length=1)
    """``documentationOf/serviceEvent``; the first is the main act (performer, start, practice setting)."""
    encounter: Encounter
    """``componentOf/encompassingEncounter``."""
    body: StructuredBody | NonXmlBody
    """The body."""
    set_id: InstanceId | None = None
    """Id common to every version; defaults to ``id`` (first version)."""
    version: int = Field(default=1, ge=1)
    """``versionNumber``."""
    replaces: InstanceId | None = None
    """Id of the version this one replaces (``relatedDocument typeCode="RPLC"/parentDocument/id``)."""
    confidentiality: Code = NORMAL
    """``confidentialityCode``: N, R or V (HL7 Confidentiality); DMP masking goes in the XDS metadata."""
    language: str = "fr-FR"
    """``languageCode``."""
    template_ids: tuple[TemplateId, ...] = ()
    """Document templateIds, written in this order; empty means the defaults for the body (see above)."""
    participants: tuple[Participant, ...] = ()
    """``participant``: referring or attending physician, sample taker …"""
    information_recipients: tuple[InformationRecipient, ...] = ()
    """``informationRecipient``."""
    other_header: tuple[RawElement, ...] = ()
    """``dataEnterer``, ``informant``, ``authenticator``, ``inFulfillmentOf``, ``authorization``:
    kept as XML and rebuilt at their place."""

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("set_id") is None and data.get("id") is not None:
            data["set_id"] = data["id"]
        if not data.get("template_ids"):
            base: list[Any] = [HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE]
            if isinstance(data.get("body"), NonXmlBody):
                base.append(XDS_SD_TEMPLATE)
            data["template_ids"] = tuple(base)
        return data

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems = []
        if self.type_code.code_system not in _type_code_systems():
            problems.append(
                f"type_code: code system {self.type_code.code_system} is not LOINC ({LOINC}) or TRE_A05 "
                f"({TYPE_DOC_COMPLEMENTAIRE}), the systems of JDV_J07"
            )
        if self.type_code.display_name is None:
            problems.append("type_code: a display name is required on the document type")
        if self.confidentiality.code_system != CONFIDENTIALITY_SYSTEM or self.confidentiality.code not in "NRV":
            problems.append(f"confidentiality: N, R or V of HL7 Confidentiality ({CONFIDENTIALITY_SYSTEM})")
        if not re.match(r"^[a-z]{2}-[A-Z]{2}$", self.language):
            problems.append("language: ll-CC, fr-FR for French documents")
        roots = [t.root for t in self.template_ids]
        for required in (HL7_FRANCE_TEMPLATE, CISIS_TEMPLATE):
            if roots.count(required) != 1:
                problems.append(f"template_ids: exactly one {required} is required")
        if isinstance(self.body, NonXmlBody) and XDS_SD_TEMPLATE not in roots:
            problems.append(f"template_ids: a PDF body requires the IHE XDS-SD template {XDS_SD_TEMPLATE}")
        custodian_root = self.custodian.id.root if self.custodian.id is not None else None
        if custodian_root not in (IDNAT_STRUCT, MON_ESPACE_SANTE_CUSTODIAN):
            problems.append(
                f"custodian.id: root {IDNAT_STRUCT} (IdNat_Struct) or {MON_ESPACE_SANTE_CUSTODIAN} is required"
            )
        for element in self.other_header:
            if element.name not in OTHER_HEADER_ELEMENTS:
                problems.append(f"other_header: <{element.name}> is not kept as XML here")
        _fail(problems, "ClinicalDocument")
        return self

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        patient: Identity | Patient,
        type_code: Code,
        title: str,
        body: StructuredBody | NonXmlBody,
        effective_time: datetime,
        service_start: datetime | date,
        service_end: datetime | date | None = None,
        practice_setting: Code,
        facility_type: Code | None = None,
        encounter_code: Code | None = None,
        service_code: Code | None = None,
        document_id: InstanceId | None = None,
        template_ids: tuple[InstanceId | str, ...] = (),
        **fields: Any,
    ) -> ClinicalDocument:
        """A document whose author, legal authenticator, custodian and care facility come from ``settings``.

        The configured professional authors and authenticates the document at
        ``effective_time``; the configured organisation is the custodian and the
        performer's organisation; ``facility_type`` defaults to the organisation's
        activity sector (TRE_R02). ``document_id`` defaults to a fresh ``2.25`` OID.
        Any other field (participants, replaces …) may be passed through ``fields``, which
        also override the fields made here (``authors=…``, ``custodian=…``).
        """
        organisation = settings.require_organisation()
        professional = settings.require_professional()
        author = Author.from_settings(settings, time=effective_time)
        performer = AssignedEntity.from_professional(professional, organisation=organisation)
        facility_code = facility_type if facility_type is not None else organisation.activity_sector
        if facility_code is None:
            raise ValidationError(
                "the care facility type is unknown: pass facility_type or set organisation.activity_sector",
                problems=("encounter.facility.code",),
            )
        encounter = Encounter(
            code=encounter_code,
            effective_time=Period(low=service_start, high=service_end),
            facility=HealthCareFacility(
                id=InstanceId(root=IDNAT_STRUCT, extension=organisation.national_id), code=facility_code
            ),
        )
        data: dict[str, Any] = {
            "id": document_id or InstanceId(root=new_oid()),
            "type_code": type_code,
            "title": title,
            "effective_time": effective_time,
            "patient": patient if isinstance(patient, Patient) else Patient.from_identity(patient),
            "authors": (author,),
            "custodian": Organization.from_settings(organisation),
            "legal_authenticator": LegalAuthenticator.from_settings(settings, time=effective_time),
            "service_events": (
                ServiceEvent.of(
                    start=service_start,
                    end=service_end,
                    performer=performer,
                    practice_setting=practice_setting,
                    code=service_code,
                ),
            ),
            "encounter": encounter,
            "body": body,
            "template_ids": template_ids,
        }
        data.update(fields)
        return cls(**data)


Section.model_rebuild()
