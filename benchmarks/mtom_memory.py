"""MTOM memory target: a large document crosses the MTOM layer without being held in memory.

Encodes a request with one attachment read from disk, streams it chunk by chunk into
the multipart parser (as the transport does with an answer), and checks that the
attachment came out intact while the Python heap never held more than a bounded
amount — the chunks in flight and the spool threshold, not the document.

    .venv/bin/python benchmarks/mtom_memory.py [--size-mib 64] [--max-peak-mib 24] [--json PATH]

Exits 1 if the peak is over the target.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from _bench import Figure, report
from lxml import etree

from dmp_connector.soap.envelope import Addressing, build_envelope, xop_include
from dmp_connector.soap.mtom import Attachment, MultipartRelatedParser, encode_mtom


def run(size: int, spool_threshold: int) -> tuple[float, float, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "doc.bin"
        digest = hashlib.sha256()
        with path.open("wb") as fh:
            for _ in range(size // (1 << 20)):
                block = os.urandom(1 << 20)
                digest.update(block)
                fh.write(block)
        doc = Attachment.from_path(path, content_type="application/pdf")
        body = etree.Element("{urn:bench}Put")
        body.append(xop_include(doc.content_id))
        envelope = build_envelope(body, addressing=Addressing(action="urn:bench:Put", to="https://127.0.0.1/bench"))

        tracemalloc.start()
        started = time.perf_counter()
        payload = encode_mtom(envelope, [doc])
        parser = MultipartRelatedParser(payload.content_type, max_root_bytes=1 << 20, spool_threshold=spool_threshold)
        for chunk in payload.iter_bytes():
            parser.feed(chunk)
        parts = parser.close()
        received = parts.attachments[doc.content_id]
        same = received.sha256() == digest.hexdigest()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        parts.close()
        return peak / (1 << 20), elapsed, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--max-peak-mib", type=float, default=24.0)
    parser.add_argument("--spool-threshold-mib", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figure as JSON (benchmarks/run.py)")
    args = parser.parse_args()
    peak, elapsed, same = run(args.size_mib << 20, args.spool_threshold_mib << 20)
    rate = args.size_mib / elapsed
    if args.json is not None:
        figure = Figure(
            benchmark=f"MTOM encode + parse of a {args.size_mib} MiB attachment: peak heap",
            value=peak,
            unit="MiB",
            baseline=float(args.size_mib),
            baseline_label="the attachment size",
            ratio=peak / args.size_mib,
            goal=f"≤ {args.max_peak_mib:g} MiB",
            met=peak <= args.max_peak_mib and same,
            extra={"seconds": round(elapsed, 2), "mib_per_s": round(rate), "intact": same},
        )
        report("MTOM memory (tracemalloc)", [figure], args.json)
    print(
        f"attachment {args.size_mib} MiB: peak heap {peak:.1f} MiB, {elapsed:.2f} s ({rate:.0f} MiB/s), intact={same}"
    )
    if not same:
        print("FAIL: the attachment changed on the way")
        return 1
    if peak > args.max_peak_mib:
        print(f"FAIL: peak {peak:.1f} MiB over the {args.max_peak_mib} MiB target")
        return 1
    print(f"OK: peak under the {args.max_peak_mib} MiB target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
