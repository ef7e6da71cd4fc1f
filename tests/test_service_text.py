"""service_text: a service's free text made fit for a message or a ticket."""

from __future__ import annotations

from dmp_connector.errors import MAX_SERVICE_TEXT, SoapFaultError, service_text, shown_code


def test_identity_shapes_and_given_values_are_redacted() -> None:
    text = "Patient Dupont Zoé née le 31/12/1975 (1975-12-31), NIR 2 75 12 63 220 749 74, ADRUN inconnue"
    shown = service_text(text, redact=["dupont", "Zoé"])
    assert shown is not None
    for value in ("Dupont", "Zoé", "31/12/1975", "1975-12-31", "2 75 12", "ADRUN", "749 74"):
        assert value not in shown, value
    assert shown.startswith("Patient … … née le") and shown.endswith("… inconnue")


def test_names_written_in_lower_case_with_a_capital_are_redacted_too() -> None:
    # As a mail server may quote a recipient: "Zoé Adrun", no capitals to catch, no redact value given.
    shown = service_text("550 5.1.1 Destinataire Zoé Adrun née le 31 décembre 1975 inconnu")
    assert shown is not None and "Zoé" not in shown and "Adrun" not in shown and "1975" not in shown
    assert shown == "… … … … née le 31 décembre … inconnu"


def test_long_text_is_cut_and_controls_flattened() -> None:
    shown = service_text("ligne\nsuivante\x00" + "x" * 10_000)
    assert shown is not None and len(shown) == MAX_SERVICE_TEXT and shown.endswith("…")
    assert "\n" not in shown and "\x00" not in shown
    assert service_text(None) is None
    assert service_text("Erreur 500 interne") == "Erreur 500 interne"


def test_a_code_that_is_not_a_code_is_not_shown() -> None:
    assert shown_code("{urn:x}siram_40") == "siram_40"
    assert shown_code("env:Sender") == "Sender"
    assert shown_code("ADRUN ZOE 1975-12-31") == "(unreadable code)"
    fault = SoapFaultError(code="ADRUN ZOE", reason="ADRUN ZOE née le 31/12/1975", subcodes=["x:DMPClosed"])
    assert "ADRUN" not in str(fault) and "1975" not in str(fault) and "DMPClosed" in str(fault)
    assert fault.reason == "ADRUN ZOE née le 31/12/1975"
