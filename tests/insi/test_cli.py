"""``dmp-connector ins search`` and ``ins verify``, against the in-process simulator and a loopback one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmp_connector.cli import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, main
from dmp_connector.sandbox import HttpRequest, HttpResponse, LoopbackServer, server_ssl_context
from dmp_connector.sandbox.insi import InsiSimulator
from tests.conftest import PkiFiles

CONFIG = """
[software]
name = "CliLPS"
version = "1.2"
editor = "Editeur"
{idam}

[organisation]
id = "123456789"
id_kind = "1"
name = "Cabinet"

[retry]
max_attempts = {attempts}
initial_delay = 0.001
max_delay = 0.002
jitter = 0.0
"""

ADRUN = ["--birth-name", "Adrun", "--first-names", "Zoé", "--sex", "f", "--birth-date", "1975-12-31"]
ECETINSI = [
    "--birth-name",
    "ECETINSI",
    "--first-names",
    "PIERRE-ALAIN MURIEL FLORIANT",
    "--sex",
    "M",
    "--birth-date",
    "2009-07-14",
    "--birth-place",
    "63220",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def config(tmp_path: Path, *, idam: bool = True, attempts: int = 3, extra: str = "") -> str:
    path = tmp_path / "dmp.toml"
    text = CONFIG.format(idam='insi_authorisation_id = "CLI-IDAM"' if idam else "", attempts=attempts)
    path.write_text(text + extra, encoding="utf-8")
    return str(path)


def test_search_prints_the_identity(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", config(tmp_path), "ins", "search", *ADRUN])
    assert result.exit_code == EXIT_OK, result.output
    assert "INSi answer 00: OK" in result.output
    assert "2 75 12 63 220 749 74" in result.output
    assert "ADRUN" in result.output and "63220" in result.output


def test_search_json_with_history(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", config(tmp_path), "--json", "ins", "search", *ECETINSI])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data["code"] == "00"
    assert data["identity"]["ins"] == {
        "matricule": "109076322083489",
        "oid": "1.2.250.1.213.1.4.8",
        "kind": "NIR",
        "key_valid": True,
    }
    assert [h["matricule"] for h in data["identity"]["replaced"]] == ["209076322083439", "209066322012355"]
    assert data["identity"]["history"][0]["start"] == "2019-03-01"
    assert data["identity"]["traits"]["birth_first_names"] == ["PIERRE-ALAIN", "MURIEL", "FLORIANT"]


@pytest.mark.parametrize(
    ("extra", "code", "criteria"),
    [
        ([], "02", {"all_first_names": False, "birth_place": False}),
        (["--birth-place", "75056"], "00", {"all_first_names": False, "birth_place": True}),
        (["--birth-place", "75056", "--with-birth-place"], "00", {"all_first_names": False, "birth_place": True}),
        (["--all-first-names"], "02", {"all_first_names": True, "birth_place": False}),
    ],
)
def test_search_refinement_and_criteria(
    runner: CliRunner, tmp_path: Path, extra: list[str], code: str, criteria: dict[str, bool]
) -> None:
    args = ["--birth-name", "DE VINCI", "--first-names", "LEONARDO", "--sex", "M", "--birth-date", "2014-02-01"]
    result = runner.invoke(main, ["--config", config(tmp_path), "--json", "ins", "search", *args, *extra])
    assert result.exit_code == EXIT_OK, result.output
    data = json.loads(result.output)
    assert data["code"] == code and data["criteria"] == criteria


def test_search_of_nobody(runner: CliRunner, tmp_path: Path) -> None:
    args = [
        "--birth-name",
        "HOUILLES",
        "--first-names",
        "PIERRE PAUL JACQUES",
        "--sex",
        "M",
        "--birth-date",
        "1993-01-27",
    ]
    result = runner.invoke(main, ["--config", config(tmp_path), "ins", "search", *args])
    assert result.exit_code == EXIT_OK
    assert "INSi answer 01: Aucune identite trouvee" in result.output


def test_verify_confirmed_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main,
        ["--config", config(tmp_path), "ins", "verify", "--matricule", "2 75 12 63 220 749 74", *ADRUN,
         "--birth-place", "63220"],
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.startswith("verdict: CONFIRMED")
    assert result.stderr == "INSi: sandbox, in-process simulator (no server configured)\n"


def test_verify_replaced_matricule_exits_4_with_the_verdict(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--config", config(tmp_path), "--json", "ins", "verify", "--matricule", "209076322083439", *ECETINSI]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_VALIDATION
    data = json.loads(result.output)
    assert data["verdict"] == "matricule_replaced" and data["confirmed"] is False
    assert data["result"]["identity"]["ins"]["matricule"] == "109076322083489"


def test_verify_traits_differ_lists_them(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--config", config(tmp_path), "ins", "verify", "--matricule", "275126322074974", *ADRUN]
    args += ["--birth-place", "63113"]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_VALIDATION
    assert "TRAITS DIFFER" in result.output and "birth_place: ours 63113, INSi 63220" in result.output


def test_verify_with_a_nia_oid_name(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--birth-name", "PROVISOIRE", "--first-names", "MATRICULE", "--sex", "M", "--birth-date", "2009-07-01"]
    result = runner.invoke(
        main, ["--config", config(tmp_path), "ins", "verify", "--matricule", "109076322088835", "--oid", "nia", *args]
    )
    assert result.exit_code == EXIT_VALIDATION  # no birth place stored: INSi's differs (missing)
    assert "placeholder" in result.output


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["search", *ADRUN[:1], "X1", *ADRUN[2:]], EXIT_VALIDATION, "may not hold"),
        (["verify", "--matricule", "275126322074975", *ADRUN], EXIT_VALIDATION, "key"),
        (["verify", "--matricule", "275126322074974", "--oid", "1.2.3", *ADRUN], EXIT_VALIDATION, "not an INS OID"),
    ],
)
def test_bad_input_exits_4(runner: CliRunner, tmp_path: Path, args: list[str], code: int, text: str) -> None:
    result = runner.invoke(main, ["--config", config(tmp_path), "ins", *args])
    assert result.exit_code == code
    assert text in result.output


def test_missing_idam_exits_3(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", config(tmp_path, idam=False), "--json", "ins", "search", *ADRUN])
    assert result.exit_code == EXIT_CONFIG
    error = json.loads(result.output)["error"]
    assert error["type"] == "ConfigurationError" and "insi_authorisation_id" in error["hint"]


def test_service_fault_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--birth-name", "D'AEION", "--first-names", "COEUR", "--sex", "M", "--birth-date", "1987-01-25"]
    result = runner.invoke(main, ["--config", config(tmp_path, attempts=1), "--json", "ins", "search", *args])
    assert result.exit_code == EXIT_ERROR
    error = json.loads(result.output)["error"]
    assert error["type"] == "InsiServiceError" and "insi_102" in error["message"]


def test_server_option_reaches_a_served_simulator(runner: CliRunner, tmp_path: Path, pki_files: PkiFiles) -> None:
    tls = (
        f'\n[tls]\ncert_file = "{pki_files.client_cert}"\nkey_file = "{pki_files.client_key}"\n'
        f'ca_bundle = "{pki_files.ca_bundle}"\n'
    )
    simulator = InsiSimulator()
    calls: list[str] = []

    def counting(request: HttpRequest) -> HttpResponse:
        calls.append(request.path)
        return simulator(request)

    context = server_ssl_context(pki_files.server, pki_files.pki, workdir=tmp_path)
    with LoopbackServer(counting, ssl_context=context) as server:
        result = runner.invoke(
            main, ["--config", config(tmp_path, extra=tls), "ins", "search", *ADRUN, "--server", server.url]
        )
    assert result.exit_code == EXIT_OK, result.output
    assert calls == ["/insi/lps"]


def test_server_option_is_for_the_sandbox_only(runner: CliRunner, tmp_path: Path) -> None:
    args = ["--config", config(tmp_path), "--env", "test", "ins", "search", *ADRUN, "--server", "https://x"]
    result = runner.invoke(main, args)
    assert result.exit_code == EXIT_USAGE
    assert "sandbox only" in result.output
