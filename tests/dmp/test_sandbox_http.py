"""The loopback server's request as a simulator sees it: headers and body as sent, MTOM included."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from dmp_connector.sandbox import HttpRequest, HttpResponse, LoopbackServer


def test_a_multipart_request_reaches_the_handler_unchanged_without_a_regex_per_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[HttpRequest] = []

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        return HttpResponse(200, {"Content-Type": "text/plain"}, b"ok")

    boundaries = [f"uuid:{uuid.uuid4()}" for _ in range(3)]
    compiled: list[str] = []
    compile_ = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(str(pattern))
        return compile_(pattern, flags)

    with LoopbackServer(handler) as server, httpx.Client(base_url=server.url) as client:
        monkeypatch.setattr(re, "compile", counting)
        for boundary in boundaries:
            content_type = (
                f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
                'start="<root@dmpc>"; start-info="application/soap+xml"'
            )
            body = f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n".encode()
            assert client.post("/dmp/repository", content=body, headers={"Content-Type": content_type}).text == "ok"
            assert seen[-1].header("Content-Type") == content_type and seen[-1].body == body
        monkeypatch.undo()
    # The stdlib parses a header block as a MIME message: for multipart it compiled a pattern around
    # each request's boundary (never cached: a new boundary each time). The body is read apart.
    assert not [pattern for pattern in compiled if any(re.escape(b) in pattern for b in boundaries)]
