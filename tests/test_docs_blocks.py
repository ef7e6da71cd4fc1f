"""Every ```python block of README.md and docs/ runs, so that a page cannot drift from the API.

The convention the pages follow (announced to every engineer, and written in README.md's
"Development" section):

- the ```python blocks of one page run in order in one namespace, like a doctest session,
  in a temporary working directory, offline (a connection to anything but loopback fails);
  a block may ``await`` at top level (it then runs in its own event loop);
- a block preceded by the line ``<!-- docs: not-run (reason) -->`` is skipped; the reason is
  required (a real national service, a smart card, a browser the reader opens …);
- a block of another language whose first line is a comment naming a file (``# dmp-connector.toml``)
  is written to the working directory under that name before the next blocks run: the page
  shows the file the reader creates, and nothing is set up out of sight;
- a ```sh/```bash/```console block that runs ``dmp-connector`` names commands that exist.

Warnings are errors here as everywhere (pytest's ``filterwarnings = error``): a page that
imports a deprecated name fails.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shlex
import socket
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "cda-2025"
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
NOT_RUN = re.compile(r"^<!--\s*docs:\s*not-run\b(?P<rest>.*?)-->\s*$")
REASON = re.compile(r"^\s*\((?P<reason>.*\S.*)\)\s*$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
FILE_HEADER = re.compile(r"^(?:#|//|;|--)\s*(?P<name>[\w.-]+\.\w+)\s*$")
SHELL = {"sh", "bash", "console", "shell", "shell-session"}
LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    """1-based line of the opening fence."""
    language: str
    text: str
    not_run: str | None
    """The line marking the block as not run, if any (checked to give a reason)."""

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the marker line before each (if any)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    previous = ""
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        marker = previous if NOT_RUN.match(previous) else None
        found.append(Block(page, i + 1, opening["info"].lower(), "\n".join(body) + "\n", marker))
        previous = ""
        i = j + 1
    return found


def _python_pages() -> list[Path]:
    return [page for page in PAGES if any(b.language in {"python", "py"} for b in blocks(page))]


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --- offline ---------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution and connections to anything but loopback fail, as on a CI runner without network."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK and not str(name).startswith("127."):
            raise socket.gaierror(socket.EAI_NONAME, f"offline docs test: no network for {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def allowed(address: Any) -> bool:
        if isinstance(address, tuple) and address:
            host = str(address[0])
            return host in LOOPBACK or host.startswith("127.")
        return True  # a Unix socket

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise OSError(f"offline docs test: no network for {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            raise OSError(f"offline docs test: no network for {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    # The ANS kit where a page says a vendor unpacked it (the kit is read beside the repository, never vendored).
    if KIT.is_dir():
        (tmp_path / "TestContenuCDA-3-0").symlink_to(KIT, target_is_directory=True)
    # A page reads its own settings from the files it shows, never from the developer's environment.
    for name in list(os.environ):
        if name.startswith("DMP_CONNECTOR_"):
            monkeypatch.delenv(name)
    return tmp_path


# --- running a page ---------------------------------------------------------------------------


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Compile the block with its page's line numbers and run it; a top-level ``await`` runs in an event loop."""
    source = "\n" * block.line + block.text
    code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:
        coroutine = eval(code, namespace)
        asyncio.run(coroutine)
    else:
        exec(code, namespace)


