"""The rendered pages in a real browser (headless Chromium): no script runs, no request leaves the page,
every section's text is visible — for every example of the ANS kit and for hostile documents.

One browser for the session, pages loaded one after another. Screenshots of a few kinds are kept
in tmp/artefacts (not committed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dmp_connector.display import CSP, render_cda

from .browser import Browser, PageReport
from .hostile import EXAMPLES, HOSTILE, PWN
from .texts import missing_from, section_texts

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/cda-2025 (the ANS kit) is missing")

KIT = sorted(EXAMPLES.glob("*.xml"))
SCREENSHOTS = {
    "VSM_1.4_2022.01.xml",
    "BIO-CR-BIO_2024.01_Electrophorese.xml",
    "DOC_NON_STRUCTURE_CDA-R2-N1.xml",
    "CANCER-PPS_2022.01_Autopresentable.xml",
}


def _assert_safe(report: PageReport) -> None:
    assert report.scripts == [], f"scripts compiled in the page: {report.scripts}"
    assert report.requests == [], f"requests left the page: {report.requests}"
    assert not report.dom["pwned"], "a payload ran"
    assert report.dom["handlers"] == 0, "an element carries an on* attribute"
    assert report.dom["active"] == 0, "script/iframe/object/embed/form/link/base/svg/style element in the body"
    assert report.dom["styled"] == 0, "a style attribute survived"
    for href in report.dom["links"]:
        assert href.startswith(("#", "https://")), href
    for src in report.dom["images"]:
        assert src.startswith("data:image/"), src


def _load(browser: Browser, tmp_path: Path, name: str, data: bytes) -> tuple[PageReport, list[str]]:
    rendered = render_cda(data)
    page = tmp_path / f"{name}.html"
    page.write_bytes(rendered.as_bytes())
    report = browser.load(page)
    return report, missing_from(report.text, section_texts(data))


@pytest.mark.parametrize("example", KIT, ids=[p.name for p in KIT])
def test_every_kit_example_is_safe_and_fully_visible(
    browser: Browser, tmp_path: Path, artefacts: Path, example: Path
) -> None:
    data = example.read_bytes()
    report, missing = _load(browser, tmp_path, example.stem, data)
    _assert_safe(report)
    assert report.console == [], "the page reported a problem (a CSP violation would mean the sanitiser let it through)"
    assert missing == [], f"section text not visible: {missing[:5]}"
    assert report.dom["headings"] >= 2
    if example.name in SCREENSHOTS:
        browser.screenshot(artefacts / f"{example.stem}.png")


@pytest.mark.parametrize("name", sorted(set(HOSTILE) - {"huge-table"}))
def test_hostile_documents_run_nothing_and_fetch_nothing(
    browser: Browser, tmp_path: Path, artefacts: Path, name: str
) -> None:
    data = HOSTILE[name]()
    report, missing = _load(browser, tmp_path, name, data)
    _assert_safe(report)
    assert report.console == []
    assert missing == [], f"section text not visible: {missing[:5]}"
    if name in ("narrative", "header", "pdf-body"):
        browser.screenshot(artefacts / f"hostile-{name}.png")


def test_hostile_narrative_keeps_what_is_safe(browser: Browser, tmp_path: Path) -> None:
    """The fenced-off parts are gone, yet the safe ones work: the embedded PNG, the https action, the internal link."""
    report, _ = _load(browser, tmp_path, "narrative-safe", HOSTILE["narrative"]())
    assert any(src.startswith("data:image/png") for src in report.dom["images"])
    assert "https://www.example.org/page?x=1" in report.dom["links"]
    assert any(h.startswith("#cda-") for h in report.dom["links"])
    assert "Ouvrir à l'extérieur" in report.text
    for word in ("Lien javascript", "Lien data", "Lien protocole relatif", "Lien fichier", "Lien http"):
        assert word in report.text  # the words stay, the links do not
    # An https address is offered (the host confirms before opening it); its quote made no attribute.
    assert [h for h in report.dom["links"] if "evil.example" in h] == ['https://evil.example/@x"onmouseover="' + PWN]


def test_huge_table_is_all_there(browser: Browser, tmp_path: Path) -> None:
    report, missing = _load(browser, tmp_path, "huge", HOSTILE["huge-table"]())
    _assert_safe(report)
    assert missing == []
    rows = browser.evaluate("Array.from(document.querySelectorAll('main table')).map(t => t.rows.length)")
    assert 2001 in rows


def test_the_policy_alone_stops_what_the_sanitiser_would_miss(browser: Browser, tmp_path: Path) -> None:
    """The second wall: the page's CSP, with an unsanitised body, still blocks scripts and fetches.

    This page is not one the renderer writes (it bypasses the sanitiser on purpose): it proves
    that the policy holds by itself, should a sanitiser bug ever let markup through.
    """
    html = render_cda((EXAMPLES / "VSM_1.4_2022.01.xml").read_bytes()).html
    assert CSP in html.replace("&#x27;", "'").replace("&#39;", "'")
    evil = (
        '<script>window.__pwned=1</script><img src="https://evil.example/a.png">'
        '<img src="//evil.example/b.png"><div onclick="window.__pwned=1">x</div>'
        '<iframe src="https://evil.example/f"></iframe><link rel="stylesheet" href="https://evil.example/s.css">'
        "<style>body{background:url(https://evil.example/c.png)}</style>"
    )
    page = tmp_path / "bypass.html"
    page.write_text(html.replace("<body>", "<body>" + evil, 1), encoding="utf-8")
    report = browser.load(page)
    assert not report.dom["pwned"]
    assert report.requests != []  # the unsanitised body did try …
    assert report.sent == [], report.sent  # … and the policy blocked every request
    assert any("Content Security Policy" in line for line in report.console)
