"""Documents built, signed and serialised per second: dmp_connector vs plain lxml + signxml.

Two documents: a consultation report with a 200 KB PDF body (``--pdf-kb``) and a structured
medical summary (VSM volet). For each, one iteration is:

* **dmp_connector** — what a deposit does before sending: the :class:`ClinicalDocument` model
  made from the application's values (checked by pydantic), :func:`dmp_connector.cda.build`
  (the CDA rules checked, the XML written), then the submission-set signature the DMP requires
  (:func:`dmp_connector.signature.sign_submission_set`: XAdES, a ``ds:Manifest`` carrying the
  document's digest after C14N with comments, RSA over ``ds:SignedInfo``), with the uniqueIds
  and profile :func:`dmp_connector.dmp.mapping.prepare_deposit` uses. Output: the CDA bytes
  and the signature document's bytes.
* **baseline (the floor)** — the *same CDA XML* built with plain lxml (``etree.SubElement``
  calls replaying the tree, the PDF base64-encoded into its text node; checked once to give the
  very bytes dmp_connector gives) and signed with signxml directly: an enveloped XML-DSig
  signature over the whole document with the same RSA key and algorithms (RSA-SHA256, SHA-256,
  C14N with comments), then serialised. No validation, no XAdES, no manifest: the least work
  that produces a signed CDA.

Also measured (no baseline): the whole ``prepare_deposit`` — build, metadata extraction, XDS
metadata checked against the DMP profile, signature, MTOM parts — i.e. a deposit minus the I/O.

Each figure is the median of ``--repeat`` timed calls after a warm-up.

    .venv/bin/python benchmarks/bench_documents.py [--repeat 60] [--json benchmarks/results/latest/bench_documents.json]

Goal: none fixed by the issue; the figure is the ratio to the floor (above 1: faster than the floor).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _bench import Figure, report, timed
from _sandbox import base_settings, make_pdf, patient, pdf_report, vsm_summary
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner

from dmp_connector.cda import ClinicalDocument, NonXmlBody, build
from dmp_connector.dmp.mapping import deposit_ids, prepare_deposit
from dmp_connector.sandbox import TestPki
from dmp_connector.signature import (
    FileSigner,
    SubmissionSetSignatureProfile,
    SubmittedDocument,
    sign_submission_set,
)
from dmp_connector.xml import XmlLimits, parse_xml

_C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
_PDF_SLOT = object()
"""Marks the text node the baseline fills with the PDF's base64."""


@dataclass
class Node:
    """One element of the tree the baseline replays with plain lxml."""

    tag: str
    attrib: dict[str, str]
    nsmap: dict[str | None, str] | None
    text: str | object | None
    tail: str | None
    children: list[Node]


def _spec(element: etree._Element, parent_nsmap: dict[str | None, str], pdf_text: str | None) -> Node:
    nsmap = dict(element.nsmap)
    own = {k: v for k, v in nsmap.items() if parent_nsmap.get(k) != v}
    text: str | object | None = element.text
    if pdf_text is not None and element.text == pdf_text:
        text = _PDF_SLOT
    return Node(
        tag=str(element.tag),
        attrib={str(k): str(v) for k, v in element.attrib.items()},
        nsmap=own or None,
        text=text,
        tail=element.tail,
        children=[_spec(child, nsmap, pdf_text) for child in element if isinstance(child.tag, str)],
    )


def _replay(node: Node, parent: etree._Element | None, pdf_b64: str) -> etree._Element:
    if parent is None:
        element = etree.Element(node.tag, node.attrib, nsmap=node.nsmap)  # type: ignore[arg-type]
    else:
        element = etree.SubElement(parent, node.tag, node.attrib, nsmap=node.nsmap)  # type: ignore[arg-type]
    element.text = pdf_b64 if node.text is _PDF_SLOT else node.text  # type: ignore[assignment]
    element.tail = node.tail
    for child in node.children:
        _replay(child, element, pdf_b64)
    return element