def run_page(page: Path) -> int:
    """Run the page's blocks in order in one namespace; the number of Python blocks run."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(page):
        if block.not_run is not None:
            continue
        if block.language in {"python", "py"}:
            try:
                run_block(block, namespace)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                detail = "".join(traceback.format_exception(exc, limit=-8))
                pytest.fail(f"the ```python block at {block.where()} fails:\n{detail}", pytrace=False)
            ran += 1
            continue
        header = FILE_HEADER.match(block.text.splitlines()[0]) if block.text.strip() else None
        if header is not None and block.language not in SHELL:
            Path(header["name"]).write_text(block.text, encoding="utf-8")
    return ran


@pytest.mark.parametrize("page", _python_pages(), ids=_id)
@pytest.mark.usefixtures("offline")
def test_the_python_blocks_of_a_page_run(page: Path, workdir: Path) -> None:
    modules = set(sys.modules)
    try:
        ran = run_page(page)
    finally:
        # A page may import a module of its own making in the working directory; forget it.
        for name in set(sys.modules) - modules:
            module = sys.modules.get(name)
            if module is not None and str(getattr(module, "__file__", "") or "").startswith(str(workdir)):
                del sys.modules[name]
    assert ran > 0 or all(b.not_run for b in blocks(page) if b.language in {"python", "py"})


def test_every_page_is_seen() -> None:
    """The pages that matter are among those read, and they have Python blocks that run."""
    names = {_id(page) for page in _python_pages()}
    assert {"README.md", "docs/getting-started.md", "docs/dmp.md", "docs/mssante.md", "docs/insi.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_a_block_not_run_says_why(page: Path) -> None:
    for block in blocks(page):
        if block.not_run is None:
            continue
        rest = NOT_RUN.match(block.not_run)
        assert rest is not None
        assert REASON.match(rest["rest"]), (
            f"{block.where()}: '{block.not_run}' gives no reason: "
            "write <!-- docs: not-run (why it cannot run in CI) -->"
        )
    # A marker that is not right before a block marks nothing: a mistake (a blank line is fine).
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if NOT_RUN.match(line.strip()):
            following = next((text for text in lines[number:] if text.strip()), "")
            assert FENCE.match(following), f"{_id(page)}:{number}: the not-run marker is not followed by a block"


def test_the_markers_are_read() -> None:
    """The parser sees a marker with its reason, one without, and a block that is run (so the checks can fail)."""
    sample = "\n".join(
        [
            "<!-- docs: not-run (needs a smart card) -->",
            "```python",
            "raise SystemExit",
            "```",
            "<!-- docs: not-run -->",
            "",
            "```python",
            "x = 1",
            "```",
            "```python",
            "await_free = 2",
            "```",
        ]
    )
    page = ROOT / "tests" / ".docs-sample.md"
    try:
        page.write_text(sample, encoding="utf-8")
        found = blocks(page)
    finally:
        page.unlink()
    assert [(b.line, b.not_run is not None) for b in found] == [(2, True), (7, True), (10, False)]
    reasons = [REASON.match(NOT_RUN.match(b.not_run)["rest"]) for b in found[:2] if b.not_run]  # type: ignore[index]
    assert reasons[0] is not None and reasons[0]["reason"] == "needs a smart card"
    assert reasons[1] is None


def test_a_failing_block_fails_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(
        "```toml\n# settings.toml\na = 1\n```\n\n```python\nfrom pathlib import Path\n"
        "assert Path('settings.toml').read_text().endswith('a = 1\\n')\n```\n\n"
        "```python\nx = await_me = 1\n```\n\n```python\nassert x == 2, 'stale'\n```\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"page\.md:15 fails"):
        run_page(page)


def test_top_level_await_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("```python\nimport asyncio\nawait asyncio.sleep(0)\ndone = True\n```\n", encoding="utf-8")
    assert run_page(page) == 1


# --- shell blocks -----------------------------------------------------------------------------


def _commands_in(block: Block) -> Iterator[list[str]]:
    """The argument lists after ``dmp-connector`` on each line of a shell block."""
    for raw in block.text.splitlines():
        line = raw.strip()
        if line.startswith(("$ ", "% ")):
            line = line[2:]
        if "dmp-connector" not in line or line.startswith("#"):
            continue
        line = line.split(" #", 1)[0]
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        for index, word in enumerate(words):
            if word.endswith("dmp-connector") and not word.startswith(("dmp-connector[", '"dmp-connector')):
                if index > 0 and words[index - 1] in {"install", "-e", "uninstall", "show"}:
                    break
                yield words[index + 1 :]
                break


def resolve(words: list[str]) -> str | None:
    """Walk the words through the click command tree: the first that names no command, or None."""
    from dmp_connector.cli import main

    command: click.Command = main
    ctx = click.Context(main, info_name="dmp-connector")
    rest = list(words)
    while rest and isinstance(command, click.Group):
        word = rest.pop(0)
        if word in {"|", "&&", ";", ">", "2>&1"}:
            return None
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            option = next((p for p in command.params if isinstance(p, click.Option) and name in p.opts), None)
            if option is None and name not in {"-h", "--help", "--version"}:
                return word
            if option is not None and not option.is_flag and not option.count and "=" not in word and rest:
                rest.pop(0)
            continue
        if word.startswith(("<", "$", "…", "...")):
            return None  # a placeholder
        sub = command.get_command(ctx, word)
        if sub is None:
            return word
        command = sub
        ctx = click.Context(sub, info_name=word, parent=ctx)
    return None


def test_the_shell_blocks_name_commands_that_exist() -> None:
    wrong = [
        f"{block.where()}: dmp-connector {' '.join(words)} (no command {resolve(words)!r})"
        for page in PAGES
        for block in blocks(page)
        if block.language in SHELL
        for words in _commands_in(block)
        if resolve(words) is not None
    ]
    assert not wrong, "\n".join(wrong)


def test_a_command_that_does_not_exist_is_seen() -> None:
    assert resolve(["--env", "test", "ins", "search", "--help"]) is None
    assert resolve(["sandbox", "pki", "./pki"]) is None
    assert resolve(["ins", "serach"]) == "serach"
    assert resolve(["nosuch"]) == "nosuch"
    assert resolve(["--no-such-option", "ins"]) == "--no-such-option"


def test_the_readme_and_the_index_list_every_page() -> None:
    """A new page is linked from README.md's "Documentation" and docs/index.md's "Pages" (a vendor starts there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    assert [p for p in pages if f"(docs/{p})" not in readme] == [], "missing from README.md's Documentation list"
    assert [p for p in pages if f"({p})" not in index] == [], "missing from docs/index.md's Pages table"
