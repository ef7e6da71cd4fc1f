"""The MSH values a sender sets once: who sends, who receives, processing mode, character set.

Every default is stated in the ANS samples or the volet (IG 2.1.3) unless marked [I].
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ._er7 import Segment, rep

__all__ = ["Hl7Settings"]


class Hl7Settings(BaseModel):
    """Message header settings shared by the ADT, MDM, ACK and ZAM messages this SDK writes."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True, extra="forbid")

    sending_application: str = Field(default="DMP-CONNECTOR", min_length=1)
    """MSH-3: the sending application (the volet: the DPI/RIS/SIL, "CREATEUR") [I default]."""
    sending_facility: str = Field(default="", description="MSH-4")
    """MSH-4: the sending organisation."""
    receiving_application: str = "PFI"
    """MSH-5: the receiving application (the intermediation platform, "GESTIONNAIRE") [I default]."""
    receiving_facility: str = ""
    """MSH-6: the receiving organisation."""
    processing_id: str = Field(default="P", pattern=r"^[PTD]$")
    """MSH-11: ``P`` production, ``T`` test, ``D`` debug (volet)."""
    country: str = "FRA"
    """MSH-17 (volet: ``FRA``)."""
    charset: str = Field(default="UNICODE UTF-8", pattern=r"^(UNICODE UTF-8|8859/15)$")
    """MSH-18: ``UNICODE UTF-8`` or ``8859/15`` (the two the volet allows)."""
    principal_language: str = ""
    """MSH-19 (the PAM-FR sample writes ``FR``; the volet's samples leave it empty)."""
    max_message_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    """Largest message read (a CDA with a PDF body in base64 grows by a third) [I default]."""

    def msh(self, message_type: tuple[str, str, str], *, control_id: str, stamp: str) -> Segment:
        """An MSH segment (MSH-12 and MSH-21 are set by the caller: each message family has its own)."""
        segment = Segment(name="MSH")
        segment.set(1, "|").set(2, "^~\\&")
        segment.set(3, self.sending_application).set(4, self.sending_facility)
        segment.set(5, self.receiving_application).set(6, self.receiving_facility)
        segment.set(7, stamp)
        segment.set(9, rep(*message_type))
        segment.set(10, control_id)
        segment.set(11, self.processing_id)
        segment.set(17, self.country)
        segment.set(18, self.charset)
        if self.principal_language:
            segment.set(19, self.principal_language)
        return segment
