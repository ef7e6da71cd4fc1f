"""A small headless-Chromium driver over the DevTools protocol (``--remote-debugging-pipe``), for tests only.

One browser for the whole session; pages are loaded one after another in one tab. For each
page it records what a safe page must never do: a network request other than the page itself
(``Network.requestWillBeSent``), a script compiled (``Debugger.scriptParsed`` for any script
but ours), a Content-Security-Policy report (the console's "Refused to …" messages). The
protocol over the pipe is JSON messages separated by NUL bytes: no websocket, no extra package.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
HARNESS_URL = "dmp-connector-harness.js"
"""sourceURL of the scripts the harness itself evaluates: the only scripts a page may show."""


def find_chromium() -> str | None:
    """The Chromium executable, or None when none is installed."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """The browser failed to answer in time, or answered with an error."""


@dataclass
class PageReport:
    """What happened while one page loaded."""

    url: str
    requests: list[str] = field(default_factory=list)
    """Every URL the page asked for, the page itself excluded (even one the CSP then blocked)."""
    sent: list[str] = field(default_factory=list)
    """Those of ``requests`` the Content-Security-Policy did not block: what really left the page."""
    scripts: list[str] = field(default_factory=list)
    """Scripts compiled in the page other than the harness's own (their URL or a placeholder)."""
    console: list[str] = field(default_factory=list)
    """Console and log messages (CSP reports among them)."""
    text: str = ""
    """``document.body.innerText``: only what is rendered and visible."""
    dom: dict[str, Any] = field(default_factory=dict)
    """Counts read from the DOM: event-handler attributes, links, images, frames …"""


class Browser:
    """Headless Chromium driven over a pipe; use as a context manager."""

    def __init__(self, executable: str, *, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="dmpc-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above 9 so that the "3<&n 4>&m" cannot overwrite one with the other.
        to_child_r, from_child_w = _high(to_child_r), _high(from_child_w)
        # The browser reads commands on fd 3 and writes answers on fd 4.
        script = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}'
        self._log = open(os.environ.get("DMPC_CHROMIUM_LOG", os.devnull), "ab")  # noqa: SIM115 - closed in close()
        self._process = subprocess.Popen(
            ["/bin/bash", "-c", script, "bash", executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log", "Debugger"):
            self.call(f"{domain}.enable")
        metrics = {"width": 1100, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._session = None
            self.call("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------------ protocol

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            written = os.write(self._to_child, data)
            data = data[written:]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("the browser did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed its pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        result: dict[str, Any] = json.loads(message)
        return result

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a command to the page's session (or the browser) and wait for its answer."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None:
            message["sessionId"] = self._session
        self._send(message)
        deadline = time.monotonic() + (timeout or self._timeout)
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self._events.append(answer)

    def _wait_for(self, method: str, deadline: float) -> None:
        while True:
            if any(e.get("method") == method for e in self._events):
                return
            answer = self._receive(deadline)
            if "method" in answer:
                self._events.append(answer)

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (run by the harness, marked so it is not counted)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": f"{expression}\n//# sourceURL={HARNESS_URL}", "returnByValue": True, "awaitPromise": True},
        )
        return result.get("result", {}).get("value")

    # ------------------------------------------------------------------ pages

    def load(self, path: Path) -> PageReport:
        """Open the file ``path`` and report what it did, once loaded (and one more second of idle)."""
        url = path.resolve().as_uri()
        self._events = []
        self.call("Page.navigate", {"url": url})
        self._wait_for("Page.loadEventFired", time.monotonic() + self._timeout)
        report = PageReport(url=url)
        # Let anything deferred (a timer, a lazy image) have its chance before reading what happened.
        found = self.evaluate(f"new Promise(r => setTimeout(() => r({_DOM_CHECK}), 20))") or {}
        report.text = str(found.pop("text", ""))
        report.dom = dict(found)
        blocked = {
            e["params"].get("requestId")
            for e in self._events
            if e.get("method") == "Network.loadingFailed" and e["params"].get("blockedReason") == "csp"
        }
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                requested = params.get("request", {}).get("url", "")
                if requested != url and not requested.startswith("data:"):  # data: never leaves the page
                    report.requests.append(requested)
                    if params.get("requestId") not in blocked:
                        report.sent.append(requested)
            elif method == "Debugger.scriptParsed":
                script_url = params.get("url", "")
                if script_url != HARNESS_URL and not params.get("isModule") and params.get("executionContextId"):
                    report.scripts.append(script_url or "(inline)")
            elif method == "Log.entryAdded":
                report.console.append(params.get("entry", {}).get("text", ""))
            elif method == "Runtime.consoleAPICalled":
                report.console.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                report.console.append(str(params.get("exceptionDetails", {}).get("text", "")))
        return report

    def screenshot(self, target: Path) -> None:
        """A PNG of the whole page."""
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        target.write_bytes(base64.b64decode(data))


_DOM_CHECK = """(() => {
  const all = Array.from(document.querySelectorAll('*'));
  const handlers = all.filter(e => Array.from(e.attributes).some(a => a.name.toLowerCase().startsWith('on'))).length;
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  const images = Array.from(document.querySelectorAll('img')).map(i => (i.getAttribute('src') || '').slice(0, 40));
  const active = document.querySelectorAll(
    'script, iframe, frame, object, embed, form, link, base, svg, math, ' +
    'style:not(head > style), meta[http-equiv="refresh"]'
  ).length;
  const styled = document.querySelectorAll('[style]').length;
  const pwned = typeof window.__pwned !== 'undefined' || !!document.getElementById('pwned');
  const text = document.body ? document.body.innerText : '';
  return {text, handlers, links, images, active, styled, pwned,
          title: document.title, headings: document.querySelectorAll('h1,h2,h3,h4,h5,h6').length};
})()"""
