"""One outbox worker process for ``bench_outbox.py`` (private): ready, then "go" on stdin, then drain the queue."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _sandbox import base_settings

import dmp_connector
from dmp_connector.config import CertificateFiles, TlsCredentials
from dmp_connector.dmp import DmpClient
from dmp_connector.outbox import Outbox, RetrySchedule, Worker
from dmp_connector.signature import FileSigner


def main(config_file: str, name: str) -> int:
    config = json.loads(Path(config_file).read_text())
    tls = TlsCredentials(cert_file=config["cert"], key_file=config["key"], ca_bundle=config["ca"])
    settings = base_settings(config["server"], tls)
    signer = FileSigner.from_files(CertificateFiles(cert_file=config["sign_cert"], key_file=config["sign_key"]))
    with (
        Outbox(config["database"], settings=settings, schedule=RetrySchedule.of_seconds([0.1] * 5)) as outbox,
        DmpClient(settings, signer=signer) as client,
    ):
        print("ready", dmp_connector.__file__, flush=True)  # the benchmark checks which package runs
        sys.stdin.readline()
        started = time.process_time()
        Worker(outbox, client, name=name).run(until_idle=True)
        print(f"cpu {time.process_time() - started}", flush=True)  # the drain's CPU, start-up excluded
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
