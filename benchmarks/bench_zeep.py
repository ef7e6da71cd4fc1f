"""The same ITI-18 SOAP call made through zeep and through dmp_connector, as a ratio.

A vendor without this SDK would call the DMP's registry with a generic SOAP client; zeep is the
usual one in Python. Both clients here make the same call — a FindDocuments
``query:AdhocQueryRequest`` (same parameters, WS-Addressing headers, SOAP 1.2) — and read the
same answer of 1, 100 or 5,000 document entries (the bytes of ``bench_parse.py``), without
network: zeep through a transport that answers from memory, dmp_connector through the sans-I/O
operation that ``DmpClient.find_documents`` sends (``RegistryStoredQuery.build``, the envelope,
its bytes; then ``parse_envelope`` and ``RegistryStoredQuery.parse``). What is timed, per call:
building and serialising the request, then parsing the reply into typed objects. WS-Security
(the DMP's signed VIHF) is left out on both sides.

zeep reads the WSDL in ``benchmarks/wsdl/``, whose types are the ebRS 3.0 schemas of the shared
copy beside the repository (``../shared/xds/schema``; not vendored). zeep cannot read ebRIM
answers as published: ``rim:RegistryObjectList`` holds ``rim:Identifiable``, the head of a
substitution group, and zeep does not resolve substitution groups (python-zeep issue #321) — in
strict mode it refuses the answer (``Unexpected element …ExtrinsicObject``). The zeep side
therefore runs with ``strict=False`` and parses each raw object with its schema element
(``client.get_element(tag).parse``), the documented workaround; its typed result is zeep's
generic objects (slots, classifications …), not XDS document entries — less work than
dmp_connector does (no HL7 values, codes or XDS rules are read).

    .venv/bin/python benchmarks/bench_zeep.py [--quick] [--json PATH] [--sizes 1,100,5000]

Needs the ``bench`` extra (``pip install -e '.[bench]'``). There is no goal: the figure is the
ratio dmp_connector / zeep (below 1: dmp_connector is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import zeep
from _bench import Figure, report, timed
from bench_parse import PATIENT, make_reply, operation

from dmp_connector._transport import CallContext
from dmp_connector.config import Settings, SoftwareIdentity
from dmp_connector.dmp import RegistryStoredQuery
from dmp_connector.soap.envelope import Addressing, build_envelope, parse_envelope
from dmp_connector.xds import DocumentEntry, FindDocumentsQuery
from dmp_connector.xml import to_bytes

WSDL = Path(__file__).resolve().parent / "wsdl" / "XDS.b_DocumentRegistry.wsdl"
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "xds" / "schema"
SIZES = (1, 100, 5000)
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
ENDPOINT = "https://127.0.0.1:8443/si-dmp-server/v2/services/registry"


class CannedTransport(zeep.Transport):
    """A zeep transport that answers every POST with the same bytes, from memory."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # zeep is partly annotated
        self.reply = b""

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = self.reply
        response.headers["Content-Type"] = "application/soap+xml; charset=utf-8"
        response.encoding = "utf-8"
        return response


def zeep_client(transport: CannedTransport) -> zeep.Client:
    # strict=False: see the module docstring (substitution groups).
    return zeep.Client(str(WSDL), transport=transport, settings=zeep.Settings(strict=False))  # type: ignore[no-untyped-call]


def zeep_arguments() -> dict[str, Any]:
    """The FindDocuments request as zeep's keyword arguments: the very slots dmp_connector sends."""
    stored = FindDocumentsQuery(patient_id=PATIENT).to_stored_query()
    return {
        "ResponseOption": {"returnComposedObjects": True, "returnType": "LeafClass"},
        "AdhocQuery": {
            "id": stored.query_id.value,
            "Slot": [
                {"name": p.name, "ValueList": {"_value_1": [{"Value": v} for v in p.values]}} for p in stored.parameters
            ],
        },
    }


def zeep_call(client: zeep.Client, arguments: dict[str, Any]) -> list[Any]:
    """Build, send (to memory) and read the answer; each registry object typed by its schema element."""
    answer = client.service.DocumentRegistry_RegistryStoredQuery(**arguments)
    objects = answer.RegistryObjectList
    schema = client.wsdl.types
    return [client.get_element(raw.tag).parse(raw, schema) for raw in objects._raw_elements]  # type: ignore[no-untyped-call]


def dmp_call(op: RegistryStoredQuery, call: CallContext, reply: bytes) -> tuple[DocumentEntry, ...]:
    """What the transport does around the network: build the envelope and its bytes, then read the answer."""
    request = op.build(call)
    envelope = build_envelope(
        request.body,
        addressing=Addressing(action=op.action, to=ENDPOINT, message_id=call.message_id),
        headers=request.headers,
        security=request.security,
    )
    sent = to_bytes(envelope)
    assert sent
    return op.parse(parse_envelope(reply, operation=op.name)).documents


def figures(sizes: Sequence[int], rounds: int) -> list[Figure]:
    transport = CannedTransport()
    client = zeep_client(transport)
    arguments = zeep_arguments()
    op = operation()
    call = CallContext(
        settings=Settings(software=SoftwareIdentity(name="bench", version="1", editor="bench")),
        message_id="urn:uuid:0f6c5b6e-4a2b-4b5d-9d1e-3a2b1c0d9e8f",
    )
    found = []
    for count in sizes:
        reply = make_reply(count)
        transport.reply = reply
        zeep_result, dmp_result = zeep_call(client, arguments), dmp_call(op, call, reply)
        assert len(zeep_result) == len(dmp_result) == count
        repeat = rounds if count < 1000 else max(2, rounds // 3)
        batch = max(1, 200 // count) if count < 1000 else 1
        zeep_s: list[float] = []
        dmp_s: list[float] = []

        def zeep_batch(batch: int = batch) -> None:
            for _ in range(batch):
                zeep_call(client, arguments)

        def dmp_batch(reply: bytes = reply, batch: int = batch) -> None:
            for _ in range(batch):
                dmp_call(op, call, reply)

        for _ in range(repeat):
            zeep_s += [t / batch for t in timed(zeep_batch, repeat=1, warmup=0)]
            dmp_s += [t / batch for t in timed(dmp_batch, repeat=1, warmup=0)]
        dmp_ms, zeep_ms = statistics.median(dmp_s) * 1000, statistics.median(zeep_s) * 1000
        found.append(
            Figure(
                benchmark=f"ITI-18 call (build + parse), {count:,} entries",
                value=dmp_ms,
                unit="ms",
                baseline=zeep_ms,
                baseline_label=f"zeep {zeep.__version__}",
                ratio=dmp_ms / zeep_ms,
                extra={"rounds": repeat, "calls_per_round": batch, "reply_bytes": len(reply)},
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 5,000-entry answer")
    parser.add_argument("--sizes", help="entry counts, comma-separated (default 1,100,5000; quick 1,100)")
    args = parser.parse_args(argv)
    if not (SCHEMAS / "ebRS30" / "query.xsd").is_file():
        print(f"the ebRS 3.0 schemas are not at {SCHEMAS} (the shared copy beside the repository)", file=sys.stderr)
        return 2
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (SIZES[:2] if args.quick else SIZES)
    rows = figures(sizes, 3 if args.quick else 9)
    report("ITI-18 through dmp_connector vs zeep (same request, same answer)", rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
