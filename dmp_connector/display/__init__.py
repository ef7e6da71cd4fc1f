"""Showing a received CDA document safely: one self-contained, sanitised HTML page.

:func:`render_cda` turns any CI-SIS CDA (structured body of every volet, PDF or image body,
attachments) into a page a vendor shows inside its software; :data:`CSP` is the policy the page
carries. The rules it follows and what it guarantees: ``docs/receiving.md``.
"""

from __future__ import annotations

from ._sanitize import CSP
from .render import DisplayAttachment, RenderedDocument, render_cda, sniff_media_type

__all__ = ["CSP", "DisplayAttachment", "RenderedDocument", "render_cda", "sniff_media_type"]
