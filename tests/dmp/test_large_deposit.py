"""A large PDF (base64 text over libxml2's 10 MB node limit) deposits, verifies and comes back byte for byte.

Before the submission-set digest learnt to hash around the base64 body, any CDA with a PDF over
~7.5 MB failed at the signature step: the whole document was parsed, and the parser refuses a text
node that large. The sandbox verifies the signature with the same digest, so this is the path end
to end over loopback mutual TLS.
"""

from __future__ import annotations

from pathlib import Path

from dmp_connector.cda import ClinicalDocument, NonXmlBody, build, parse
from tests.cda.conftest import make_pdf

from .test_sandbox_integration import (
    ADRUN,
    MODES,
    Dmp,
    Sandbox,
    pdf_document,
    run,
)

_PDF = make_pdf("Imagerie volumineuse", padding=9 * 1024 * 1024)


@MODES
def test_a_pdf_over_the_parser_text_limit_is_deposited_and_retrieved_unchanged(
    mode: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    assert len(_PDF) * 4 / 3 > 10_000_000  # its base64 alone is over libxml2's text-node limit
    config = sandbox.settings()
    dmp = Dmp(mode, config, sandbox.credentials.signer)
    small = pdf_document(config, ADRUN, "gabarit")
    document = ClinicalDocument.model_validate({**dict(small), "body": NonXmlBody(data=_PDF)})
    sent = build(document)
    target = tmp_path / "retrieved.xml"

    async def scenario() -> None:
        await dmp("set_authorisation", ADRUN)
        result = await dmp("deposit", document, patient=ADRUN)
        assert not result.already_deposited
        assert result.size == len(sent)
        [entry] = [e for e in await dmp("find_documents", ADRUN) if e.unique_id == result.document_unique_id]
        await dmp("retrieve", ADRUN, entry, to=target)

    run(scenario)
    assert target.read_bytes() == sent
    body = parse(target.read_bytes()).body
    assert isinstance(body, NonXmlBody) and body.data == _PDF
    assert sandbox.simulator.store.entry_count() == 2  # the document and its signature
