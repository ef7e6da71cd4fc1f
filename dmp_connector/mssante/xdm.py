"""IHE XDM packages (ITI-32, "ZIP over e-mail"): build the archive MSSanté mail carries, and read one safely.

Layout, as ANS and the public French implementations write it::

    IHE_XDM.ZIP
    ├── INDEX.HTM                  a page for people: what the archive holds, links to README and documents
    ├── README.TXT                 who sent it, with which software, how the archive is organised
    └── IHE_XDM/
        └── SUBSET01/
            ├── METADATA.XML       lcm:SubmitObjectsRequest: SubmissionSet, DocumentEntries, HasMember
            ├── DOC00001.XML       the documents, ISO 9660 level-1 ("8.3") upper-case names
            └── DOC00002.XML

``METADATA.XML`` carries the same metadata as a DMP deposit (the XDS model of
:mod:`dmp_connector.xds`, derived from each CDA header by :mod:`dmp_connector.cda`), plus
what XDM adds to each DocumentEntry: the ``URI`` slot naming the file in the subset, and
its ``size`` and SHA-1 ``hash`` (reference ``mssante.md`` §2.2, ``dmp_xds.md`` §3–4).

Reading (:func:`read_package`) treats the archive as hostile: the zip is opened with the
bounds of :class:`ArchiveLimits` (zip bombs, ``..`` and absolute paths, links, encryption,
too many entries — :class:`UnsafeArchiveError`), ``METADATA.XML`` goes through the
hardened XML parser into the XDS model, each document is found through its ``URI`` and
checked against its ``size`` and ``hash``. Parsing a document as CDA is left to the caller
(:meth:`XdmDocument.parse_cda`).
"""

from __future__ import annotations

import hashlib
import html
import io
import re
import stat
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from dmp_connector.cda import ClinicalDocument, NonXmlBody, new_oid
from dmp_connector.cda import parse as parse_cda
from dmp_connector.cda.metadata import DocumentMetadata, extract_metadata
from dmp_connector.codes import Code
from dmp_connector.config import Settings
from dmp_connector.errors import (
    DmpConnectorError,
    MalformedResponseError,
    PatientMismatchError,
    ProtocolError,
    ValidationError,
)
from dmp_connector.xds.ebrim import build_submit_objects_request, parse_submit_objects_request
from dmp_connector.xds.model import (
    Author,
    Cx,
    DocumentEntry,
    Slot,
    SubmissionRequest,
    SubmissionSet,
    Xcn,
    XdsTime,
    Xon,
    symbolic_id,
)
from dmp_connector.xml import XmlLimits, parse_xml, to_bytes

if TYPE_CHECKING:
    from dmp_connector.ins import Identity

    from .address import MssanteAddress

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "METADATA_PATH",
    "XDM_ATTACHMENT_NAME",
    "ArchiveLimits",
    "UnsafeArchiveError",
    "XdmDocument",
    "XdmPackage",
    "build_package",
    "default_source_id",
    "document_entry",
    "eight_three_name",
    "entry_from_metadata",
    "read_package",
]

XDM_ATTACHMENT_NAME = "IHE_XDM.ZIP"
"""File name of the archive attached to the mail (upper case, as ISO 9660 level 1 wants)."""
SUBSET = "IHE_XDM/SUBSET01"
METADATA_PATH = f"{SUBSET}/METADATA.XML"
"""Where the metadata of the (single) subset sits in an archive this SDK builds."""

DEFAULT_CONTENT_TYPE = Code.of("07", "1.2.250.1.213.2.2", "Consultation")
"""contentTypeCode of the submission set when none is given: ``07`` of TRE_R209-TypeActivite, the code
ANS's HL7 mapping proposes for an outpatient encounter [I: the display name is ours]."""

_FIXED_TIME = (2000, 1, 1, 0, 0, 0)
_CHUNK = 64 * 1024
_RATIO_FLOOR = 1024 * 1024  # below this many inflated bytes, no expansion ratio is enforced
_DRIVE = re.compile(r"^[A-Za-z]:")
_ISO9660 = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
_PDF_FORMAT = "urn:ihe:iti:xds-sd:pdf:2008"


# --------------------------------------------------------------------------- safe zip


class UnsafeArchiveError(ProtocolError):
    """A zip archive refused unread: a bomb, path traversal, a link, encryption, too many entries …"""


