"""The whole-run leak scan finds what it is meant to find, and not the noise a run is full of."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from tests.security import leak_scan


def line(text: str, stream: str = "log") -> str:
    return json.dumps({"stream": stream, "where": "sample", "text": text})


def kinds(texts: list[str]) -> list[str]:
    needles = [
        *leak_scan.matricule_needles("275126322074974", "sample"),
        *leak_scan.name_needles("family name", "DE VINCI", "sample"),
        *leak_scan.name_needles("given name", "ZOE", "sample"),
        *leak_scan.birth_date_needles(1975, 12, 31, "sample"),
    ]
    return sorted({f.needle.kind for f in leak_scan.scan_lines([line(t) for t in texts], needles)})


def test_a_planted_matricule_is_found_in_every_usual_spelling() -> None:
    for text in (
        "patient 275126322074974 found",
        "NIR 2751263220749 sent",
        "ins=2 75 12 63 220 749 74",
        "cx 2751263220749^^^&1.2.250.1.213.1.4.8&ISO^NH",
        "dotted 2.75.12.63.220.749",
    ):
        assert kinds([text]) == ["matricule"], text


def test_planted_names_and_birth_dates_are_found() -> None:
    assert kinds(["subject XDM/1.0/DDM+CR de Vinci Zoe 31/12/1975"]) == ["birth date", "family name", "given name"]
    assert kinds(["born 19751231"]) == ["birth date"]
    assert kinds(['{"birth": "1975-12-31"}']) == ["birth date"]


def test_the_prefilter_lets_every_spelling_through() -> None:
    # Each needle's literal must be in the squashed form of every text its pattern matches, or the
    # prefilter would hide a leak: odd separators, mixed case, names across lines and dashes.
    for text, kind in (
        ("ins=2-75 12.63-220 749.74;", "matricule"),
        ("Dos\nSantos, Maria", "family name"),
        ("née D'Aeion le 1975-12-31", "birth date"),
        ("DE  VINCI", "family name"),
    ):
        needles = [
            *leak_scan.matricule_needles("275126322074974", "sample"),
            *leak_scan.name_needles("family name", "DOS SANTOS", "sample"),
            *leak_scan.name_needles("family name", "DE VINCI", "sample"),
            *leak_scan.birth_date_needles(1975, 12, 31, "sample"),
        ]
        hits = {n.kind for n in needles if n.pattern.search(text)}
        assert kind in hits, text
        assert all(n.literal in leak_scan.squash(text) for n in needles if n.pattern.search(text)), text
        assert kind in {f.needle.kind for f in leak_scan.scan_lines([line(text)], needles)}, text


def test_a_name_particle_alone_is_not_a_name() -> None:
    needles = leak_scan.name_needles("family name", "DOS SANTOS", "sample")
    assert sorted(n.value for n in needles) == ["DOS SANTOS", "SANTOS"]
    assert leak_scan.scan_lines([line("a DoS guard refused the archive")], needles) == []


def test_noise_is_not_a_leak() -> None:
    noise = [
        "hmac-sha256:8f2e0b7c5a9d4e1f2751263220749aa1",  # inside a hex pseudonym
        "oid 1.2.250.1.213.1.4.8 and 1.2.250.1.71.4.2.4",
        "event 0f3c2751263220749abc",
        "zoelogic vincible 119751231 19751231999 1975-12-310",
        "MessageID urn:uuid:27512632-2074-9740-0000-000000000000",
    ]
    assert kinds(noise) == []


def test_the_session_capture_file_is_scanned(tmp_path: Path) -> None:
    capture = tmp_path / "captured.jsonl"
    capture.write_text(line("all good") + "\n" + line("audit 2751263220749", "audit") + "\n", encoding="utf-8")
    lines, counts, findings = leak_scan.scan_file(capture, leak_scan.matricule_needles("275126322074974", "s"))
    assert (lines, counts) == (2, {"log": 1, "audit": 1})
    assert [(f.stream, f.needle.value) for f in findings] == [("audit", "2751263220749")]


def test_the_needles_cover_the_seeds_the_plugin_and_the_fixtures() -> None:
    needles = leak_scan.gather_needles()
    values = {(n.kind, n.value) for n in needles}
    assert ("matricule", "275126322074974") in values  # INSi and DMP seed, plugin patient
    assert ("matricule", "2751263220749") in values
    assert ("family name", "HOUILLES") in values  # tests/insi/helpers.py, unknown to INSi
    assert ("given name", "LEONARDO") in values
    assert ("birth date", "1975-12-31") in values
    assert ("family name", "PAT-TROIS") in values
    assert not {v for k, v in values if v.upper() in leak_scan.COMMON_WORDS}


@pytest.mark.skipif(os.environ.get("DMPC_LEAK_SCAN") == "off", reason="the leak scan is turned off (DMPC_LEAK_SCAN)")
def test_the_session_capture_is_installed() -> None:
    # The root conftest's handler is on the root logger for the whole run.
    handlers = [type(h).__name__ for h in logging.getLogger().handlers]
    assert "_LeakCapture" in handlers
    assert logging.getLogger("dmp_connector").getEffectiveLevel() == logging.DEBUG


def test_a_leak_in_a_chained_cause_is_found_and_test_source_lines_are_not() -> None:
    """What ``log.exception`` prints: the error's message is clean, its cause quotes the patient."""

    class ProtocolError(Exception):  # not the SDK's: the whole-run capture must not record this planted leak
        pass

    zoe_de_vinci = "unused"  # a test's own code naming a fixture is not data: its source line is dropped
    try:
        try:
            raise ValueError("the service said: DE VINCI Zoe born 1975-12-31")
        except ValueError as cause:
            raise ProtocolError("the answer could not be read") from cause
    except ProtocolError as error:
        text = leak_scan.exception_text(error)
    assert "the answer could not be read" in text and "zoe_de_vinci" not in text
    assert "The above exception was the direct cause" in text
    assert kinds([text]) == ["birth date", "family name", "given name"]
    assert zoe_de_vinci == "unused"
