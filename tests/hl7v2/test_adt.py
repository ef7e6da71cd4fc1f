"""ADT identity-feed messages as typed events: the ANS samples, A28/A31/A08 written and read, A47 and A40."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dmp_connector.hl7v2 import (
    AdtEventKind,
    Hl7ParseError,
    IdentifierChange,
    IdentityEvent,
    LocalId,
    PatientMerge,
    build_adt,
    read_adt,
)
from dmp_connector.ins import INS, BirthDate, Identity, IdentityStatus, IdentityTraits, InsOid, Sex, compute_key

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
BODY = "2790351215189"
MATRICULE = BODY + compute_key(BODY)
OLD_BODY = "2790351215190"
OLD = OLD_BODY + compute_key(OLD_BODY)
IPP = LocalId(id="000003", namespace="CHU-X", authority_id="000897406", authority_id_type="N")
MSH = (
    "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^{trigger}|{ctl}|P|2.5^FRA^2.11|||||FRA|UNICODE UTF-8"
    "|||2.11^IHE_FRANCE-2.11-PAM"
)
PID = (
    "PID|1||000003^^^CHU-X&000897406&N^PI{ins}||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F|||"
    "^^^^^^BDL^^63220|||||||||||||||||||||{status}"
)


def _identity() -> Identity:
    traits = IdentityTraits(
        birth_name="PAT-TROIS",
        birth_first_names=("DOMINIQUE",),
        sex=Sex.F,
        birth_date=BirthDate(year=1979, month=3, day=28),
        birth_place="63220",
    )
    return Identity(traits=traits, ins=INS(matricule=MATRICULE, oid=InsOid.NIR), status=IdentityStatus.QUAL)


@pytest.mark.parametrize(("name", "trigger"), [("pam_admission_A01", "A01"), ("pam_sortie_A03", "A03")])
def test_the_ans_encounter_samples_carry_the_qualified_identity(name: str, trigger: str) -> None:
    event = read_adt((DATA / f"{name}.er7").read_bytes())
    assert isinstance(event, IdentityEvent)
    assert event.trigger == trigger
    assert event.kind is AdtEventKind.OTHER
    assert event.recorded_at == "20240306111154"
    assert event.patient.identity.status is IdentityStatus.QUAL


def test_the_consent_sample_with_its_z_segments_reads_too() -> None:
    event = read_adt((DATA / "pam_consentement_A01.er7").read_bytes())
    assert isinstance(event, IdentityEvent)
    assert event.patient.identity.ins is not None


@pytest.mark.parametrize(
    ("trigger", "kind"), [("A28", AdtEventKind.CREATE), ("A31", AdtEventKind.UPDATE), ("A08", AdtEventKind.UPDATE)]
)
def test_identity_feed_messages_written_then_read(trigger: str, kind: AdtEventKind) -> None:
    when = dt.datetime(2024, 3, 6, 11, 11, 54, tzinfo=dt.UTC)
    message = build_adt(trigger, _identity(), control_id="77", local_ids=[IPP], now=when)
    text = message.encode()
    assert text.startswith("MSH|^~\\&|DMP-CONNECTOR||PFI||20240306111154||ADT^")
    assert "|2.5^FRA^2.11|" in text and text.split("\r")[0].endswith("|2.11^IHE_FRANCE-2.11-PAM")
    event = read_adt(message.to_bytes())
    assert isinstance(event, IdentityEvent)
    assert (event.trigger, event.kind, event.control_id) == (trigger, kind, "77")
    assert event.patient.identity == _identity()
    assert event.patient.local_ids == (IPP,)


def test_a47_reads_the_new_ins_and_the_old_one_from_mrg() -> None:
    ins = f"~{MATRICULE}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
    text = "\r".join(
        [
            MSH.format(trigger="A47^ADT_A30", ctl="5"),
            "EVN||20240306111154",
            PID.format(ins=ins, status="VALI"),
            f"MRG|{OLD}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS",
        ]
    )
    event = read_adt(text)
    assert isinstance(event, IdentifierChange)
    assert event.kind is AdtEventKind.IDENTIFIER_CHANGE
    assert event.patient.identity.ins is not None and event.patient.identity.ins.matricule == MATRICULE
    assert event.previous.ins is not None and event.previous.ins.matricule == OLD
    assert not event.ins_removed


def test_a47_removing_the_ins_and_downgrading_to_prov() -> None:
    text = "\r".join(
        [
            MSH.format(trigger="A47^ADT_A30", ctl="6"),
            "EVN||20240306111154",
            PID.format(ins='~""^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS', status="PROV"),
            f"MRG|{MATRICULE}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS",
        ]
    )
    event = read_adt(text)
    assert isinstance(event, IdentifierChange)
    assert event.ins_removed
    assert event.patient.identity.ins is None
    assert event.patient.identity.status is IdentityStatus.PROV


def test_a40_pairs_each_surviving_patient_with_what_was_merged_into_it() -> None:
    text = "\r".join(
        [
            MSH.format(trigger="A40^ADT_A39", ctl="7"),
            "EVN||20240306111154",
            PID.format(ins="", status="PROV"),
            "MRG|000099^^^CHU-X&000897406&N^PI",
            PID.format(ins="", status="PROV").replace("000003", "000004"),
            "MRG|000098^^^CHU-X&000897406&N^PI",
        ]
    )
    event = read_adt(text)
    assert isinstance(event, PatientMerge)
    assert [(p.local_ids[0].id, m.local_ids[0].id) for p, m in event.merges] == [
        ("000003", "000099"),
        ("000004", "000098"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        MSH.format(trigger="A28^ADT_A05", ctl="1"),  # no PID
        MSH.format(trigger="A47^ADT_A30", ctl="1") + "\r" + PID.format(ins="", status="PROV"),  # no MRG
        MSH.format(trigger="A40^ADT_A39", ctl="1") + "\rMRG|1^^^X^PI",  # MRG before any PID
        MSH.format(trigger="A28^ADT_A05", ctl="1").replace("ADT^", "ORU^"),
    ],
)
def test_messages_missing_what_their_event_needs_are_refused(text: str) -> None:
    with pytest.raises(Hl7ParseError):
        read_adt(text)


def test_build_adt_writes_only_the_identity_feed_events() -> None:
    with pytest.raises(ValueError, match="A28"):
        build_adt("A40", _identity(), control_id="1")