class ArchiveLimits(BaseModel):
    """Bounds applied to every received archive; the defaults fit a mail under the operators' caps."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    max_archive_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest archive opened, in bytes (compressed)."""
    max_entries: int = Field(default=1000, gt=0)
    """Most entries (files and directories) in one archive."""
    max_entry_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    """Largest decompressed entry."""
    max_total_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    """Largest decompressed total."""
    max_ratio: float = Field(default=200.0, gt=1.0)
    """Highest expansion (decompressed / compressed) of one entry, and of all the entries read so far
    together: XML compresses 10–30 times, a zip bomb thousands of times. Under 1 MB decompressed
    neither is enforced."""


def _check_name(name: str) -> str:
    if not name or len(name) > 255:
        raise UnsafeArchiveError("an entry of the archive has an empty or over-long name")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UnsafeArchiveError("an entry name holds a control character")
    if "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(
            "an entry name is absolute or uses backslashes", hint="XDM entries are relative paths with '/'"
        )
    if any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        raise UnsafeArchiveError("an entry name has a '..', '.' or empty component (path traversal)")
    return name


def _is_link(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _read_archive(data: bytes, bounds: ArchiveLimits) -> dict[str, bytes]:
    """The files of a zip by name (directories left out), or the refusal that applies."""
    if len(data) > bounds.max_archive_bytes:
        raise UnsafeArchiveError(
            f"the archive is {len(data)} bytes, over the {bounds.max_archive_bytes}-byte limit",
            hint="raise ArchiveLimits.max_archive_bytes if this size is legitimate",
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise MalformedResponseError("the XDM attachment is not a readable zip archive") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > bounds.max_entries:
            raise UnsafeArchiveError(f"the archive has {len(infos)} entries, over the limit of {bounds.max_entries}")
        files: dict[str, bytes] = {}
        seen: set[str] = set()
        total = 0
        compressed = 0
        for info in infos:
            name = _check_name(info.filename)
            if name.upper() in seen:
                raise UnsafeArchiveError("the archive holds two entries with the same name")
            seen.add(name.upper())
            if _is_link(info):
                raise UnsafeArchiveError("the archive holds a symbolic link, which is refused")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise UnsafeArchiveError("the archive holds an encrypted entry, which cannot be read")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafeArchiveError("an entry uses a compression method other than stored or deflated")
            # Compressed sizes can lie: what was read can never exceed the archive itself.
            compressed = min(compressed + max(info.compress_size, 0), len(data))
            content = _read_entry(archive, info, bounds, total, compressed)
            total += len(content)
            files[name] = content
        return files


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, bounds: ArchiveLimits, total: int, compressed_so_far: int
) -> bytes:
    """One entry's bytes, refused as soon as it, or the archive so far, inflates past the limits.

    Declared sizes are checked first (cheap) and the actual ones while decompressing (they can
    lie). The ratio is checked per entry and over the whole archive read so far, so that a bomb
    spread over many entries, each under the 1 MB below which one entry is not held to the ratio,
    is refused after about a megabyte rather than at the total limit.
    """
    if info.file_size > bounds.max_entry_bytes or total + info.file_size > bounds.max_total_bytes:
        raise UnsafeArchiveError("an entry of the archive declares a size over the limits (zip bomb?)")
    compressed = max(info.compress_size, 1)
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                out += chunk
                size = len(out)
                if size > bounds.max_entry_bytes or total + size > bounds.max_total_bytes:
                    raise UnsafeArchiveError("an entry of the archive expands over the size limits (zip bomb?)")
                if size > _RATIO_FLOOR and size / compressed > bounds.max_ratio:
                    raise UnsafeArchiveError(
                        f"an entry of the archive expands more than {bounds.max_ratio:g} times (zip bomb?)"
                    )
                inflated = total + size
                if inflated > _RATIO_FLOOR and inflated / max(compressed_so_far, 1) > bounds.max_ratio:
                    raise UnsafeArchiveError(
                        f"the archive's entries together expand more than {bounds.max_ratio:g} times (zip bomb?)"
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise MalformedResponseError("an entry of the XDM archive is corrupt") from exc
    except RuntimeError as exc:  # zipfile's "password required" and the like
        raise UnsafeArchiveError("an entry of the archive cannot be read safely") from exc
    return bytes(out)


def _write_archive(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """A deflated zip of ``entries`` in that order, with fixed timestamps (same input, same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            info = zipfile.ZipInfo(_check_name(name), date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


# --------------------------------------------------------------------------- names


def eight_three_name(number: int, extension: str) -> str:
    """``DOC00001.XML``: the ISO 9660 level-1 name of the ``number``-th document (1-based)."""
    ext = re.sub(r"[^A-Z0-9]", "", extension.upper())[:3] or "BIN"
    if not 1 <= number <= 99999:
        raise ValidationError("an XDM subset holds at most 99999 documents")
    return f"DOC{number:05d}.{ext}"


def default_source_id(settings: Settings) -> str:
    """The submission set's sourceId: ``dmp.source_id`` when configured, else a stable derived OID.

    XDS wants the sending system's root OID. The one configured for DMP deposits is used so
    that both carry the same; without it, an OID under ``2.25`` is derived from the
    software's name, editor and instance id (the same on every run) [I].
    """
    if settings.dmp.source_id is not None:
        return settings.dmp.source_id
    software = settings.software
    seed = f"dmp-connector:xds-source:{software.name}:{software.editor}:{software.instance_id}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, seed).int}"


# --------------------------------------------------------------------------- model


class XdmDocument(BaseModel):
    """One document of an XDM subset: its bytes, its metadata and where it sits in the archive."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    path: str
    """Path in the archive, ``IHE_XDM/SUBSET01/DOC00001.XML``."""
    content: bytes = Field(repr=False)
    """The document, byte for byte."""
    entry: DocumentEntry = Field(repr=False)
    """Its XDS DocumentEntry from ``METADATA.XML``."""
    embedded_pdf: bytes | None = Field(default=None, repr=False)
    """For a level-1 CDA built by this SDK: the PDF it embeds (None otherwise)."""

    @property
    def filename(self) -> str:
        """The file name within the subset, ``DOC00001.XML``."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def unique_id(self) -> str:
        """The document's uniqueId (the CDA ``id``)."""
        return self.entry.unique_id

    @property
    def patient_id(self) -> str:
        """The patientId CX, ``<matricule>^^^&<OID>&ISO^NH`` (empty for a limited-metadata entry without one)."""
        patient = self.entry.patient_id
        return patient.text if patient is not None else ""

    @property
    def type_code(self) -> Code:
        """The typeCode (the CDA ``code``); a document without one reads as ``UNKNOWN``."""
        code = self.entry.type_code
        if isinstance(code, Code):
            return code
        if code is not None:
            return Code.model_construct(code=code.code, code_system=code.code_system, display_name=code.display_name)
        return Code.model_construct(code="UNKNOWN", code_system="0.0", display_name=None)

    @property
    def type_label(self) -> str:
        """What the document is, for people: the typeCode's display name, else the title."""
        return self.type_code.display_name or self.entry.title or self.type_code.code

    @property
    def act_date(self) -> datetime | None:
        """The date of the act (serviceStartTime, else creationTime), for the PDF's name."""
        time = self.entry.service_start_time or self.entry.creation_time
        return time.moment if time is not None else None

    def parse_cda(self, *, limits: XmlLimits | None = None) -> ClinicalDocument:
        """The document read as CDA (through the hardened parser); raises if it is not one."""
        return parse_cda(self.content, limits=limits or XmlLimits())


class XdmPackage(BaseModel):
    """An XDM archive: its bytes, its metadata and its documents."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    archive: bytes = Field(repr=False)
    """The zip, as attached to the mail."""
    submission: SubmissionRequest = Field(repr=False)
    """The submission of the (first) subset, read from or written to ``METADATA.XML``."""
    documents: tuple[XdmDocument, ...] = ()
    """The documents, in the order of the metadata."""
    metadata_xml: bytes = Field(default=b"", repr=False)
    """``METADATA.XML`` as it is in the archive."""
    readme: str | None = Field(default=None, repr=False)
    """``README.TXT``, when present."""
    index_htm: str | None = Field(default=None, repr=False)
    """``INDEX.HTM``, when present."""

    def require_one_patient(self, *, matricule: str | None = None) -> None:
        """Refuse a package that names more than one patient: METADATA.XML's ``patientId`` (the
        submission set's, each entry's) and every CDA's ``recordTarget`` INS must all be the same
        patient, and that patient's matricule ``matricule`` when given (a mail from a patient's
        address). Raises :class:`~dmp_connector.errors.PatientMismatchError` (counts, never values).

        Run on every received package, before any caller could file a document under the id the
        metadata gives: a client filing by ``patientId`` would otherwise file patient A's
        document under patient B.
        """
        named: list[tuple[str, str]] = []
        set_id = self.submission.submission_set.patient_id
        if set_id is not None:
            named.append((set_id.id, set_id.assigning_authority))
        headers: list[tuple[str, str]] = []
        for document in self.documents:
            if document.entry.patient_id is not None:
                named.append((document.entry.patient_id.id, document.entry.patient_id.assigning_authority))
            try:
                ins = document.parse_cda().patient.identity.ins
            except (DmpConnectorError, ValueError):
                ins = None  # not a CDA (a PDF …)
            if ins is not None:
                headers.append((ins.matricule, ins.oid.value))
        problems: list[str] = []
        if len(set(named)) > 1:
            problems.append("METADATA.XML names more than one patient")
        if headers and named and set(headers) != set(named):
            problems.append("METADATA.XML's patientId is not the INS in the CDA recordTarget")
        if len(set(headers)) > 1:
            problems.append("the CDA documents are about more than one patient")
        if matricule is not None and any(m != matricule for m, _ in (*named, *headers)):
            problems.append("the package is about another patient than the patient who sent it")
        if problems:
            raise PatientMismatchError(
                f"the XDM package names more than one patient: {'; '.join(problems)}",
                service="mssante",
                operation="xdm",
                problems=problems,
            )

    def require_patient(self, patient: Identity) -> None:
        """Identity vigilance before filing the package's documents to ``patient`` (a received mail).

        The submission set's and every document entry's ``patientId`` must be the patient's INS,
        and so must the ``recordTarget`` of every document that reads as a CDA with an INS. Anything
        else raises :class:`~dmp_connector.errors.PatientMismatchError` (counts, never values): file
        nothing, and handle the mail by hand.
        """
        ins = patient.ins
        if ins is None:
            raise ValidationError(
                "the patient has no INS to compare the package with", hint="file it by hand after checking the traits"
            )

        def other(cx: Cx | None) -> bool:
            # Limited metadata (what XDM allows) may leave patientId out: then the CDA must name the patient.
            return cx is not None and not ins.matches(cx)

        problems: list[str] = []
        if other(self.submission.submission_set.patient_id):
            problems.append("the submission set is about another patient")
        entries = sum(other(document.entry.patient_id) for document in self.documents)
        if entries:
            problems.append(f"{entries} document entr{'y is' if entries == 1 else 'ies are'} about another patient")
        headers = unnamed = 0
        for document in self.documents:
            try:
                named = document.parse_cda().patient.identity.ins
            except (DmpConnectorError, ValueError):
                named = None  # not a CDA (a PDF …): its entry's patientId was checked above
            if named is not None and not ins.matches(named):
                headers += 1
            if named is None and document.entry.patient_id is None:
                unnamed += 1
        if unnamed:
            problems.append(f"{unnamed} document(s) name no patient (no patientId, no INS in a CDA header)")
        if headers:
            problems.append(f"{headers} CDA document(s) whose recordTarget is another patient's INS")
        if problems:
            raise PatientMismatchError(
                f"the XDM package is not about the patient it would be filed to: {'; '.join(problems)}",
                service="mssante",
                operation="xdm",
                problems=problems,
            )


# --------------------------------------------------------------------------- building


def document_entry(content: bytes, number: int, uri: str) -> tuple[DocumentEntry, ClinicalDocument]:
    """The DocumentEntry of a CDA document for an XDM subset, and the document read as CDA.

    The CDA header gives the same attributes as a DMP deposit
    (:func:`dmp_connector.cda.metadata.extract_metadata`, ``dmp_xds.md`` §4); XDM adds the
    ``URI`` slot. ``size`` and ``hash`` are those of ``content``, the bytes put in the archive.
    """
    document = parse_cda(content)
    values = extract_metadata(content)
    return entry_from_metadata(values, entry_id=symbolic_id("Document", number), uri=uri), document


def entry_from_metadata(values: DocumentMetadata, *, entry_id: str, uri: str | None = None) -> DocumentEntry:
    """The XDS DocumentEntry of a CDA document's metadata: the DMP deposit's, plus ``URI`` for XDM."""
    return values.to_document_entry(entry_id=entry_id, extra_slots=(_uri_slot(uri),) if uri is not None else ())


def _submission_set(
    settings: Settings,
    patient_cx: str,
    *,
    now: datetime,
    sender: MssanteAddress,
    recipients: Sequence[MssanteAddress],
    source_id: str | None,
    content_type: Code,
) -> SubmissionSet:
    authors: list[Author] = []
    pro, org = settings.professional, settings.organisation
    institutions: tuple[Xon, ...] = ()
    if org is not None:
        institutions = (Xon.national_structure(org.name, org.national_id),)
    person = Xcn.national_professional(pro.national_id, pro.family_name, pro.given_name) if pro else None
    telecom = (f"^^Internet^{sender.address}",)
    authors.append(Author(person=person, institutions=institutions, telecommunications=telecom))
    return SubmissionSet(
        entry_uuid=symbolic_id("SubmissionSet", 1),
        unique_id=new_oid(),
        source_id=source_id or default_source_id(settings),
        patient_id=Cx.parse(patient_cx),
        submission_time=XdsTime.of(now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)),
        content_type_code=content_type,
        authors=tuple(authors),
        intended_recipients=tuple(f"|^^Internet^{r.address}" for r in recipients if not r.is_patient),
    )


def build_package(
    documents: Sequence[bytes],
    settings: Settings,
    *,
    sender: MssanteAddress,
    recipients: Sequence[MssanteAddress] = (),
    now: datetime | None = None,
    source_id: str | None = None,
    content_type: Code = DEFAULT_CONTENT_TYPE,
) -> XdmPackage:
    """An XDM archive of the CDA ``documents`` (one patient), with INDEX.HTM, README.TXT and METADATA.XML.

    Each document is read through the hardened CDA parser to derive its metadata; a
    document that is not a CDA, or documents of several patients, are refused. The
    documents go in byte for byte under ``DOC00001.XML``, ``DOC00002.XML`` …
    """
    if not documents:
        raise ValidationError("an XDM archive holds at least one document")
    moment = now or datetime.now(UTC)
    entries: list[DocumentEntry] = []
    packed: list[XdmDocument] = []
    for number, content in enumerate(documents, 1):
        name = eight_three_name(number, "XML")
        entry, cda = document_entry(content, number, name)
        entries.append(entry)
        pdf = cda.body.data if isinstance(cda.body, NonXmlBody) else None
        packed.append(XdmDocument(path=f"{SUBSET}/{name}", content=content, entry=entry, embedded_pdf=pdf))
    patients = {entry.patient_id.text if entry.patient_id else "" for entry in entries}
    if len(patients) != 1:
        raise ValidationError(
            "the documents are about several patients; an XDM subset (and an MSSanté message) holds one",
            hint="send one message per patient",
        )
    submission_set = _submission_set(
        settings,
        patients.pop(),
        now=moment,
        sender=sender,
        recipients=recipients,
        source_id=source_id,
        content_type=content_type,
    )
    submission = SubmissionRequest.build(submission_set, entries)
    metadata = _serialise(submission)
    readme = _readme(settings, sender, packed, moment)
    index = _index(packed)
    archive = _write_archive(
        [
            ("INDEX.HTM", index.encode("utf-8")),
            ("README.TXT", readme.encode("utf-8")),
            (METADATA_PATH, metadata),
            *((doc.path, doc.content) for doc in packed),
        ]
    )
    return XdmPackage(
        archive=archive,
        submission=submission,
        documents=tuple(packed),
        metadata_xml=metadata,
        readme=readme,
        index_htm=index,
    )


def _readme(settings: Settings, sender: MssanteAddress, packed: Sequence[XdmDocument], now: datetime) -> str:
    software = settings.software
    org = settings.organisation
    lines = [
        "IHE XDM archive (ITI-32) sent over MSSanté",
        "",
        f"Sender: {org.name if org else sender.address} <{sender.address}>",
        f"Sending software: {software.name} {software.version} ({software.editor})",
        f"Created: {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "",
        "Open INDEX.HTM in a browser to see the documents. A software able to import",
        "IHE XDM media reads IHE_XDM/SUBSET01/METADATA.XML, which describes each document",
        "(patient, type, author, dates) as an XDS submission set.",
        "",
        "Contents:",
        "  INDEX.HTM",
        "  README.TXT",
        "  IHE_XDM/",
        "    SUBSET01/",
        "      METADATA.XML",
        *(f"      {doc.filename}" for doc in packed),
        "",
    ]
    return "\r\n".join(lines)


def _index(packed: Sequence[XdmDocument]) -> str:
    rows = "\n".join(
        f'<li><a href="{SUBSET}/{doc.filename}">{html.escape(doc.entry.title or doc.filename)}</a></li>'
        for doc in packed
    )
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"><title>IHE XDM</title></head><body>\n'
        "<h1>Documents</h1>\n"
        f"<ul>\n{rows}\n</ul>\n"
        '<p><a href="README.TXT">README.TXT</a> describes this archive.</p>\n'
        "</body></html>\n"
    )


# --------------------------------------------------------------------------- ebRIM


def _serialise(submission: SubmissionRequest) -> bytes:
    return to_bytes(build_submit_objects_request(submission))


# --------------------------------------------------------------------------- reading


def _find(files: dict[str, bytes], path: str) -> tuple[str, bytes] | None:
    wanted = path.upper()
    for name, content in files.items():
        if name.upper() == wanted:
            return name, content
    return None


def _uri_of(entry: DocumentEntry) -> str | None:
    for slot in entry.extra_slots:
        if slot.name == "URI" and slot.values:
            # Long URIs may be split over several values "1|…", "2|…" (ITI TF-3 §4.2.3.2.24).
            if all(re.match(r"^\d+\|", v) for v in slot.values):
                ordered = sorted(slot.values, key=lambda v: int(v.split("|", 1)[0]))
                return "".join(v.split("|", 1)[1] for v in ordered)
            return slot.values[0]
    return None


def read_package(
    data: bytes, *, limits: ArchiveLimits | None = None, xml_limits: XmlLimits | None = None
) -> XdmPackage:
    """Open a received XDM archive, or refuse it with the reason.

    :class:`UnsafeArchiveError` for a hostile zip; :class:`~dmp_connector.errors.UnsafeXmlError`
    or :class:`~dmp_connector.errors.MalformedResponseError` for a ``METADATA.XML`` that is
    hostile, not XML or not a SubmitObjectsRequest; ``MalformedResponseError`` when a
    document named by the metadata is missing or does not match its size or hash.
    """
    files = _read_archive(data, limits or ArchiveLimits())
    metadata_names = sorted(n for n in files if re.fullmatch(r"IHE_XDM/[^/]+/METADATA\.XML", n, re.IGNORECASE))
    if not metadata_names:
        raise MalformedResponseError(
            "the archive is not an IHE XDM package: no IHE_XDM/<subset>/METADATA.XML",
            hint="an XDM archive holds IHE_XDM/SUBSET01/METADATA.XML",
        )
    metadata_name = metadata_names[0]
    subset = metadata_name.rsplit("/", 1)[0]
    metadata = files[metadata_name]
    root = parse_xml(metadata, limits=xml_limits or XmlLimits(max_bytes=16 * 1024 * 1024), what="METADATA.XML")
    submission = parse_submit_objects_request(root)
    documents = []
    for entry in submission.documents:
        uri = _uri_of(entry)
        if uri is None:
            raise MalformedResponseError(f"METADATA.XML: document {entry.entry_uuid} has no URI slot")
        _check_name(uri)
        found = _find(files, f"{subset}/{uri}")
        if found is None:
            raise MalformedResponseError(f"METADATA.XML names a document ({uri}) that the archive does not hold")
        path, content = found
        if entry.size is not None and entry.size != len(content):
            raise MalformedResponseError(f"the size of {uri} differs from the one METADATA.XML gives")
        if entry.hash is not None and entry.hash.lower() != hashlib.sha1(content).hexdigest():  # noqa: S324
            raise MalformedResponseError(f"the SHA-1 hash of {uri} differs from the one METADATA.XML gives")
        documents.append(XdmDocument(path=path, content=content, entry=entry))
    readme = _find(files, "README.TXT")
    index = _find(files, "INDEX.HTM")
    return XdmPackage(
        archive=data,
        submission=submission,
        documents=tuple(documents),
        metadata_xml=metadata,
        readme=readme[1].decode("utf-8", "replace") if readme else None,
        index_htm=index[1].decode("utf-8", "replace") if index else None,
    )


def _uri_slot(name: str) -> Slot:
    if not _ISO9660.match(name):
        raise ValidationError(f"{name} is not an ISO 9660 level-1 file name (8.3, upper case)")
    return Slot(name="URI", values=(name,))
