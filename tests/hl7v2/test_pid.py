"""Identity ↔ PAM-FR PID: the published sample, each rule both ways, and property tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_connector.errors import IdentityNotQualifiedError, InvalidIdentifierError
from dmp_connector.hl7v2 import (
    Hl7IdentityError,
    LocalId,
    Message,
    Segment,
    StatusMapping,
    parse,
    pid_segment,
    read_identity,
    read_pid,
)
from dmp_connector.ins import INS, BirthDate, Identity, IdentityStatus, IdentityTraits, InsOid, Sex, compute_key

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7v2"
MSH = "MSH|^~\\&|APP|ORG|PFI||20240101000000||ADT^A28^ADT_A05|1|P|2.5^FRA^2.11|||||FRA|UNICODE UTF-8"
IPP = LocalId(id="000003", namespace="CHU-X", authority_id="000897406", authority_id_type="N", type_code="PI")
BODY = "2790351215189"
MATRICULE = BODY + compute_key(BODY)


def _traits(**changes: object) -> IdentityTraits:
    values: dict[str, object] = {
        "birth_name": "PAT-TROIS",
        "birth_first_names": ("DOMINIQUE", "MARIE"),
        "sex": Sex.F,
        "birth_date": BirthDate(year=1979, month=3, day=28),
        "birth_place": "63220",
    }
    values.update(changes)
    return IdentityTraits.model_validate(values)


def _qualified(**changes: object) -> Identity:
    return Identity(traits=_traits(**changes), ins=INS(matricule=MATRICULE, oid=InsOid.NIR_TEST), status="QUAL")


def _line(**fields: str) -> str:
    """A PID line from ``f3=…, f32=…`` (field numbers as the standard counts them)."""
    top = max(int(k[1:]) for k in fields)
    return "PID|" + "|".join(fields.get(f"f{i}", "1" if i == 1 else "") for i in range(1, top + 1))


def _pid(text: str) -> Segment:
    return parse(MSH + "\r" + text + "\r").require("PID")


def _encoded(segment: Segment) -> str:
    return Message(segments=[parse(MSH).msh, segment]).encode().split("\r")[1]


# --------------------------------------------------------------------------- the published sample


def test_the_ans_admission_sample_reads_as_a_qualified_identity() -> None:
    patient = read_identity((DATA / "pam_admission_A01.er7").read_bytes())
    identity = patient.identity
    assert identity.status is IdentityStatus.QUAL
    assert identity.ins is not None
    assert identity.ins.matricule == "279035121518989"
    assert identity.ins.oid is InsOid.NIR_TEST
    assert identity.traits.birth_name == "PAT-TROIS"
    assert identity.traits.birth_first_names == ("DOMINIQUE",)
    assert identity.traits.birth_date == BirthDate(year=1979, month=3, day=28)
    assert identity.traits.sex is Sex.F
    assert identity.traits.birth_place == "63220"  # the BDL repetition, not the home address
    assert patient.local_ids == (IPP,)
    assert patient.reliability_codes == ("VALI",)
    assert not patient.ins_dropped


def test_written_back_the_sample_identity_gives_the_samples_pid_fields() -> None:
    patient = read_identity((DATA / "pam_admission_A01.er7").read_bytes())
    text = _encoded(pid_segment(patient.identity, local_ids=patient.local_ids))
    fields = text.split("|")
    assert fields[3] == (
        "000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    )
    assert fields[5] == "PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L"
    assert fields[7:9] == ["19790328", "F"]
    assert fields[11] == "^^^^^^BDL^^63220"
    assert fields[32] == "VALI"


# --------------------------------------------------------------------------- writing: the rules


def test_the_ins_is_written_only_for_a_qualified_identity() -> None:
    ins = INS(matricule=MATRICULE, oid=InsOid.NIR)
    for status in (IdentityStatus.PROV, IdentityStatus.VALI):
        identity = Identity(traits=_traits(), ins=ins, status=status)
        text = _encoded(pid_segment(identity, local_ids=[IPP]))
        assert MATRICULE not in text
        assert "^INS" not in text
    recup = Identity(traits=_traits(), ins=ins, status=IdentityStatus.RECUP)
    text = _encoded(pid_segment(recup, local_ids=[IPP]))
    assert MATRICULE not in text
    assert text.split("|")[32] == "PROV"  # RECUP may not share its INS: written PROV (StatusMapping default)


def test_a_qualified_identity_writes_nir_and_nia_with_their_own_authorities() -> None:
    text = _encoded(pid_segment(_qualified()))
    assert "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS" in text
    nia = Identity(traits=_traits(), ins=INS(matricule=MATRICULE, oid=InsOid.NIA), status="QUAL")
    assert "^^^ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO^INS" in _encoded(pid_segment(nia))


def test_birth_name_is_type_l_and_the_used_name_type_d_only_when_known() -> None:
    plain = _encoded(pid_segment(_qualified())).split("|")[5]
    assert plain == "PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE^^^^L"
    used = _encoded(pid_segment(_qualified(used_name="DARK", used_first_name="MARIE"))).split("|")[5]
    assert used == "PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE^^^^L~DARK^MARIE^^^^^D"
    first_only = _encoded(pid_segment(_qualified(used_first_name="MARIE-CECILE"))).split("|")[5]
    assert first_only.endswith("~^MARIE-CECILE^^^^^D")  # as the PAM-FR example writes it


def test_a_qualified_identity_without_birth_place_is_refused() -> None:
    with pytest.raises(Hl7IdentityError, match="BDL") as info:
        pid_segment(_qualified(birth_place=None))
    assert MATRICULE not in str(info.value)


def test_a_local_id_cannot_smuggle_the_ins() -> None:
    prov = Identity(traits=_traits())
    with pytest.raises(Hl7IdentityError, match="typed INS"):
        pid_segment(prov, local_ids=[LocalId(id=MATRICULE, type_code="INS")])
    with pytest.raises(Hl7IdentityError, match="INS OID"):
        pid_segment(prov, local_ids=[LocalId(id=MATRICULE, authority_id=InsOid.NIR.value, type_code="PI")])
    # NH (the NIR as a billing number) is allowed and written NH, never INS.
    text = _encoded(pid_segment(prov, local_ids=[LocalId(id=MATRICULE, authority_id=InsOid.NIR.value, type_code="NH")]))
    assert text.split("|")[3].endswith("^NH")


def test_an_identity_without_any_identifier_is_refused_and_a_wrong_key_is_refused() -> None:
    with pytest.raises(Hl7IdentityError, match="PID-3"):
        pid_segment(Identity(traits=_traits()))
    wrong = INS.parse(BODY + "00", oid=InsOid.NIR, lenient=True)
    with pytest.raises(InvalidIdentifierError):
        pid_segment(Identity(traits=_traits(), ins=wrong, status="QUAL"))


def test_attributes_travel_as_extra_pid32_repetitions() -> None:
    doubtful = Identity(traits=_traits(), doubtful=True, homonym=True)
    assert _encoded(pid_segment(doubtful, local_ids=[IPP])).split("|")[32] == "PROV~DOUT~HOMA"
    fictitious = Identity(traits=_traits(), fictitious=True)
    assert _encoded(pid_segment(fictitious, local_ids=[IPP])).split("|")[32] == "PROV~FICT"


# --------------------------------------------------------------------------- reading: the rules

INS_REP = f"{MATRICULE}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
NAMES = "PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE^^^^L"
BDL = "^^^^^^BDL^^63220"


def test_an_ins_without_vali_is_dropped_as_pam_fr_says() -> None:
    patient = read_pid(
        _pid(_line(f3=f"{INS_REP}~000003^^^CHU-X&000897406&N^PI", f5=NAMES, f7="19790328", f8="F", f11=BDL, f32="PROV"))
    )
    assert patient.ins_dropped
    assert patient.identity.ins is None
    assert patient.identity.status is IdentityStatus.PROV


def test_nh_is_never_read_as_the_ins() -> None:
    patient = read_pid(
        _pid(
            _line(f3=f"{MATRICULE}^^^&1.2.250.1.213.1.4.8&ISO^NH", f5=NAMES, f7="19790328", f8="F", f11=BDL, f32="VALI")
        )
    )
    assert patient.identity.ins is None
    assert patient.identity.status is IdentityStatus.VALI  # HL7 VALI without an INS: document checked, no INS [I]
    assert patient.local_ids[0].type_code == "NH"


def test_of_a_nir_and_a_nia_the_nir_is_kept() -> None:
    nia_body = "1790351215189"
    nia = nia_body + compute_key(nia_body)
    nia_rep = f"{nia}^^^ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO^INS"
    text = _line(f3=f"{nia_rep}~{INS_REP}", f5=NAMES, f7="19790328", f8="F", f11=BDL, f32="VALI")
    patient = read_pid(_pid(text))
    assert patient.identity.ins is not None and patient.identity.ins.oid is InsOid.NIR
    assert [i.oid for i in patient.other_ins] == [InsOid.NIA]


@pytest.mark.parametrize(
    ("pid", "error", "match"),
    [
        (f"PID|1||{MATRICULE}^^^X&1.2.250.1.213.1.4.13&ISO^INS||{NAMES}||19790328|F", InvalidIdentifierError, "NSS"),
        (f"PID|1||{BODY}00^^^X&1.2.250.1.213.1.4.8&ISO^INS||{NAMES}||19790328|F", InvalidIdentifierError, "key"),
        ("PID|1||1^^^X^PI||PAT-TROIS^DOMINIQUE^^^^^D||19790328|F", Hl7IdentityError, "type L"),
        ("PID|1||1^^^X^PI||" + NAMES + "||1979-03|F", Hl7IdentityError, "PID-7"),
        ("PID|1||1^^^X^PI||" + NAMES + "||19790328|Z", Hl7IdentityError, "PID-8"),
        (_line(f3=INS_REP, f5=NAMES, f7="19790328", f8="F", f32="VALI"), Hl7IdentityError, "BDL"),
        (_line(f3="1^^^X^PI", f5=NAMES, f7="19790328", f8="F", f32="VALI~DOUT"), Hl7IdentityError, "doubtful"),
    ],
)
def test_a_pid_that_breaks_the_rules_is_refused_without_quoting_it(
    pid: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        read_pid(_pid(pid))
    assert MATRICULE not in str(info.value)
    assert "PAT-TROIS" not in str(info.value)
    assert "1979" not in str(info.value)


def test_partial_birth_dates_and_the_erased_used_name() -> None:
    base = "PID|1||1^^^X^PI||" + NAMES + '~""^^^^^^D||{date}|U'
    assert read_pid(_pid(base.format(date="1979"))).identity.traits.birth_date == BirthDate(year=1979)
    assert read_pid(_pid(base.format(date="197903"))).identity.traits.birth_date == BirthDate(year=1979, month=3)
    patient = read_pid(_pid(base.format(date="197903281200")))
    assert patient.identity.traits.birth_date == BirthDate(year=1979, month=3, day=28)
    assert patient.identity.traits.used_name is None
    assert patient.identity.traits.sex is Sex.I


def test_the_status_mapping_is_a_setting() -> None:
    mapping = StatusMapping(written={**StatusMapping().written, IdentityStatus.VALI: "PROV"})
    vali = Identity(traits=_traits(), status=IdentityStatus.VALI)
    assert _encoded(pid_segment(vali, local_ids=[IPP], mapping=mapping)).split("|")[32] == "PROV"


def test_qualified_without_the_trait_rules_is_refused_when_writing() -> None:
    with pytest.raises(IdentityNotQualifiedError):
        Identity(traits=_traits(), ins=INS(matricule=MATRICULE, oid=InsOid.NIR), status="VALI").require_qualified("x")


# --------------------------------------------------------------------------- properties

NAME = st.from_regex(r"[A-Z]{1,8}(?:[ '-][A-Z]{1,8}){0,2}", fullmatch=True)


@st.composite
def identities(draw: st.DrawFn) -> Identity:
    year = draw(st.integers(1900, 2024))
    month = draw(st.one_of(st.none(), st.integers(1, 12)))
    day = draw(st.one_of(st.none(), st.integers(1, 28))) if month is not None else None
    place = draw(st.one_of(st.from_regex(r"[0-9]{5}", fullmatch=True), st.sampled_from(["2A004", "99134", "99999"])))
    status = draw(st.sampled_from(list(IdentityStatus)))
    attribute = draw(st.sampled_from(["", "doubtful", "fictitious"])) if status is IdentityStatus.PROV else ""
    traits = IdentityTraits(
        birth_name=draw(NAME),
        birth_first_names=tuple(
            draw(st.lists(st.from_regex(r"[A-Z]{1,8}(?:-[A-Z]{1,8})?", fullmatch=True), min_size=1, max_size=3))
        ),
        sex=draw(st.sampled_from(list(Sex))),
        birth_date=BirthDate(year=year, month=month, day=day),
        birth_place=draw(st.one_of(st.none(), st.just(place))) if status is not IdentityStatus.QUAL else place,
        used_name=draw(st.one_of(st.none(), NAME)),
        used_first_name=draw(st.one_of(st.none(), NAME)),
    )
    sex_digit = draw(st.sampled_from("12"))
    department, serial = draw(st.integers(1, 95)), draw(st.integers(0, 999_999))
    body = f"{sex_digit}{year % 100:02d}{month or 1:02d}{department:02d}{serial:06d}"
    has_ins = status.ins_retrieved or draw(st.booleans())
    ins = INS(matricule=body + compute_key(body), oid=draw(st.sampled_from(list(InsOid)))) if has_ins else None
    return Identity(
        traits=traits,
        ins=ins,
        status=status,
        doubtful=attribute == "doubtful",
        fictitious=attribute == "fictitious",
        homonym=draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identities())
def test_identity_to_pid_to_identity_keeps_everything_the_rules_let_travel(identity: Identity) -> None:
    segment = pid_segment(identity, local_ids=[IPP])
    text = Message(segments=[parse(MSH).msh, segment]).encode()
    back = read_identity(text)
    if identity.status in (IdentityStatus.QUAL, IdentityStatus.PROV, IdentityStatus.VALI):
        expected = identity if identity.status is IdentityStatus.QUAL else identity.updated(ins=None)
    else:  # RECUP: its INS may not travel; PAM-FR has no code for it
        expected = identity.updated(status=IdentityStatus.PROV, ins=None)
    assert back.identity == expected
    assert back.local_ids == (IPP,)
    assert not back.ins_dropped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identities())
def test_the_ins_never_leaves_with_a_status_that_is_not_qualified(identity: Identity) -> None:
    text = Message(segments=[parse(MSH).msh, pid_segment(identity, local_ids=[IPP])]).encode()
    if identity.ins is not None and identity.status is not IdentityStatus.QUAL:
        assert identity.ins.matricule not in text
    has_ins_rep = "^INS" in text
    assert has_ins_rep == (identity.status is IdentityStatus.QUAL)
    if has_ins_rep:
        assert text.split("\r")[1].split("|")[32].split("~")[0] == "VALI"
