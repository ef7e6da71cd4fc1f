"""``dmp-connector cda view FILE [--open]``: a received CDA document as one safe HTML page.

The page is what :func:`dmp_connector.display.render_cda` writes (no script, no fetch, the
document's own stylesheet never used); it is written beside the file (``FILE.html``) or to
``--output``. ``--attachments DIR`` also saves the PDF/image bodies and attachments there, to
open in the workstation's own viewer. ``--open`` shows the page in the default browser. Exit 0
with the page written, 4 when the file is refused (a DTD, an entity, not a CDA document).
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from dmp_connector.display import render_cda
from dmp_connector.errors import DmpConnectorError, MalformedResponseError, UnsafeXmlError, ValidationError

from ._main import CliState, pass_state
from .cda import cda

__all__ = ["view"]


@cda.command("view")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: FILE with the .html suffix).",
)
@click.option(
    "--attachments",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also save the document's PDF/image bodies and attachments in this folder.",
)
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@pass_state
def view(state: CliState, file: Path, output: Path | None, attachments: Path | None, open_page: bool) -> None:
    """Write a CDA document as one self-contained, sanitised HTML page.

    \b
        dmp-connector cda view compte-rendu.xml --open
    """
    try:
        rendered = render_cda(file.read_bytes())
    except (UnsafeXmlError, MalformedResponseError) as exc:
        state.fail(ValidationError(f"{file.name} is refused: {exc.message}", hint=exc.hint))
    except DmpConnectorError as exc:
        state.fail(exc)
    target = output or file.with_suffix(".html")
    if target.resolve() == file.resolve():
        state.fail(
            ValidationError(
                f"{file.name} would be overwritten by its own page",
                hint="name the page with -o (a received document is never replaced)",
            )
        )
    target.write_bytes(rendered.as_bytes())
    saved: list[str] = []
    if attachments is not None:
        attachments.mkdir(parents=True, exist_ok=True)
        for attachment in rendered.attachments:
            path = attachments / attachment.filename
            path.write_bytes(attachment.content)
            saved.append(str(path))
    state.emit(
        f"{target}: {len(rendered.attachments)} attachment(s), {len(rendered.warnings)} warning line(s)",
        {
            "page": str(target),
            "attachments": [
                {"filename": a.filename, "media_type": a.media_type, "size": len(a.content)}
                for a in rendered.attachments
            ],
            "saved": saved,
            "warnings": list(rendered.warnings),
        },
    )
    if open_page:
        webbrowser.open(target.resolve().as_uri())
