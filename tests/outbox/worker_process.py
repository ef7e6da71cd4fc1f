"""One outbox worker process for the fault test: ``python -m tests.outbox.worker_process CONFIG.json NAME``.

It does what ``dmp-connector outbox run`` does for one worker, with the test's sandbox settings:
claims items from the queue's database, deposits them over mutual TLS, stops on SIGTERM after the
item in flight. The fault test SIGKILLs some of these processes mid-run.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from dmp_connector.config import CertificateFiles, Environment, TlsCredentials
from dmp_connector.dmp import DmpClient
from dmp_connector.outbox import Outbox, RetrySchedule, Worker
from dmp_connector.retries import RetryPolicy
from dmp_connector.signature import FileSigner
from tests.dmp.test_sandbox_rules import settings as base_settings


def main(config_file: str, name: str) -> int:
    config = json.loads(Path(config_file).read_text())
    settings = base_settings(
        environment=Environment.sandbox(config["server"]),
        tls=TlsCredentials(cert_file=config["cert"], key_file=config["key"], ca_bundle=config["ca"]),
        retry=RetryPolicy(max_attempts=1),
        timeouts={"call": config["lease"] * 0.5, "attempt": config["lease"] * 0.5},
        audit={"pseudonym_key": config["pseudonym_key"]},
    )
    signer = FileSigner.from_files(CertificateFiles(cert_file=config["sign_cert"], key_file=config["sign_key"]))
    schedule = RetrySchedule.of_seconds(config["schedule"])
    with (
        Outbox(config["database"], settings=settings, schedule=schedule, lease=config["lease"]) as outbox,
        DmpClient(settings, signer=signer) as client,
    ):
        worker = Worker(outbox, client, name=name, idle_wait=0.1)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        print("ready", flush=True)
        worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
