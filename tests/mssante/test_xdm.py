"""IHE XDM archives: built to the MSSanté layout, read back, METADATA.XML schema-valid, hostile input refused."""

from __future__ import annotations

import hashlib
import io
import re
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from dmp_connector.cda import parse as parse_cda
from dmp_connector.codes import Code
from dmp_connector.config import Organisation, Professional, Settings, SoftwareIdentity, StructureIdKind
from dmp_connector.errors import MalformedResponseError, PatientMismatchError, UnsafeXmlError, ValidationError
from dmp_connector.mssante.address import MssanteAddress
from dmp_connector.mssante.xdm import (
    METADATA_PATH,
    ArchiveLimits,
    UnsafeArchiveError,
    build_package,
    eight_three_name,
    read_package,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
LCM_XSD = Path(__file__).resolve().parents[3] / "shared" / "xds" / "schema" / "ebRS30" / "lcm.xsd"
N1 = (EXAMPLES / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml").read_bytes()
VSM = (EXAMPLES / "VSM_1.4_2022.01.xml").read_bytes()
OTHER_PATIENT = (EXAMPLES / "OBP-SCM_2024.01.xml").read_bytes()

SETTINGS = Settings(
    software=SoftwareIdentity(name="TestLPS", version="1.0", editor="Test Editor"),
    organisation=Organisation(id="123456789", id_kind=StructureIdKind.FINESS, name="Cabinet Test"),
    professional=Professional(
        id="10003461033", family_name="SAUCIER", given_name="Arthur", profession=Code.of("10", "1.2.250.1.71.1.2.7")
    ),
)
SENDER = MssanteAddress.parse("lps@cabinet-test.mssante.fr")
RECIPIENT = MssanteAddress.parse("dr.house@medecin.mssante.fr")


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(LCM_XSD)))  # noqa: TID251 - the test reads a trusted local schema


