"""DMP refusal codes: confirmed ones by ITI TF-3 and the public sources, DMP-specific XDS ones by a settings table."""

from __future__ import annotations

import pytest

from dmp_connector._transport import CallContext
from dmp_connector.dmp.errors import (
    DmpAccessDeniedError,
    DmpClosedError,
    DmpNotFoundError,
    DmpRegistryError,
    DmpServiceError,
    error_for_codes,
    registry_error,
)
from dmp_connector.dmp.operations import RegistryStoredQuery
from dmp_connector.dmp.td import AuthorisationAction, SetAuthorisationOperation
from dmp_connector.errors import SoapFaultError
from dmp_connector.soap.envelope import parse_envelope
from dmp_connector.xds import AdhocQueryRequest, AdhocQueryResponse, Cx, FindDocumentsQuery, RegistryResponse
from dmp_connector.xds.queries import build_adhoc_query_response
from dmp_connector.xds.vocabulary import ResponseStatus
from dmp_connector.xml import parse_xml, to_bytes
from tests.dmp.client_support import INS_TEST, SETTINGS, envelope, error

CX = Cx.parse(INS_TEST.to_xds_cx())


def failure(*errors: object) -> RegistryResponse:
    return RegistryResponse(status=ResponseStatus.FAILURE, errors=errors)


def test_iti_and_public_codes_are_typed_whatever_the_table() -> None:
    unknown = registry_error(failure(error("XDSUnknownPatientId", "patient inconnu")))
    assert isinstance(unknown, DmpNotFoundError) and isinstance(unknown, DmpRegistryError)
    assert isinstance(registry_error(failure(error("DMPClosed"))), DmpClosedError)
    plain = registry_error(failure(error("XDSRegistryError", "erreur interne")))
    assert type(plain) is DmpRegistryError and plain.codes == ("XDSRegistryError",)


def test_a_generic_code_whose_context_names_a_dmp_code_takes_its_kind() -> None:
    named = registry_error(failure(error("XDSRegistryError", "DMPClosed : le dossier est fermé")))
    assert isinstance(named, DmpClosedError) and named.codes == ("XDSRegistryError",)
    not_a_code = registry_error(failure(error("XDSRegistryError", "le DMP est fermé")))
    assert type(not_a_code) is DmpRegistryError


def stored_query() -> RegistryStoredQuery:
    return RegistryStoredQuery(AdhocQueryRequest(query=FindDocumentsQuery(patient_id=CX)), security=None, patient=None)


def answer(response: RegistryResponse) -> object:
    body = build_adhoc_query_response(AdhocQueryResponse(response=response))
    return parse_envelope(to_bytes(envelope(parse_xml(to_bytes(body)))))


def built(operation: RegistryStoredQuery | SetAuthorisationOperation, table: dict[str, str]) -> None:
    settings = SETTINGS.model_copy(update={"dmp": SETTINGS.dmp.model_copy(update={"error_codes": table})})
    operation.build(CallContext(settings=settings, message_id="urn:uuid:00000000-0000-4000-8000-000000000001"))


def test_the_unconfirmed_dmp_codes_come_from_the_settings_table() -> None:
    default = stored_query()
    built(default, dict(SETTINGS.dmp.error_codes))
    with pytest.raises(DmpAccessDeniedError):
        default.parse(answer(failure(error("DMPAccessDenied"))))  # type: ignore[arg-type]
    emptied = stored_query()
    built(emptied, {})
    with pytest.raises(DmpRegistryError) as info:
        emptied.parse(answer(failure(error("DMPAccessDenied"))))  # type: ignore[arg-type]
    assert type(info.value) is DmpRegistryError  # no longer a known kind
    renamed = stored_query()
    built(renamed, {"DMPRefusAcces": "access_denied", "DMPInexistant": "not_found"})
    with pytest.raises(DmpAccessDeniedError):
        renamed.parse(answer(failure(error("DMPRefusAcces"))))  # type: ignore[arg-type]
    with pytest.raises(DmpNotFoundError):
        renamed.parse(answer(failure(error("XDSRegistryError", "DMPInexistant: pas de dossier"))))  # type: ignore[arg-type]
    operation = SetAuthorisationOperation(INS_TEST, AuthorisationAction.ADD, treating_doctor=False, security=None)
    built(operation, {"DMPRefusAcces": "access_denied"})
    body = parse_xml(
        b'<setAuthorizationResponse xmlns="urn:si-dmp-habilitations"><status>DMPRefusAcces</status>'
        b"</setAuthorizationResponse>"
    )
    with pytest.raises(DmpServiceError) as status:  # the table applies to the non-HL7 statuses too
        operation.parse(parse_envelope(to_bytes(envelope(body))))
    assert isinstance(status.value, DmpAccessDeniedError)
    fault = SoapFaultError(
        code="{http://www.w3.org/2003/05/soap-envelope}Sender", subcodes=("{urn:dmp}DMPRefusAcces",), reason="non"
    )
    assert isinstance(renamed.map_fault(fault), DmpAccessDeniedError)
    assert not isinstance(stored_query().map_fault(fault), DmpAccessDeniedError)  # default table: unknown code


def test_outside_an_operation_the_default_table_applies() -> None:
    assert isinstance(error_for_codes(["DMPNotFound"]), DmpNotFoundError)
    assert type(error_for_codes(["DMPRefusAcces"])) is DmpServiceError
