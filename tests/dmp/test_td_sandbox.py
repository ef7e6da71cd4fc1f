"""The DMP transactions through the public clients against the simulator, over loopback mutual TLS, sync and async.

The simulator answers in the shapes public client implementations read (``dmp_td.md``), so these
round trips exercise the same readers the fixture tests of ``test_td_public_shapes.py`` pin down.
"""

from __future__ import annotations

import datetime as dt

import pytest

from dmp_connector.dmp import (
    Address,
    AuthorisationStatus,
    ClosureReason,
    DmpState,
    Oppositions,
    PatientSearch,
    RecentDmpKind,
    VitaleCard,
)
from dmp_connector.dmp.errors import DmpAccessDeniedError, DmpAlreadyExistsError, DmpClosedError
from dmp_connector.errors import ValidationError
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS

from .test_sandbox_integration import MODES, Dmp, Sandbox, identity, run

ADRUN = identity(DEFAULT_DMP_PATIENTS[0])
NO_DMP = identity(DEFAULT_DMP_PATIENTS[1])
CLOSED = identity(DEFAULT_DMP_PATIENTS[2])
TCHITCHI = identity(DEFAULT_DMP_PATIENTS[5])


@MODES
def test_td02_td03_td02_reads_valide_and_the_treating_doctor(mode: str, sandbox: Sandbox) -> None:
    dmp = Dmp(mode, sandbox.settings(), sandbox.credentials.signer)

    async def scenario() -> None:
        before = await dmp("test_existence", ADRUN)
        assert before.active and before.authorisation is AuthorisationStatus.NONE and before.treating_doctor is False
        assert (await dmp("set_authorisation", ADRUN)).ok
        after = await dmp("test_existence", ADRUN)
        assert after.authorisation is AuthorisationStatus.VALID and after.treating_doctor is False
        assert (await dmp("set_authorisation", ADRUN, as_treating_doctor=True)).ok
        assert (await dmp("test_existence", ADRUN)).treating_doctor is True
        listed = await dmp("list_authorisations", ADRUN)
        assert [(p.national_id, p.family_name) for p in listed] == [("899700000001", "SANDBOX")]
        assert (await dmp("set_authorisation", ADRUN, add=False)).ok
        assert (await dmp("test_existence", ADRUN)).authorisation is AuthorisationStatus.NONE
        with pytest.raises(DmpAccessDeniedError):
            await dmp("list_authorisations", ADRUN)

    run(scenario)


@MODES
def test_a_closed_dmp_and_an_expired_authorisation_are_read_as_such(mode: str, sandbox: Sandbox) -> None:
    dmp = Dmp(mode, sandbox.settings(), sandbox.credentials.signer)

    async def scenario() -> None:
        closed = await dmp("test_existence", CLOSED)
        assert closed.exists and closed.state is DmpState.CLOSED and not closed.active
        assert closed.closure is not None and closed.closure.date == dt.date(2024, 6, 1)
        assert closed.closure.reason is ClosureReason.PATIENT_REQUEST
        expired = await dmp("test_existence", TCHITCHI)
        assert expired.active and expired.authorisation is AuthorisationStatus.EXPIRED
        assert expired.attached_to_mes is False
        with pytest.raises(DmpAccessDeniedError):
            await dmp("find_documents", TCHITCHI)  # an expired authorisation does not open the DMP
        with pytest.raises(DmpClosedError):
            await dmp("set_authorisation", CLOSED)

    run(scenario)


@MODES
def test_create_close_reactivate_update_and_search(mode: str, sandbox: Sandbox) -> None:
    dmp = Dmp(mode, sandbox.settings(), sandbox.credentials.signer)

    async def scenario() -> None:
        assert not (await dmp("test_existence", NO_DMP)).exists
        with pytest.raises(ValidationError, match="consent"):
            await dmp("create_dmp", NO_DMP)
        card = VitaleCard(birth_name="ADRDEUX", given_name="LAURENT", birth_date="810101")
        address = Address(street_lines=("1 rue de la Paix",), postal_code="63220", city="Arlanc", country="France")
        await dmp("create_dmp", NO_DMP, consent=True, civility="M", address=address, vitale=card)
        created = await dmp("test_existence", NO_DMP)
        assert created.active and created.authorisation is AuthorisationStatus.VALID  # the creator [I]
        with pytest.raises(DmpAlreadyExistsError):
            await dmp("create_dmp", NO_DMP, consent=True)
        data = await dmp("get_administrative_data", NO_DMP)
        assert data.civility == "M" and data.address == address and data.oppositions == Oppositions()
        await dmp(
            "update_administrative_data", NO_DMP, data.model_copy(update={"oppositions": Oppositions(centre_15=True)})
        )
        assert (await dmp("get_administrative_data", NO_DMP)).oppositions.centre_15

        await dmp("close_dmp", NO_DMP, ClosureReason.PATIENT_REQUEST, text="à sa demande")
        closed = await dmp("test_existence", NO_DMP)
        assert closed.state is DmpState.CLOSED and closed.closure is not None
        assert closed.closure.text == "à sa demande" and closed.closure.date == dt.datetime.now(dt.UTC).date()
        with pytest.raises(DmpClosedError):
            await dmp("close_dmp", NO_DMP, ClosureReason.PATIENT_REQUEST)
        with pytest.raises(ValidationError, match="consent"):
            await dmp("reactivate_dmp", NO_DMP)
        await dmp("reactivate_dmp", NO_DMP, consent=True)
        assert (await dmp("test_existence", NO_DMP)).active
        with pytest.raises(DmpAlreadyExistsError):
            await dmp("reactivate_dmp", NO_DMP, consent=True)

        found = await dmp("find_patients", PatientSearch(family_name="adrdeux", approximate=True))
        assert [c.ins for c in found] == [NO_DMP.ins]
        recent = await dmp("recent_dmps", dt.date.today() - dt.timedelta(days=1), RecentDmpKind.LAST_AUTHORISATION)
        assert [(r.family_name, r.birth_date, r.ins) for r in recent] == [
            (NO_DMP.traits.birth_name, NO_DMP.traits.birth_date, None)
        ]

    run(scenario)
