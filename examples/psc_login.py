"""A Pro Santé Connect login by CIBA, then the DMP in AIR mode and MSSanté with the PSC token.

Run it with ``python examples/psc_login.py``. It needs no network: a throw-away PKI, the PSC
simulator on 127.0.0.1 over TLS, the DMP simulator (in-process) and an MSSanté operator on
loopback that introspects tokens at the PSC simulator. The script plays the intermediate
server of an installed software: it asks PSC to reach the professional's e-CPS, shows the
binding message, waits for the (simulated) approval, reads who logged in, consults a DMP in
reinforced indirect mode (AIR) and lists the professional's mailbox over IMAP with XOAUTH2.
It exits with status 0 only if every check holds.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from pydantic import SecretStr

from dmp_connector.codes import Code
from dmp_connector.config import (
    MssanteAuthMode,
    MssanteSettings,
    Organisation,
    PscSettings,
    Settings,
    SigningSettings,
    SoftwareIdentity,
    StructureIdKind,
)
from dmp_connector.ins import Identity, IdentityStatus
from dmp_connector.mssante import MssanteClient
from dmp_connector.psc import PscClient, PscSessionClosedError, air_settings
from dmp_connector.sandbox import generate_test_pki
from dmp_connector.sandbox.dmp import DEFAULT_DMP_PATIENTS, DmpSimulator, in_process_dmp
from dmp_connector.sandbox.mssante import SandboxMailOperator
from dmp_connector.sandbox.psc import PscIntrospectionCheck, PscSimulator, serve_psc
from dmp_connector.signature.vihf import AuthenticationMode

MAILBOX = "jeanne.sandbox@medecin.mssante.fr"
NATIONAL_ID = "899700000001"  # SANDBOX JEANNE in the PSC simulator
failures = 0


def step(text: str) -> None:
    print(f"\n== {text}")


def check(condition: bool, what: str) -> None:
    global failures
    print(f"  {'ok' if condition else 'FAILED'}: {what}")
    failures += 0 if condition else 1


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = generate_test_pki(Path(tmp) / "pki")
        pki = files.load_pki()
        step("the PSC simulator on 127.0.0.1 (TLS), and the practice's settings")
        with serve_psc(files, PscSimulator(ciba_interval=0.2)) as psc_sim:
            settings = Settings(
                software=SoftwareIdentity(
                    name="ExempleLPS", version="2.0", editor="Editeur Exemple", dmp_homologation_id="HOMOL-EXEMPLE"
                ),
                organisation=Organisation(
                    id="123456789",
                    id_kind=StructureIdKind.FINESS,
                    name="CABINET SANDBOX",
                    activity_sector=Code.of("SA07", "1.2.250.1.71.4.2.4"),
                ),
                tls=files.tls_credentials(),
                signing=SigningSettings(credentials=files.signing_credentials()),
                psc=PscSettings(
                    issuer=psc_sim.issuer, client_id="sandbox-lps", client_secret=SecretStr("sandbox-secret")
                ),
            )
            with PscClient(settings) as psc:
                step("CIBA: PSC reaches the professional's e-CPS; the software shows the binding message")
                request = psc.start_ciba(NATIONAL_ID)
                print(f"  show the user: « Code à vérifier sur votre e-CPS : {request.binding_message} »")
                threading.Timer(0.5, psc_sim.approve).start()  # the professional approves on their phone
                session = psc.wait_ciba(request)
                pro = session.professional
                check(pro.national_id == NATIONAL_ID, "PSC vouches for the professional asked")
                check(len(pro.exercises) == 2, f"{len(pro.exercises)} exercises, {len(pro.activities())} activities")
                check(session.acr == "eidas1", "acr eidas1")
                print(f"  access token valid until {session.access_expires_at:%H:%M:%S} UTC (read from its exp)")

                step("DMP in AIR mode: the VIHF is built from the PSC identity at the practice's structure")
                dmp_sim = DmpSimulator(trusted=[pki.ca.certificate], air_check=psc_sim.has_session)
                patient = DEFAULT_DMP_PATIENTS[0]
                adrun = Identity(traits=patient.traits, ins=patient.ins, status=IdentityStatus.QUAL)
                with in_process_dmp(air_settings(settings, session), dmp_sim) as dmp:
                    check(dmp.set_authorisation(adrun).ok, "authorisation added (INDIRECTE, as DRIMbox)")
                    check(list(dmp.find_documents(adrun)) == [], "consultation accepted (no document yet)")
                vihf = dmp_sim.callers[-1]
                check(vihf.authentication_mode is AuthenticationMode.INDIRECTE_RENFORCEE, "consulted in AIR")
                check(vihf.structure_id == "1123456789", "Identifiant_Structure from the PSC activity")

                step("MSSanté: IMAP with XOAUTH2 and the PSC access token, introspected by the operator")
                assert settings.psc.client_secret is not None and files.ca_cert is not None
                check_token = PscIntrospectionCheck(
                    psc_sim.issuer + "/protocol/openid-connect/token/introspect",
                    "sandbox-lps",
                    settings.psc.client_secret.get_secret_value(),
                    files.ca_cert,
                    {MAILBOX: NATIONAL_ID},
                )
                with SandboxMailOperator(pki, mailboxes=[MAILBOX], token_check=check_token) as operator:
                    mail_settings = settings.model_copy(
                        update={
                            "environment": operator.environment(settings.environment),
                            "mssante": MssanteSettings(mailbox=MAILBOX, auth_mode=MssanteAuthMode.XOAUTH2),
                        }
                    )
                    with MssanteClient(mail_settings, token_provider=session) as mail:
                        check(mail.inbox() == [], "the mailbox opened with the PSC token (empty)")
                    check(check_token.calls >= 1, "the operator introspected the token at PSC")

                    step("the PSC session ends: the mail session stops with it")
                    psc_sim.revoke_sessions()
                    with MssanteClient(mail_settings, token_provider=session) as mail:
                        try:
                            mail.inbox()
                            check(False, "a closed PSC session must not read mail")
                        except PscSessionClosedError:
                            check(session.closed, "refresh refused: PscSessionClosedError, session closed")
    print("\nevery check passed" if failures == 0 else f"\n{failures} check(s) FAILED")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
