"""MSSanté secure health mail: addresses, messages, IHE XDM packages, SMTP/IMAP clients, directory."""

from __future__ import annotations

__all__: list[str] = []
