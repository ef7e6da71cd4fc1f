"""The allow-list sanitiser every rendered page goes through, and the page's Content-Security-Policy.

The renderer writes only markup it chose; this pass is the second wall (cda_display.md rule 3):
whatever a bug in the renderer let through, only the tags, attributes, classes and URLs listed
here reach the page. It runs nh3 (the Python binding of the Rust ``ammonia`` sanitiser), an
optional dependency (``pip install dmp-connector[display]``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from dmp_connector.errors import ConfigurationError

__all__ = ["ALLOWED_CLASSES", "CSP", "PAGE_STYLE", "sanitize_fragment", "url_allowed"]

# Classes the renderer sets; a styleCode of the document becomes one of these or nothing.
ALLOWED_CLASSES: Final = frozenset(
    {
        "cda-gras",
        "cda-italique",
        "cda-souligne",
        "cda-emphase",
        "cda-trait-gauche",
        "cda-trait-droit",
        "cda-trait-haut",
        "cda-trait-bas",
        "cda-liste-decimale",
        "cda-liste-alpha-min",
        "cda-liste-alpha-maj",
        "cda-liste-romain-min",
        "cda-liste-romain-maj",
        "cda-liste-disque",
        "cda-liste-cercle",
        "cda-liste-carre",
        "cda-liste-aucun",
        "cda-en-tete",
        "cda-avertissement",
        "cda-note",
        "cda-lien-externe",
        "cda-ouvrir-exterieur",
        "cda-pieces-jointes",
        "cda-piece-jointe",
        "cda-notes",
        "cda-media-absent",
        "cda-section",
        "cda-sommaire",
        "cda-redige-par-patient",
    }
)

_TAGS: Final = frozenset(
    {
        "a", "abbr", "aside", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div", "dl", "dt",
        "em", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "img", "ins",
        "li", "main", "nav", "ol", "p", "section", "small", "span", "strong", "sub", "summary", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip

_GENERIC_ATTRIBUTES: Final = frozenset({"id", "class", "title", "lang", "role", "aria-label", "aria-labelledby"})
_ATTRIBUTES: Final = {
    "a": {"href", "target", "referrerpolicy", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "headers", "abbr"},
    "th": {"colspan", "rowspan", "headers", "abbr", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "reversed"},
}

_IMAGE_DATA_URL: Final = re.compile(r"^data:image/(?:png|jpeg|gif);base64,[A-Za-z0-9+/]+=*$")
_FRAGMENT: Final = re.compile(r"^#[A-Za-z][\w.-]{0,200}$")
_HTTPS: Final = re.compile(r"^https://[^\s/?#\\]+[^\s\\]*$")
_ID: Final = re.compile(r"^[A-Za-z][\w.-]{0,200}$")


def url_allowed(element: str, attribute: str, value: str) -> bool:
    """The URL rule: an ``href`` is a fragment of the page or ``https:``; an ``img`` only a base64 image."""
    if attribute == "src":
        return element == "img" and _IMAGE_DATA_URL.match(value) is not None
    if attribute == "href":
        return element == "a" and (_FRAGMENT.match(value) is not None or _HTTPS.match(value) is not None)
    return False


def _attribute_filter(element: str, attribute: str, value: str) -> str | None:
    if attribute in ("href", "src"):
        return value if url_allowed(element, attribute, value) else None
    if attribute == "id":
        return value if _ID.match(value) else None
    if attribute == "class":
        kept = [c for c in value.split() if c in ALLOWED_CLASSES]
        return " ".join(kept) or None
    if attribute == "target":
        return "_blank" if value == "_blank" else None
    if attribute in ("colspan", "rowspan", "span", "start", "width", "height"):
        return value if value.isdigit() and len(value) <= 4 else None
    return value


def sanitize_fragment(fragment: str) -> str:
    """``fragment`` with everything not on the allow-list removed (contents of script/style dropped too)."""
    try:
        import nh3
    except ImportError:
        raise ConfigurationError(
            "the safe CDA renderer needs the nh3 HTML sanitiser",
            hint="install it with: pip install 'dmp-connector[display]'",
        ) from None
    attributes = {tag: set(names) for tag, names in _ATTRIBUTES.items()}
    attributes["*"] = set(_GENERIC_ATTRIBUTES)
    return nh3.clean(
        fragment,
        tags=set(_TAGS),
        clean_content_tags={"script", "style", "iframe", "object", "embed", "template", "noscript", "svg", "math"},
        attributes=attributes,
        attribute_filter=_attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        url_schemes={"https", "data"},
    )


PAGE_STYLE: Final = """
:root{color-scheme:light;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;line-height:1.45}
body{margin:0 auto;max-width:70rem;padding:1rem 1.5rem;color:#111;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0 .8rem}h2{font-size:1.25rem;border-bottom:1px solid #bbb;margin-top:1.6rem}
h3{font-size:1.1rem}h4,h5,h6{font-size:1rem}
.cda-en-tete{border:1px solid #999;border-radius:4px;padding:.5rem 1rem;background:#f5f5f5}
.cda-en-tete dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.3rem 0}
.cda-en-tete dt{font-weight:bold}.cda-en-tete dd{margin:0}
.cda-avertissement{border:2px solid #a00;background:#fee;color:#600;padding:.5rem 1rem;margin:.5rem 0;border-radius:4px}
.cda-redige-par-patient{border:2px solid #036;background:#eef5ff;padding:.4rem 1rem;margin:.5rem 0}
table{border-collapse:collapse;margin:.5rem 0;max-width:100%}
th,td{border:1px solid #999;padding:.2rem .4rem;vertical-align:top;text-align:left}
th{background:#eee}caption{font-weight:bold;text-align:left;padding:.2rem 0}
.cda-gras{font-weight:bold}.cda-italique{font-style:italic}.cda-souligne{text-decoration:underline}
.cda-emphase{font-style:italic;font-weight:bold}
.cda-trait-gauche{border-left:2px solid #000}.cda-trait-droit{border-right:2px solid #000}
.cda-trait-haut{border-top:2px solid #000}.cda-trait-bas{border-bottom:2px solid #000}
.cda-liste-decimale{list-style-type:decimal}.cda-liste-alpha-min{list-style-type:lower-alpha}
.cda-liste-alpha-maj{list-style-type:upper-alpha}.cda-liste-romain-min{list-style-type:lower-roman}
.cda-liste-romain-maj{list-style-type:upper-roman}.cda-liste-disque{list-style-type:disc}
.cda-liste-cercle{list-style-type:circle}.cda-liste-carre{list-style-type:square}.cda-liste-aucun{list-style-type:none}
.cda-lien-externe{font-family:monospace;word-break:break-all}
.cda-ouvrir-exterieur{margin-left:.4rem;font-size:.9em}
.cda-note{font-size:.85em;color:#444;margin:.2rem 0}
.cda-media-absent{font-style:italic;color:#555}
.cda-notes{font-size:.9em;border-top:1px solid #ccc;margin-top:.5rem}
.cda-pieces-jointes{border:1px solid #999;padding:.3rem 1rem;margin:.6rem 0;background:#fafafa}
img{max-width:100%;height:auto}figure{margin:.5rem 0}
""".strip()

_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(PAGE_STYLE.encode("utf-8")).digest()).decode("ascii")

CSP: Final = (
    "default-src 'none'; script-src 'none'; object-src 'none'; frame-src 'none'; child-src 'none'; "
    "connect-src 'none'; font-src 'none'; media-src 'none'; manifest-src 'none'; worker-src 'none'; "
    f"img-src data:; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'"
)
"""The page's Content-Security-Policy: no script, no fetch, images only from ``data:``, only our style block."""
