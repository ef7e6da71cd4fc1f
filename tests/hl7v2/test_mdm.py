"""MDM^T02/T10/T04 against the volet's ANS samples and the ANS CDA kit; ACK and ZAM business acks."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_connector.cda import build, extract_metadata
from dmp_connector.cda import parse as parse_cda
from dmp_connector.errors import IdentityNotQualifiedError, InvalidIdentifierError, PatientMismatchError
from dmp_connector.hl7v2 import (
    META_FLAGS,
    AckCode,
    AckError,
    AckMismatchError,
    BusinessAckKind,
    Distribution,
    Hl7ParseError,
    Hl7RejectedError,
    MdmEvent,
    MdmSettings,
    Recipient,
    build_ack,
    build_business_ack,
    build_mdm,
    parse,
    read_ack,
    read_business_ack,
    read_mdm,
)
from dmp_connector.ins import compute_key
from dmp_connector.xds import MASQUE_PS

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
# A kit example whose INS key is right (several kit examples carry wrong keys, refused below).
EXAMPLE = KIT / "IMG-DA-IMG_2024.01_TEP_Thorax.xml"
REPLACING = KIT / "IMG_CR_IMG_2024.01.xml"  # carries relatedDocument RPLC
NOW = dt.datetime(2024, 3, 6, 11, 11, 54, tzinfo=dt.UTC)


def _sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --------------------------------------------------------------------------- the volet's samples


def test_the_initial_transmission_sample_reads_as_its_readme_says() -> None:
    document = read_mdm(_sample("mdm_T02_initial.er7"))
    assert document.event is MdmEvent.INITIAL
    assert document.control_id == "015"
    assert document.type_code == "18748-4"
    assert document.unique_id == "1.2.250.1.71.4.2.2.120456789.71024000081"
    assert document.sender_id == "801234564895"  # Dr Thomas Eric
    flags = document.distribution
    # "Le CR est envoyé au DMP ainsi qu'au Dr Adam Hoda via la MSS. Le CR est masqué au patient et à ses
    # représentants légaux. Aucun accusé métier de réception DMP/MSS ou de lecture MSS n'est demandé."
    assert flags.to_dmp and flags.to_professionals and not flags.to_patient
    assert [r.address for r in flags.recipients] == ["adam.hoda@test-ci-sis.mssante.fr"]
    assert flags.invisible_to_patient and flags.invisible_to_legal_representatives
    assert not flags.ack_reception and not flags.ack_read
    assert flags.mail_body_professional is not None and flags.mail_body_professional.startswith("Cher confrère")
    assert document.document.startswith(b"<ClinicalDocument")
    assert document.patient.identity.ins is not None
    assert document.patient.identity.ins.matricule == "279035121518989"


def test_the_replacement_and_deletion_samples_carry_their_events() -> None:
    replacement = read_mdm(_sample("mdm_T10_replacement.er7"))
    assert replacement.event is MdmEvent.REPLACEMENT
    assert replacement.replaced_id == "1.2.250.1.71.4.2.2.120456789.71024000081"
    assert replacement.distribution.modify_confidentiality
    deletion = read_mdm(_sample("mdm_T04_deletion.er7"))
    assert deletion.event is MdmEvent.DELETION


def test_the_sample_acks_acknowledge_the_sample_message() -> None:
    ack = read_ack(_sample("ack_T10.er7"))
    assert (ack.code, ack.acknowledged_id, ack.trigger) == ("AA", "015", "T10")
    assert ack.check("015") is ack
    with pytest.raises(AckMismatchError):
        ack.check("016")


def _tampered(name: str, old: str, new: str) -> bytes:
    data = _sample(name)
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


def test_a_pid_naming_another_patient_than_the_cda_is_refused() -> None:
    other = "2790351215190" + compute_key("2790351215190")
    other_ins = _tampered("mdm_T02_initial.er7", "279035121518989^", other + "^")
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(other_ins)
    assert info.value.problems == ("the PID's INS is not the CDA recordTarget's",)
    other_date = _tampered("mdm_T02_initial.er7", "|19790328|F|", "|19790329|F|")
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(other_date)
    assert info.value.problems == ("birth_date differs",)
    assert "1979" not in str(info.value)
    other_name = _tampered("mdm_T02_initial.er7", "||PAT-TROIS^DOMINIQUE^", "||PAT-QUATRE^DOMINIQUE^")
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(other_name)
    assert info.value.problems == ("birth_name differs",)
    same_name_other_case = _tampered("mdm_T02_initial.er7", "||PAT-TROIS^DOMINIQUE^", "||Pat-Trois^DOMINIQUE^")
    assert read_mdm(same_name_other_case).patient.identity.traits.birth_name == "Pat-Trois"
    no_ins = _tampered("mdm_T02_initial.er7", "|N|VALI", "|N|PROV")
    with pytest.raises(PatientMismatchError, match="PID does not name"):
        read_mdm(no_ins)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("ORC|NW|", "ORC|RO|", "ORC-1"),
        ("OBX|2|CWE|MASQUE_PS^", "OBX|2|CWE|MASQUE_XX^", "MASQUE_PS"),
        ("MDM^T02^MDM_T02", "MDM^T99^MDM_T02", "T02, T10 or T04"),
        ("^text^XML^Base64^PENsaW5p", "^text^XML^Base64^!ENsaW5p", "base64"),
    ],
)
def test_a_message_that_breaks_the_volet_is_refused(old: str, new: str, match: str) -> None:
    with pytest.raises(Hl7ParseError, match=match):
        read_mdm(_tampered("mdm_T02_initial.er7", old, new))


# --------------------------------------------------------------------------- built from the kit's documents


def _kit_examples() -> list[Path]:
    """Every 12th example by default (~0.3 s each); all 107 with HL7V2_WHOLE_KIT=1."""
    examples = sorted(KIT.glob("*.xml"))
    return examples if os.environ.get("HL7V2_WHOLE_KIT") == "1" else examples[::12]


@pytest.mark.skipif(not KIT.is_dir(), reason="the ANS CDA kit (../shared/cda-2025) is not there")
def test_every_kit_document_goes_out_and_comes_back_byte_identical() -> None:
    sent = refused = 0
    for path in _kit_examples():
        data = path.read_bytes()
        try:
            message = build_mdm(data, control_id="42", now=NOW)
        except InvalidIdentifierError:
            # Only the kit examples whose INS key is wrong are refused (10 of 107): never sent.
            ins = parse_cda(data).patient.identity.ins
            assert ins is not None and not ins.key_valid, path.name
            refused += 1
            continue
        back = read_mdm(message.to_bytes())
        assert back.document == data, path.name
        assert back.unique_id == extract_metadata(data).unique_id
        sent += 1
    assert sent >= 5, (sent, refused)


def test_the_message_has_the_volet_structure_and_the_deposit_metadata() -> None:
    data = EXAMPLE.read_bytes()
    distribution = Distribution.from_confidentiality(
        [MASQUE_PS],
        recipients=(Recipient(address="adam.hoda@test-ci-sis.mssante.fr", id="801234567897", family_name="Hoda"),),
        reply_to="secretariat@hopital.mssante.fr",
        ack_reception=True,
    )
    settings = MdmSettings(sending_application="RIS-Y", sending_facility="Organisation-Y", processing_id="T")
    message = build_mdm(data, control_id="015", distribution=distribution, settings=settings, now=NOW)
    text = message.encode()
    lines = text.split("\r")
    names = [line[:3] for line in lines if line]
    assert names[:8] == ["MSH", "EVN", "PID", "PV1", "ORC", "OBR", "TXA", "OBX"]
    assert names[8:11] == ["PRT", "PRT", "PRT"]
    assert names[11:] == ["OBX"] * len(META_FLAGS)
    assert lines[0] == (
        "MSH|^~\\&|RIS-Y|Organisation-Y|PFI||20240306111154||MDM^T02^MDM_T02|015|T|2.6|||||FRA|UNICODE UTF-8"
        "|||2.1^CISIS_CDA_HL7_V2"
    )
    meta = extract_metadata(data)
    txa = lines[6].split("|")
    assert txa[2] == meta.type_code.code and txa[3] == "TEXT" and txa[17] == "AU"
    obx = lines[7].split("|")
    assert obx[2] == "ED" and obx[11] == "F"
    assert base64.b64decode(obx[5].split("^")[4]) == data
    assert lines[8].startswith("PRT||UC||SB^Send by^participation|")
    assert lines[9].endswith("||||||||||^NET^X.400^adam.hoda@test-ci-sis.mssante.fr")
    assert "MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F" in lines[11]
    back = read_mdm(text)
    assert back.distribution == distribution
    assert back.distribution.confidentiality() == (MASQUE_PS,)


def test_a_replacing_document_goes_as_t10_with_ro_c_and_txa13() -> None:
    data = REPLACING.read_bytes()
    text = build_mdm(data, control_id="1", now=NOW).encode()
    assert "MDM^T10^MDM_T02" in text and "\rORC|RO\r" in text
    txa = next(line for line in text.split("\r") if line.startswith("TXA")).split("|")
    assert txa[13] == extract_metadata(data).replaced_unique_id
    back = read_mdm(text)
    assert back.event is MdmEvent.REPLACEMENT
    assert back.replaced_id == extract_metadata(data).replaced_unique_id


def test_deletion_is_t04_with_ca_and_d() -> None:
    deletion = build_mdm(EXAMPLE.read_bytes(), control_id="1", delete=True, now=NOW).encode()
    assert "MDM^T04^MDM_T02" in deletion and "\rORC|CA\r" in deletion
    assert deletion.split("\rPRT")[0].endswith("||||||D")
    assert read_mdm(deletion).event is MdmEvent.DELETION


def test_a_document_without_ins_cannot_go_to_the_dmp() -> None:
    data = EXAMPLE.read_bytes()
    document = parse_cda(data)
    prov = document.patient.identity.updated(status="PROV", ins=None)
    document = document.model_copy(update={"patient": document.patient.model_copy(update={"identity": prov})})
    unqualified = build(document)
    with pytest.raises(IdentityNotQualifiedError):
        build_mdm(unqualified, control_id="1", metadata=extract_metadata(data))
    # MSSanté only, to professionals: allowed without an INS (the PID then needs the CDA's IPP).
    only_mss = Distribution(to_dmp=False, recipients=(Recipient(address="a@b.mssante.fr"),))
    message = build_mdm(unqualified, control_id="1", metadata=extract_metadata(data), distribution=only_mss)
    pid = next(line for line in message.encode().split("\r") if line.startswith("PID"))
    assert "^INS" not in pid and pid.split("|")[32] == "PROV"
    assert read_mdm(message.encode()).patient.identity.ins is None


# --------------------------------------------------------------------------- acks


def test_ack_written_and_read_back_names_the_message() -> None:
    message = build_mdm(EXAMPLE.read_bytes(), control_id="015", now=NOW)
    ack = build_ack(message, AckCode.ACCEPT, control_id="016", now=NOW)
    text = ack.encode()
    assert text.split("\r")[0].startswith("MSH|^~\\&|PFI||DMP-CONNECTOR||20240306111154||ACK^T02^ACK|016|P|2.6")
    assert text.split("\r")[1] == "MSA|AA|015"
    assert read_ack(text).check("015").accepted
    refused = build_ack(
        message, "AE", control_id="017", errors=(AckError(application_code="PATIENT_MISMATCH", application_table="X"),)
    )
    assert refused.encode().split("\r")[2] == "ERR|||207^Application error^HL70357|E|PATIENT_MISMATCH^^X"
    with pytest.raises(Hl7RejectedError) as info:
        read_ack(refused.encode()).check("015")
    assert info.value.code == "AE"
    assert info.value.errors == ("207", "PATIENT_MISMATCH")


@pytest.mark.parametrize("kind", list(BusinessAckKind))
def test_business_acks_written_and_read(kind: BusinessAckKind) -> None:
    ok = build_business_ack(kind, original_control_id="015", success=True, control_id="900", address="a@b.mssante.fr")
    text = ok.encode()
    assert f"ZAM^{kind.value}^ZAM_Z01" in text
    assert f"OBX|1|CWE|{kind.status_code[0]}^{kind.status_code[1]}^AckMetierZAM|015|Y^^expandedYes-NoIndicator" in text
    read = read_business_ack(text)
    assert read.check() is read
    assert (read.kind, read.original_control_id, read.success) == (kind, "015", True)
    assert read.address == ("a@b.mssante.fr" if kind is not BusinessAckKind.DMP_RECEPTION else None)
    failed = build_business_ack(
        kind,
        original_control_id="015",
        success=False,
        control_id="901",
        error=AckError(application_code="DMPPatientNotFound", application_table="DMP_ERROR_CODE"),
    )
    with pytest.raises(Hl7RejectedError) as info:
        read_business_ack(failed.to_bytes()).check()
    assert info.value.errors == ("207", "DMPPatientNotFound")
    with pytest.raises(ValueError, match="ERR"):
        build_business_ack(kind, original_control_id="015", success=False, control_id="902")


def test_what_is_not_an_ack_is_refused() -> None:
    mdm = parse(_sample("mdm_T02_initial.er7").decode())
    with pytest.raises(Hl7ParseError):
        read_ack(mdm)
    with pytest.raises(Hl7ParseError):
        read_business_ack(mdm)


# --------------------------------------------------------------------------- properties

_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
_ADDRESS = st.from_regex(r"[a-z0-9.]{1,12}@[a-z0-9-]{1,10}\.mssante\.fr", fullmatch=True)


@st.composite
def distributions(draw: st.DrawFn) -> Distribution:
    flags = {name: draw(st.booleans()) for _, _, name in META_FLAGS if name != "to_professionals"}
    recipients = tuple(
        Recipient(address=address, id=draw(st.one_of(st.none(), st.from_regex(r"8[0-9]{10}", fullmatch=True))))
        for address in draw(st.lists(_ADDRESS, max_size=3))
    )
    return Distribution(
        recipients=recipients,
        reply_to=draw(st.one_of(st.none(), _ADDRESS)),
        mail_body_professional=draw(st.one_of(st.none(), _TEXT)),
        mail_body_patient=draw(st.one_of(st.none(), _TEXT)),
        **flags,
    )


@pytest.mark.skipif(not KIT.is_dir(), reason="the ANS CDA kit (../shared/cda-2025) is not there")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(distribution=distributions(), control_id=st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True))
def test_any_distribution_and_mail_body_comes_back_as_sent(distribution: Distribution, control_id: str) -> None:
    data = EXAMPLE.read_bytes()
    message = build_mdm(data, control_id=control_id, distribution=distribution, metadata=_EXAMPLE_METADATA, now=NOW)
    back = read_mdm(message.to_bytes())
    assert back.distribution == distribution
    assert back.control_id == control_id
    assert back.document == data


_EXAMPLE_METADATA = extract_metadata(EXAMPLE.read_bytes()) if EXAMPLE.is_file() else None