def names_of(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return z.namelist()


def rezip(files: list[tuple[str, bytes]], **info: object) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are written on purpose
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, content in files:
                zinfo = zipfile.ZipInfo(name)
                for key, value in info.items():
                    setattr(zinfo, key, value)
                zinfo.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(zinfo, content)
    return buffer.getvalue()


def files_of(archive: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def test_the_archive_has_the_xdm_layout_and_8_3_names() -> None:
    package = build_package([N1, VSM], SETTINGS, sender=SENDER, recipients=[RECIPIENT])
    assert names_of(package.archive) == [
        "INDEX.HTM",
        "README.TXT",
        METADATA_PATH,
        "IHE_XDM/SUBSET01/DOC00001.XML",
        "IHE_XDM/SUBSET01/DOC00002.XML",
    ]
    for name in names_of(package.archive):
        for part in name.split("/"):
            assert re.fullmatch(r"[A-Z0-9_]{1,8}(\.[A-Z0-9]{1,3})?", part), part
    assert package.readme is not None and "TestLPS 1.0 (Test Editor)" in package.readme
    assert "DOC00002.XML" in package.readme
    assert package.index_htm is not None and 'href="IHE_XDM/SUBSET01/DOC00001.XML"' in package.index_htm


def test_metadata_is_a_schema_valid_submission_with_uri_size_and_hash(schema: etree.XMLSchema) -> None:
    package = build_package([N1, VSM], SETTINGS, sender=SENDER, recipients=[RECIPIENT])
    root = etree.fromstring(package.metadata_xml)  # noqa: TID251 - our own output
    assert schema.validate(root), schema.error_log
    submission = package.submission
    assert submission.problems() == []
    assert len(submission.associations) == 2
    for number, (doc, content) in enumerate(zip(package.documents, (N1, VSM), strict=True), 1):
        entry = doc.entry
        assert [(s.name, s.values) for s in entry.extra_slots] == [("URI", (f"DOC0000{number}.XML",))]
        assert entry.size == len(content)
        assert entry.hash == hashlib.sha1(content).hexdigest()
        assert (
            entry.patient_id is not None and entry.patient_id.text == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
        )
    assert package.documents[0].entry.format_code is not None
    assert package.documents[0].entry.format_code.code == "urn:ihe:iti:xds-sd:pdf:2008"
    author = submission.submission_set.authors[0]
    assert author.person is not None and author.person.id == "810003461033"
    assert author.institutions[0].organization_identifier == "1123456789"
    assert submission.submission_set.intended_recipients == ("|^^Internet^dr.house@medecin.mssante.fr",)


def test_a_built_archive_is_read_back_byte_identical() -> None:
    package = build_package([N1, VSM], SETTINGS, sender=SENDER)
    read = read_package(package.archive)
    assert [d.content for d in read.documents] == [N1, VSM]
    assert read.submission == package.submission
    assert [d.entry for d in read.documents] == [d.entry for d in package.documents]
    assert read.metadata_xml == package.metadata_xml
    assert read.readme == package.readme and read.index_htm == package.index_htm
    first = read.documents[0]
    assert first.filename == "DOC00001.XML"
    assert first.type_code.code == "18748-4"
    assert first.type_label == "CR d’imagerie médicale"
    assert first.parse_cda().title.startswith("CR d’imagerie")
    assert package.documents[0].embedded_pdf is not None
    assert package.documents[0].embedded_pdf.startswith(b"%PDF-")
    assert package.documents[1].embedded_pdf is None


def test_documents_of_two_patients_are_refused() -> None:
    with pytest.raises(ValidationError, match="several patients"):
        build_package([N1, OTHER_PATIENT], SETTINGS, sender=SENDER)


def test_something_that_is_not_a_cda_is_refused() -> None:
    with pytest.raises(ValidationError):
        build_package([b"<notacda/>"], SETTINGS, sender=SENDER)
    with pytest.raises(ValidationError):
        build_package([], SETTINGS, sender=SENDER)


def test_eight_three_names() -> None:
    assert eight_three_name(1, "xml") == "DOC00001.XML"
    assert eight_three_name(12, ".pdf") == "DOC00012.PDF"
    assert eight_three_name(3, "") == "DOC00003.BIN"
    with pytest.raises(ValidationError):
        eight_three_name(0, "XML")


# --------------------------------------------------------------------------- hostile archives


@pytest.fixture(scope="module")
def good() -> list[tuple[str, bytes]]:
    return files_of(build_package([N1], SETTINGS, sender=SENDER).archive)


@pytest.mark.parametrize(
    "name", ["../evil.txt", "IHE_XDM/../../evil.txt", "/etc/passwd", "C:/evil.txt", "IHE_XDM\\..\\evil", "a//b", "./a"]
)
def test_path_traversal_is_refused(good: list[tuple[str, bytes]], name: str) -> None:
    with pytest.raises(UnsafeArchiveError):
        read_package(rezip([*good, (name, b"x")]))


def test_a_zip_bomb_is_refused_by_ratio(good: list[tuple[str, bytes]]) -> None:
    bomb = rezip([*good, ("IHE_XDM/SUBSET01/BOMB.XML", b"\0" * (3 * 1024 * 1024))])
    assert len(bomb) < 200_000
    with pytest.raises(UnsafeArchiveError, match="expands"):
        read_package(bomb)


def test_a_zip_bomb_is_refused_by_total_size(good: list[tuple[str, bytes]]) -> None:
    archive = rezip(good)
    with pytest.raises(UnsafeArchiveError):
        read_package(archive, limits=ArchiveLimits(max_total_bytes=50_000))
    with pytest.raises(UnsafeArchiveError):
        read_package(archive, limits=ArchiveLimits(max_entry_bytes=50_000))
    with pytest.raises(UnsafeArchiveError):
        read_package(archive, limits=ArchiveLimits(max_archive_bytes=1000))


def patch_headers(archive: bytes, name: str, *, local_offset: int, central_offset: int, value: bytes) -> bytes:
    """Overwrite a field of ``name``'s local header and central directory entry (to forge lying archives)."""
    data = bytearray(archive)
    raw = name.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", local_offset, 30), (b"PK\x01\x02", central_offset, 46)):
        position = -1
        while (position := data.find(signature, position + 1)) >= 0:
            if data[position + name_at : position + name_at + len(raw)] == raw:
                data[position + offset : position + offset + len(value)] = value
    return bytes(data)


def test_a_size_that_lies_is_caught_while_decompressing(good: list[tuple[str, bytes]]) -> None:
    name = "IHE_XDM/SUBSET01/BIG.XML"
    honest = rezip([*good, (name, b"A" * 200_000)])
    lying = patch_headers(honest, name, local_offset=22, central_offset=24, value=(10).to_bytes(4, "little"))
    with pytest.raises((UnsafeArchiveError, MalformedResponseError)):
        read_package(lying, limits=ArchiveLimits(max_entry_bytes=100_000))


def test_a_symbolic_link_is_refused(good: list[tuple[str, bytes]]) -> None:
    link = rezip(
        [("IHE_XDM/SUBSET01/LINK", b"/etc/passwd")], create_system=3, external_attr=(stat.S_IFLNK | 0o777) << 16
    )
    with pytest.raises(UnsafeArchiveError, match="link"):
        read_package(link)


def test_too_many_entries_are_refused(good: list[tuple[str, bytes]]) -> None:
    with pytest.raises(UnsafeArchiveError, match="entries"):
        read_package(rezip(good + [(f"X{i}.TXT", b"x") for i in range(10)]), limits=ArchiveLimits(max_entries=8))


def test_duplicate_and_encrypted_entries_are_refused(good: list[tuple[str, bytes]]) -> None:
    with pytest.raises(UnsafeArchiveError, match="same name"):
        read_package(rezip([*good, (good[0][0].lower(), b"x")]))
    encrypted = patch_headers(rezip([("A.TXT", b"x")]), "A.TXT", local_offset=6, central_offset=8, value=b"\x01")
    with pytest.raises(UnsafeArchiveError, match="encrypted"):
        read_package(encrypted)


def test_something_that_is_not_a_zip_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        read_package(b"PK\x03\x04 not really a zip")


def replace(good: list[tuple[str, bytes]], name: str, content: bytes | None) -> bytes:
    kept = [(n, c) for n, c in good if n != name]
    return rezip(kept if content is None else [(n, content if n == name else c) for n, c in good])


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        (b"<lcm:SubmitObjectsRequest", MalformedResponseError),
        (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'e'>]><x>&e;</x>", UnsafeXmlError),
        (b"<root/>", MalformedResponseError),
        (
            b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>',
            MalformedResponseError,
        ),
    ],
)
def test_malformed_metadata_is_refused(good: list[tuple[str, bytes]], metadata: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_package(replace(good, METADATA_PATH, metadata))


def test_an_archive_without_metadata_is_not_xdm(good: list[tuple[str, bytes]]) -> None:
    with pytest.raises(MalformedResponseError, match=r"METADATA\.XML"):
        read_package(replace(good, METADATA_PATH, None))


def test_a_document_missing_or_altered_is_refused(good: list[tuple[str, bytes]]) -> None:
    document = "IHE_XDM/SUBSET01/DOC00001.XML"
    with pytest.raises(MalformedResponseError, match="does not hold"):
        read_package(replace(good, document, None))
    with pytest.raises(MalformedResponseError, match="size"):
        read_package(replace(good, document, N1 + b" "))
    tampered = bytearray(N1)
    tampered[-20] ^= 1
    with pytest.raises(MalformedResponseError, match="hash"):
        read_package(replace(good, document, bytes(tampered)))


def test_a_uri_that_escapes_the_subset_is_refused(good: list[tuple[str, bytes]]) -> None:
    metadata = dict(good)[METADATA_PATH].replace(
        b"<rim:Value>DOC00001.XML</rim:Value>", b"<rim:Value>../X.XML</rim:Value>"
    )
    with pytest.raises(UnsafeArchiveError):
        read_package(replace(good, METADATA_PATH, metadata))


def test_a_package_is_filed_only_to_its_own_patient() -> None:
    """A received package's metadata and CDA headers must name the patient it is filed to (ANS examples)."""
    package = read_package(build_package([N1, VSM], SETTINGS, sender=SENDER).archive)
    own = parse_cda(N1).patient.identity
    package.require_patient(own)
    with pytest.raises(PatientMismatchError) as info:
        package.require_patient(parse_cda(OTHER_PATIENT).patient.identity)
    assert info.value.problems[0] == "the submission set is about another patient"
    assert "2 document entries are about another patient" in info.value.problems
    assert "2 CDA document(s) whose recordTarget is another patient's INS" in info.value.problems


def test_metadata_naming_the_patient_does_not_cover_a_cda_about_another() -> None:
    """METADATA.XML altered to name the patient the mail is filed to, the CDA still about someone else."""
    other = parse_cda(OTHER_PATIENT).patient.identity
    own = parse_cda(N1).patient.identity
    assert own.ins is not None and other.ins is not None
    files = files_of(build_package([N1], SETTINGS, sender=SENDER).archive)
    altered = [
        (name, data.replace(own.ins.matricule.encode(), other.ins.matricule.encode()).replace(
            own.ins.oid.value.encode(), other.ins.oid.value.encode()) if name.endswith("METADATA.XML") else data)
        for name, data in files
    ]  # fmt: skip
    package = read_package(rezip(altered))
    with pytest.raises(PatientMismatchError) as info:
        package.require_patient(other)
    assert info.value.problems == ("1 CDA document(s) whose recordTarget is another patient's INS",)


def _limited(metadata: bytes, *, keep_document: bool) -> bytes:
    """METADATA.XML as limited metadata: patientId left out of the submission set (and of the entry unless kept)."""
    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    root = etree.fromstring(metadata)  # noqa: TID251 - our own package
    schemes = {"urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"}  # the submission set's patientId
    if not keep_document:
        schemes.add("urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427")  # the document entry's patientId
    for identifier in list(root.iter(f"{{{rim}}}ExternalIdentifier")):
        if identifier.get("identificationScheme") in schemes:
            parent = identifier.getparent()
            assert parent is not None
            parent.remove(identifier)
    for obj, node in (
        ("RegistryPackage", "urn:uuid:5003a9db-8d8d-49e6-bf0c-990e34ac7707"),
        ("ExtrinsicObject", "urn:uuid:ab9b591b-83ab-4d03-8f5d-f93b1fb92e85"),
    ):
        for element in root.iter(f"{{{rim}}}{obj}"):
            etree.SubElement(
                element,
                f"{{{rim}}}Classification",
                id=f"urn:uuid:{'5' if obj == 'RegistryPackage' else 'a'}0000000-0000-4000-8000-000000000001",
                classifiedObject=element.get("id") or "",
                classificationNode=node,
            )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_limited_metadata_is_filed_only_when_the_cda_names_the_patient() -> None:
    """XDM may leave patientId out (limited metadata): then the CDA header is what names the patient."""
    own = parse_cda(N1).patient.identity
    files = files_of(build_package([N1], SETTINGS, sender=SENDER).archive)
    limited = [(n, _limited(d, keep_document=False) if n.endswith("METADATA.XML") else d) for n, d in files]
    package = read_package(rezip(limited))
    assert package.documents[0].entry.patient_id is None
    package.require_patient(own)
    with pytest.raises(PatientMismatchError) as info:
        package.require_patient(parse_cda(OTHER_PATIENT).patient.identity)
    assert info.value.problems == ("1 CDA document(s) whose recordTarget is another patient's INS",)


def test_a_document_that_names_no_patient_is_not_filed() -> None:
    """Limited metadata without patientId, and a CDA that carries no INS: nothing says whose it is."""
    own = parse_cda(N1).patient.identity
    assert own.ins is not None
    no_ins = N1.replace(f'root="{own.ins.oid.value}"'.encode(), b'root="1.2.250.1.999.1"', 1)
    assert parse_cda(no_ins).patient.identity.ins is None
    files = files_of(build_package([N1], SETTINGS, sender=SENDER).archive)
    old = (hashlib.sha1(N1).hexdigest(), str(len(N1)))
    new = (hashlib.sha1(no_ins).hexdigest(), str(len(no_ins)))
    altered = []
    for name, data in files:
        if name.endswith("METADATA.XML"):
            data = _limited(data, keep_document=False)
            data = data.replace(old[0].encode(), new[0].encode()).replace(
                f">{old[1]}<".encode(), f">{new[1]}<".encode()
            )
        elif data == N1:
            data = no_ins
        altered.append((name, data))
    package = read_package(rezip(altered))
    with pytest.raises(PatientMismatchError) as info:
        package.require_patient(own)
    assert info.value.problems == ("1 document(s) name no patient (no patientId, no INS in a CDA header)",)


def _mail_with(archive: bytes, sender: str = "dr.a@hopital.mssante.fr") -> bytes:
    from email.message import EmailMessage
    from email.policy import SMTP

    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["To"] = "dr.b@medecin.mssante.fr"
    mail["Subject"] = "XDM/1.0/DDM+CR"
    mail.set_content("voir PJ")
    mail.add_attachment(archive, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return mail.as_bytes()


def test_a_received_package_whose_metadata_names_another_patient_is_not_kept() -> None:
    """Every received mail: METADATA.XML's patientId must be the CDA recordTarget's INS (issue 17)."""
    from dmp_connector.mssante import parse_message

    other = parse_cda(OTHER_PATIENT).patient.identity
    own = parse_cda(N1).patient.identity
    assert own.ins is not None and other.ins is not None
    archive = build_package([N1], SETTINGS, sender=SENDER).archive
    assert parse_message(_mail_with(archive)).xdm is not None  # consistent: read
    altered = [
        (name, data.replace(own.ins.matricule.encode(), other.ins.matricule.encode()).replace(
            own.ins.oid.value.encode(), other.ins.oid.value.encode()) if name.endswith("METADATA.XML") else data)
        for name, data in files_of(archive)
    ]  # fmt: skip
    received = parse_message(_mail_with(rezip(altered)))
    assert received.xdm is None and received.documents == ()
    assert isinstance(received.xdm_error, PatientMismatchError)  # the typed error, kept, never raised
    text = received.xdm_error_text
    assert text is not None and text.startswith("PatientMismatchError: ")
    assert "recordTarget" in text and other.ins.matricule not in text
    assert received.xdm_error.__traceback__ is None  # the archive's frames are not kept alive
    # a patient's mail carries their own documents only
    from_other = parse_message(_mail_with(archive, sender=f"{other.ins.matricule}@patient.mssante.fr"))
    assert isinstance(from_other.xdm_error, PatientMismatchError) and from_other.xdm is None
    assert "patient who sent it" in from_other.xdm_error.message
    from_own = parse_message(_mail_with(archive, sender=f"{own.ins.matricule}@patient.mssante.fr"))
    assert from_own.xdm is not None