class Setup:
    """Key, certificate, settings and the signxml signer shared by every measurement."""

    def __init__(self) -> None:
        pki = TestPki.create()
        issued = pki.issue_organisation_sign(organisation="Cabinet Test", structure_id="1123456789")
        self.signer = FileSigner([issued.certificate], issued.key)
        self.settings = base_settings()
        self.patient = patient()
        self.profile = SubmissionSetSignatureProfile.from_settings(self.settings.signing)
        self.key = issued.key
        self.cert_pem = issued.cert_pem.decode("ascii")
        self.signxml = XMLSigner(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm="rsa-sha256",
            digest_algorithm="sha256",
            c14n_algorithm=_C14N_WITH_COMMENTS,
        )
        self.limits = XmlLimits()

    def sdk_sign(self, document: ClinicalDocument, data: bytes) -> bytes:
        """The submission-set signature exactly as prepare_deposit makes it."""
        unique_id = document.id.root
        ids = deposit_ids(self.settings, unique_id, hashlib.sha1(data).hexdigest())
        signature = sign_submission_set(
            submission_set_unique_id=ids.submission_set,
            documents=[SubmittedDocument(unique_id=unique_id, content=data, is_cda=True)],
            signer=self.signer,
            unique_id=ids.signature,
            profile=self.profile,
            signing_time=dt.datetime.now(dt.UTC),
            limits=self.limits,
        )
        return signature.xml


def measure(setup: Setup, name: str, make: Callable[[], ClinicalDocument], repeat: int) -> list[Figure]:
    sample = make()
    sample_bytes = build(sample)
    body = sample.body
    pdf = body.data if isinstance(body, NonXmlBody) else None
    pdf_text = base64.b64encode(pdf).decode("ascii") if pdf is not None else None
    spec = _spec(parse_xml(sample_bytes, limits=setup.limits), {}, pdf_text)

    def plain_build(pdf_b64: str) -> bytes:
        return etree.tostring(_replay(spec, None, pdf_b64), encoding="UTF-8", xml_declaration=True)

    replayed = plain_build(pdf_text or "")
    if replayed != sample_bytes:
        raise AssertionError(f"{name}: the plain-lxml baseline does not give the same bytes as dmp_connector")

    def sdk() -> tuple[bytes, bytes]:
        document = make()
        data = build(document)
        return data, setup.sdk_sign(document, data)

    def baseline() -> bytes:
        pdf_b64 = base64.b64encode(pdf).decode("ascii") if pdf is not None else ""
        root = _replay(spec, None, pdf_b64)
        signed = setup.signxml.sign(root, key=setup.key, cert=setup.cert_pem)
        return etree.tostring(signed, encoding="UTF-8", xml_declaration=True)

    def prepare() -> object:
        return prepare_deposit(make(), settings=setup.settings, signer=setup.signer, patient=setup.patient)

    sdk_s = statistics.median(timed(sdk, repeat=repeat, warmup=3))
    base_s = statistics.median(timed(baseline, repeat=repeat, warmup=3))
    prep_s = statistics.median(timed(prepare, repeat=repeat, warmup=3))
    build_s = statistics.median(timed(lambda: build(make()), repeat=repeat, warmup=3))
    plain_build_s = statistics.median(timed(lambda: plain_build(pdf_text or ""), repeat=repeat, warmup=3))
    sign_s = statistics.median(timed(lambda: setup.sdk_sign(sample, sample_bytes), repeat=repeat, warmup=3))
    signxml_s = statistics.median(
        timed(
            lambda: setup.signxml.sign(_replay(spec, None, pdf_text or ""), key=setup.key, cert=setup.cert_pem),
            repeat=repeat,
            warmup=3,
        )
    )
    extra: dict[str, Any] = {
        "document_bytes": len(sample_bytes),
        "sdk_ms": sdk_s * 1000,
        "baseline_ms": base_s * 1000,
        "sdk_build_ms": build_s * 1000,
        "plain_lxml_build_ms": plain_build_s * 1000,
        "sdk_sign_ms": sign_s * 1000,
        "signxml_build_and_sign_ms": signxml_s * 1000,
        "median_of": repeat,
    }
    return [
        Figure(
            benchmark=f"build+sign+serialise, {name}",
            value=1 / sdk_s,
            unit="docs/s",
            baseline=1 / base_s,
            baseline_label="plain lxml + signxml",
            ratio=base_s / sdk_s,
            extra=extra,
        ),
        Figure(
            benchmark=f"prepare_deposit (no I/O), {name}",
            value=1 / prep_s,
            unit="docs/s",
            extra={"ms": prep_s * 1000, "median_of": repeat},
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdf-kb", type=int, default=200, help="PDF size in kB (1000 bytes)")
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 repeats")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    repeat = 8 if args.quick else args.repeat
    setup = Setup()
    pdf = make_pdf(args.pdf_kb * 1000)
    figures = measure(
        setup, f"PDF body {args.pdf_kb} kB", lambda: pdf_report(setup.settings, setup.patient, pdf), repeat
    )
    figures += measure(setup, "VSM (structured)", lambda: vsm_summary(setup.settings, setup.patient), repeat)
    report("CDA documents built, signed and serialised per second", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
