"""INSi faults (ins.md §2.5) become typed errors; technical ones are retried, refusals are not."""

from __future__ import annotations

import httpx
import pytest
import respx

from dmp_connector.audit import MemorySink, Outcome
from dmp_connector.errors import ServiceError, SoapFaultError
from dmp_connector.ins.insi import InsiServiceError, InsiSeverity, SearchCriteria, map_insi_fault

from . import fixtures
from .helpers import ADRUN, MODES, URL, call, identity, settings

SOAP = {"Content-Type": "application/soap+xml; charset=utf-8"}


def soap(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers=SOAP, content=body)


def fault_of(mode: str, body: bytes) -> tuple[InsiServiceError, int]:
    with respx.mock:
        route = respx.post(URL).mock(return_value=soap(body, 500))
        with pytest.raises(InsiServiceError) as info:
            call(mode, settings(), "search", ADRUN, criteria=SearchCriteria())
        return info.value, route.call_count


@MODES
def test_unknown_idam_is_a_refusal_with_a_hint(mode: str) -> None:
    error, calls = fault_of(mode, fixtures.FAULT_UNKNOWN_IDAM)
    assert calls == 1 and error.attempts == 1
    assert isinstance(error, ServiceError) and error.service == "insi"
    assert error.code == "desir_550" and error.subcode == "siram_100" and error.fault_code == "Sender"
    assert not error.transient
    assert error.text is not None and error.text.startswith("L'accès par ce progiciel")
    assert error.detail_text == "Numéro d'autorisation du logiciel inconnu."
    assert error.severity is InsiSeverity.ERROR
    assert error.fault_message_id == "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
    assert error.operation == "rechercherInsAvecTraitsIdentite"
    assert error.hint is not None and "insi_authorisation_id" in error.hint
    assert isinstance(error.__cause__, SoapFaultError)


@MODES
def test_technical_error_is_transient_and_retried_until_attempts_run_out(mode: str) -> None:
    error, calls = fault_of(mode, fixtures.FAULT_TECHNICAL)
    assert calls == 3 and error.attempts == 3
    assert error.code == "insi_102" and error.subcode == "siram_40" and error.fault_code == "Receiver"
    assert error.transient
    assert error.severity is InsiSeverity.FATAL  # sent as "fatal", read leniently
    assert error.text is not None and "temporairement inaccessible" in error.text


@MODES
def test_unavailable_with_the_xsd_spelling_and_an_unbound_prefix(mode: str) -> None:
    error, calls = fault_of(mode, fixtures.FAULT_UNAVAILABLE)
    assert error.code == "insi_111" and error.subcode == "siram_40" and error.transient
    assert error.severity is InsiSeverity.FATAL
    assert calls == 3


@MODES
def test_access_level_names_the_certificate_cn(mode: str) -> None:
    error, calls = fault_of(mode, fixtures.FAULT_ACCESS_LEVEL)
    assert calls == 1 and not error.transient
    assert error.code == "DESIR_560" and error.subcode is None
    assert error.hint is not None and "INSI-AUTO" in error.hint and "INSI-MANU" in error.hint


@MODES
def test_fault_without_detail_takes_the_subcode(mode: str) -> None:
    error, calls = fault_of(mode, fixtures.FAULT_NO_DETAIL)
    assert error.code == "siram_40" and error.transient and error.severity is None and error.detail_text is None
    assert calls == 3


@MODES
def test_transient_fault_then_success_is_retried_with_the_same_request(mode: str) -> None:
    sink = MemorySink()
    with respx.mock:
        route = respx.post(URL).mock(side_effect=[soap(fixtures.FAULT_TECHNICAL, 500), soap(fixtures.FOUND_PREFIXED)])
        result = call(mode, settings(), "verify", identity(ADRUN, "275126322074974"), audit=[sink])
        assert route.call_count == 2
        assert route.calls[0].request.content == route.calls[1].request.content
    assert result.confirmed
    assert [(e.attempt, e.outcome, e.error_code, e.http_status) for e in sink.events] == [
        (1, Outcome.FAILURE, "insi_102", 500),
        (2, Outcome.SUCCESS, None, 200),
    ]
    assert len({e.correlation_id for e in sink.events}) == 1
    assert len({e.patient for e in sink.events}) == 1
    for event in sink.events:
        text = event.to_json()
        for secret in ("ADRUN", "ZOE", "275126322074974", "2751263220749", "63220", "1975-12-31"):
            assert secret not in text


@MODES
def test_desir_550_is_not_retried_and_audited_once(mode: str) -> None:
    sink = MemorySink()
    with respx.mock:
        route = respx.post(URL).mock(return_value=soap(fixtures.FAULT_UNKNOWN_IDAM, 500))
        with pytest.raises(InsiServiceError):
            call(mode, settings(), "search", ADRUN, audit=[sink])
        assert route.call_count == 1
    assert [(e.outcome, e.error_type, e.error_code) for e in sink.events] == [
        (Outcome.FAILURE, "InsiServiceError", "desir_550")
    ]


@pytest.mark.parametrize(
    ("code", "subcodes", "detail", "expected_code", "transient"),
    [
        ("{x}Receiver", (), None, "Receiver", True),
        ("{x}Sender", (), None, "Sender", False),
        ("{x}Sender", ("{x}siram_40",), None, "siram_40", True),
        (
            "{x}Receiver",
            ("{x}siram_40",),
            b'<e xmlns:s="urn:siram"><s:Erreur code="desir_551"/></e>',
            "desir_551",
            False,
        ),
        ("{x}Sender", ("{x}siram_10",), b'<e xmlns:s="urn:siram"><s:Erreur code="insi_105"/></e>', "insi_105", True),
        ("{x}Sender", (), b"<not-xml", "Sender", False),
        ("{x}Sender", (), b'<e xmlns:s="urn:other"><s:Erreur code="x"/></e>', "Sender", False),
    ],
)
def test_fault_mapping_rules(
    code: str, subcodes: tuple[str, ...], detail: bytes | None, expected_code: str, transient: bool
) -> None:
    fault = SoapFaultError(code=code, reason="r", subcodes=subcodes, detail=detail)
    error = map_insi_fault(fault)
    assert error.code == expected_code and error.transient is transient


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("fatal", InsiSeverity.FATAL),
        ("fatale", InsiSeverity.FATAL),
        ("FATALE", InsiSeverity.FATAL),
        ("siram:erreur", InsiSeverity.ERROR),
        ("avertissement", InsiSeverity.WARNING),
        ("information", InsiSeverity.INFORMATION),
        ("weird", None),
        (None, None),
    ],
)
def test_severity_is_read_leniently(text: str | None, severity: InsiSeverity | None) -> None:
    assert InsiSeverity.read(text) is severity
