"""Findings of the HL7 v2 review: identity ambiguities, identity in exception chains, hostile input."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_connector.cda import extract_metadata
from dmp_connector.errors import PatientMismatchError, RequestTimeout
from dmp_connector.hl7v2 import (
    Distribution,
    Hl7IdentityError,
    Hl7ParseError,
    Hl7RejectedError,
    Hl7Settings,
    IdentityEvent,
    LocalId,
    MllpClient,
    Recipient,
    build_adt,
    build_mdm,
    parse,
    read_adt,
    read_mdm,
)
from dmp_connector.ins import BirthDate, Identity, IdentityStatus, IdentityTraits, Sex, compute_key
from dmp_connector.sandbox import MllpListener

KIT = Path(__file__).resolve().parents[3] / "shared" / "cda-2025" / "ExemplesCDA"
# Its recordTarget: PAT-TROIS, first names DOMINIQUE MARIE-LOUISE, INS 279035121518989 (key right).
EXAMPLE = KIT / "IMG-DA-IMG_2024.01_Scanner_Crane_ThoraxAbdomenPelvis.xml"
A = "2790351215189"
B = "1850275123456"
NIR = "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
NIA = "^^^ASIP-SANTE-INS-NIA&1.2.250.1.213.1.4.9&ISO^INS"
MSH = "MSH|^~\\&|||||||ADT^A31|1|P|2.5|||||FRA|UNICODE UTF-8"
REST = "||DUPONT^MARIE^MARIE^^^^L||19790328|F|||^^^^^^BDL^^63220|||||||||||||||||||||"


def _adt(pid3: str, pid32: str) -> bytes:
    return f"{MSH}\rPID|1||{pid3}{REST}{pid32}\r".encode()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def _assert_no_identity(exc: BaseException, *values: str) -> None:
    for link in _chain(exc):
        texts = [str(link), *(repr(a) for a in link.args)]
        obj = getattr(link, "object", None)
        if obj is not None:
            texts.append(obj.decode("latin-1") if isinstance(obj, bytes) else str(obj))
        for text in texts:
            for value in values:
                assert value not in text, f"{type(link).__name__} carries an identity value"


# --------------------------------------------------------------------------- 1. PID-3 / PID-32 ambiguity


def test_two_different_nirs_in_pid3_are_refused_without_quoting_them() -> None:
    a, b = A + compute_key(A), B + compute_key(B)
    with pytest.raises(Hl7IdentityError) as info:
        read_adt(_adt(f"{a}{NIR}~{b}{NIR}", "VALI"))
    _assert_no_identity(info.value, a, b, "DUPONT")


def test_a_nir_beside_a_nia_and_a_repeated_nir_are_still_read() -> None:
    a, b = A + compute_key(A), B + compute_key(B)
    event = read_adt(_adt(f"{a}{NIR}~{b}{NIA}", "VALI"))
    assert isinstance(event, IdentityEvent)
    assert event.patient.identity.ins is not None and event.patient.identity.ins.matricule == a
    event = read_adt(_adt(f"{a}{NIR}~{a}{NIR}", "VALI"))
    assert isinstance(event, IdentityEvent)
    assert event.patient.identity.status is IdentityStatus.QUAL


def test_pid32_holding_vali_and_prov_is_refused_not_read_as_qualified() -> None:
    a = A + compute_key(A)
    with pytest.raises(Hl7IdentityError, match="PID-32"):
        read_adt(_adt(f"{a}{NIR}", "VALI~PROV"))


# --------------------------------------------------------------------------- 2. MDM: the twin's document


def _twin(data: bytes) -> bytes:
    assert b"DOMINIQUE^DOMINIQUE MARIE-LOUISE" in data
    return data.replace(b"DOMINIQUE^DOMINIQUE MARIE-LOUISE", b"CAMILLE^CAMILLE")


def test_a_pid_with_a_twins_first_names_is_refused_with_the_ins() -> None:
    data = build_mdm(EXAMPLE.read_bytes(), control_id="C1", distribution=Distribution(to_dmp=True)).to_bytes()
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(_twin(data))
    assert "first_first_name differs" in info.value.problems
    _assert_no_identity(info.value, "CAMILLE", "DOMINIQUE", "PAT-TROIS")


def test_a_pid_with_a_twins_first_names_is_refused_without_any_ins() -> None:
    source = EXAMPLE.read_bytes().replace(b'<id extension="279035121518989" root="1.2.250.1.213.1.4.10"/>', b"")
    distribution = Distribution(to_dmp=False, recipients=(Recipient(address="dr@example.org"),))
    # The metadata (XDS, which needs an INS) from the untouched document; the CDA sent carries none.
    metadata = extract_metadata(EXAMPLE.read_bytes(), confidentiality=distribution.confidentiality())
    data = build_mdm(source, control_id="C2", distribution=distribution, metadata=metadata).to_bytes()
    assert read_mdm(data).patient.identity.ins is None  # the untampered message reads
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(_twin(data))
    assert {"birth_first_names differs", "first_first_name differs"} <= set(info.value.problems)


def test_a_pid_with_another_birth_place_is_refused() -> None:
    data = build_mdm(EXAMPLE.read_bytes(), control_id="C3", distribution=Distribution(to_dmp=True)).to_bytes()
    pid = next(line for line in data.split(b"\r") if line.startswith(b"PID"))
    place = pid.split(b"|")[11].split(b"^")[8]
    assert place
    tampered = data.replace(pid, pid.replace(b"^BDL^^" + place, b"^BDL^^75056"))
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(tampered)
    assert info.value.problems == ("birth_place differs",) or list(info.value.problems) == ["birth_place differs"]


# --------------------------------------------------------------------------- 3. identity in exception chains


def test_bytes_not_in_the_named_charset_leave_no_identity_in_the_chain() -> None:
    a = A + compute_key(A)
    data = f"{MSH}\rPID|1||{a}{NIR}{REST}VALI\r".encode() + "PID|x|H\xe9l\xe8ne".encode("latin-1")
    with pytest.raises(Hl7ParseError) as info:
        read_adt(data)
    assert info.value.__cause__ is None
    _assert_no_identity(info.value, a, "DUPONT", "19790328")


def test_a_name_the_charset_cannot_write_raises_a_typed_error_naming_the_field() -> None:
    traits = IdentityTraits(
        birth_name="WAŁĘSA", birth_first_names=("LECH",), sex=Sex.M, birth_date=BirthDate(year=1943, month=9, day=29)
    )
    message = build_adt(
        "A28",
        Identity(traits=traits, status=IdentityStatus.PROV),
        control_id="1",
        settings=Hl7Settings(charset="8859/15"),
        local_ids=[LocalId(id="123")],
    )
    with pytest.raises(Hl7ParseError, match="PID-5") as info:
        message.to_bytes()
    assert info.value.__cause__ is None
    _assert_no_identity(info.value, "WAŁĘSA", "WA", "LECH", "1943")


# --------------------------------------------------------------------------- 4. hostile PRT, sandbox faults


def _with_bad_recipient() -> bytes:
    distribution = Distribution(to_dmp=True, recipients=(Recipient(address="dr@example.org"),))
    data = build_mdm(EXAMPLE.read_bytes(), control_id="C4", distribution=distribution).to_bytes()
    return data.replace(b"dr@example.org", b"a b@c")


def test_a_prt_address_of_the_wrong_shape_is_a_typed_parse_error() -> None:
    with pytest.raises(Hl7ParseError) as info:
        read_mdm(_with_bad_recipient())
    _assert_no_identity(info.value, "a b@c")


def test_the_sandbox_answers_a_bad_prt_over_mllp_instead_of_dropping_the_connection() -> None:
    with (
        MllpListener() as listener,
        MllpClient(listener.host, listener.port, timeout=10) as client,
        pytest.raises(Hl7RejectedError) as info,
    ):
        client.send(parse(_with_bad_recipient().decode()))
    assert info.value.code == "AE"
    assert listener.simulator.documents == []


def test_the_sandbox_answers_an_unforeseen_fault_with_an_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    def fault(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a fault the simulator did not foresee")

    monkeypatch.setattr("dmp_connector.sandbox.mllp.read_adt", fault)
    a = A + compute_key(A)
    with (
        MllpListener() as listener,
        MllpClient(listener.host, listener.port, timeout=10) as client,
        pytest.raises(Hl7RejectedError) as info,
    ):
        client.send(parse(_adt(f"{a}{NIR}", "VALI").decode()))
    assert info.value.code == "AE"
    assert "207" in info.value.errors or "INTERNAL" in info.value.errors


# --------------------------------------------------------------------------- 5. size limit on text, A40 pairs


def test_text_messages_honour_max_bytes_as_bytes_do() -> None:
    a = A + compute_key(A)
    text = _adt(f"{a}{NIR}", "VALI").decode()
    with pytest.raises(Hl7ParseError, match="larger"):
        read_adt(text, max_bytes=100)
    data = build_mdm(EXAMPLE.read_bytes(), control_id="C5", distribution=Distribution(to_dmp=True)).to_bytes()
    with pytest.raises(Hl7ParseError, match="larger"):
        read_mdm(data.decode(), max_bytes=1000)
    assert read_mdm(data.decode()).control_id == "C5"


def test_an_a40_pid_without_its_mrg_is_refused() -> None:
    a, b = A + compute_key(A), B + compute_key(B)
    head = "MSH|^~\\&|||||||ADT^A40^ADT_A39|1|P|2.5|||||FRA|UNICODE UTF-8\rEVN||20240101\r"
    pid = f"PID|1||{a}{NIR}{REST}VALI\r"
    mrg = f"MRG|{b}{NIR}\r"
    assert read_adt(head + pid + mrg).kind.value  # a whole pair reads
    for body in (pid + mrg + pid, pid + pid + mrg):
        with pytest.raises(Hl7ParseError, match="without its MRG"):
            read_adt(head + body)


def test_the_sync_client_s_name_lookup_is_under_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    released = threading.Event()

    def slow_resolver(*_args: object, **_kwargs: object) -> list[object]:
        released.wait(5)  # a resolver that hangs (no timeout of its own)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    client = MllpClient("mllp.invalid", 2575, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(RequestTimeout):
            client.exchange(b"MSH|^~\\&|")
        assert time.monotonic() - started < 3
    finally:
        released.set()
        client.close()


def test_first_names_are_compared_even_for_a_name_insi_cannot_normalise() -> None:
    # "A_B" is outside INSi's alphabet: the traits are then compared as written, first names included.
    source = EXAMPLE.read_bytes().replace(b">PAT-TROIS<", b">A_B<")
    data = build_mdm(source, control_id="C6", distribution=Distribution(to_dmp=True)).to_bytes()
    assert read_mdm(data).control_id == "C6"
    with pytest.raises(PatientMismatchError) as info:
        read_mdm(_twin(data))
    assert {"birth_first_names differs", "first_first_name differs"} <= set(info.value.problems)
