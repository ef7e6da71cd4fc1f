"""``dmp-connector outbox enqueue|run|status|retry|cancel``: the durable deposit queue from the command line.

The queue lives at ``--db`` (a SQLAlchemy URL; default ``sqlite:///dmp-outbox.db``, or
``$DMP_CONNECTOR_OUTBOX_URL``): SQLite on one host, ``postgresql+psycopg://…`` for workers on many.
``run`` starts N workers (threads sharing one DMP client; run more processes or hosts for more
CPU) and stops gracefully on SIGTERM or Ctrl-C: the items in flight finish, the others stay queued.

Exit codes: 0 success; 1 an error (``run --until-idle``: an item failed); 2 a usage error;
3 a configuration error; 4 a validation error.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from dmp_connector.config import Settings
from dmp_connector.errors import DmpConnectorError

if TYPE_CHECKING:  # imported on use: the outbox needs the 'outbox' extra (SQLAlchemy), the rest of the CLI does not
    from dmp_connector.outbox import Outbox, OutboxItem, OutboxStatus, Worker

from ._main import EXIT_ERROR, CliState, pass_state
from .dmp import _cda_files, _client, _identity, _patient_options

__all__ = ["cancel", "enqueue", "outbox", "retry", "run", "show", "status"]

_DB = click.option(
    "--db",
    "url",
    default="sqlite:///dmp-outbox.db",
    envvar="DMP_CONNECTOR_OUTBOX_URL",
    show_default=True,
    help="The queue's database (SQLAlchemy URL; $DMP_CONNECTOR_OUTBOX_URL).",
)


@click.group()
def outbox() -> None:
    """The durable deposit queue: enqueue documents, run workers, watch and fix items."""


def _open(
    state: CliState, url: str, schedule: str | None = None, lease: float | None = None
) -> tuple[Outbox, Settings]:
    try:
        from dmp_connector.outbox import Outbox, RetrySchedule
    except ImportError as exc:
        raise click.ClickException(f"the outbox needs its extra: pip install 'dmp-connector[outbox]' ({exc})") from exc
    try:
        settings = state.settings()
    except DmpConnectorError as exc:
        state.fail(exc)
    try:
        plan = RetrySchedule.parse(schedule) if schedule else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--schedule") from exc
    return Outbox(url, settings=settings, schedule=plan, lease=lease), settings


def _item_json(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "state": item.state.value,
        "reason": item.reason.value if item.reason else None,
        "detail": item.detail,
        "attempts": item.attempts,
        "patient": item.patient,
        "created_at": item.created_at.isoformat(),
        "due_at": item.due_at.isoformat(),
        "document_unique_id": item.document_unique_id,
        "already_deposited": item.already_deposited,
        "history": [
            {
                "at": a.at.isoformat(),
                "outcome": a.outcome,
                "worker": a.worker,
                "seconds": a.seconds,
                "code": a.code,
                "detail": a.detail,
                "next_due": a.next_due.isoformat() if a.next_due else None,
            }
            for a in item.history
        ],
    }


def _status_json(found: OutboxStatus) -> dict[str, Any]:
    return {
        "counts": {state.value: count for state, count in found.counts.items()},
        "pending": found.pending,
        "oldest_waiting": found.oldest_waiting.isoformat() if found.oldest_waiting else None,
        "expired_leases": found.expired_leases,
        "last_errors": [
            {"id": item_id, "at": a.at.isoformat(), "outcome": a.outcome, "code": a.code, "detail": a.detail}
            for item_id, a in found.last_errors
        ],
    }


def _status_text(found: OutboxStatus) -> str:
    counts = "  ".join(f"{state.value} {count}" for state, count in found.counts.items())
    lines = [counts]
    if found.oldest_waiting is not None:
        age = time.time() - found.oldest_waiting.timestamp()
        lines.append(f"oldest waiting: {found.oldest_waiting:%Y-%m-%d %H:%M:%S} UTC ({age:.0f} s ago)")
    if found.expired_leases:
        lines.append(f"expired leases: {found.expired_leases} (a worker stopped; the next claim takes them back)")
    for item_id, attempt in found.last_errors:
        lines.append(
            f"  {attempt.at:%Y-%m-%d %H:%M:%S}  {item_id}  {attempt.outcome}  {attempt.detail or attempt.code}"
        )
    return "\n".join(lines)


@outbox.command("enqueue")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@_patient_options
@_DB
@pass_state
def enqueue(state: CliState, /, paths: tuple[Path, ...], url: str, **options: Any) -> None:
    """Queue CDA files (or every *.xml of the folders given) for the patient's DMP; print the item ids."""
    if options["server"] is not None or options["data"] is not None:
        raise click.UsageError("--server and --data are for 'outbox run'")
    files = _cda_files(paths)
    if not files:
        raise click.UsageError("no CDA file (*.xml) in the paths given")
    queue, settings = _open(state, url)
    try:
        patient = _identity(settings, options)
        ids = [queue.enqueue(path.read_bytes(), patient, key=None) for path in files]
    except DmpConnectorError as exc:
        state.fail(exc)
    finally:
        queue.close()
    state.emit(
        "\n".join([f"{len(ids)} item(s) queued", *(f"  {i}  {p}" for i, p in zip(ids, files, strict=True))]),
        {"queued": [{"id": i, "file": str(p)} for i, p in zip(ids, files, strict=True)]},
    )


@outbox.command("run")
@_DB
@click.option("--workers", "-n", default=1, show_default=True, type=click.IntRange(1, 64), help="Workers (threads).")
@click.option("--schedule", default=None, metavar="WAITS", help='Retry waits, e.g. "1m 5m 1h 1d" (default: 1m … 1d).')
@click.option("--lease", default=None, type=float, help="Seconds a claimed item is held (default: timeouts.call + 60).")
@click.option("--until-idle", is_flag=True, help="Stop once nothing is due (a batch), instead of waiting for more.")
@click.option("--server", default=None, metavar="URL", help="Sandbox only: a served sandbox (default: in-process).")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Sandbox in-process only: keep the DMP store and test PKI here between runs.",
)
@pass_state
def run(
    state: CliState,
    /,
    url: str,
    workers: int,
    schedule: str | None,
    lease: float | None,
    until_idle: bool,
    server: str | None,
    data: Path | None,
) -> None:
    """Deposit queued items with N workers; SIGTERM or Ctrl-C stops them after the items in flight."""
    from dmp_connector.outbox import ItemState, Worker, worker_name

    queue, settings = _open(state, url, schedule, lease)
    try:
        with _client(settings, server, data) as client:
            pool = [Worker(queue, client, name=worker_name(str(n))) for n in range(workers)]

            def stop(signum: int, _frame: FrameType | None) -> None:
                click.echo(f"{signal.Signals(signum).name}: stopping after the items in flight", err=True)
                for worker in pool:
                    worker.stop()

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
            errors: list[BaseException] = []

            def work(worker: Worker) -> None:
                try:
                    worker.run(until_idle=until_idle)
                except BaseException as exc:  # a configuration error: stop every worker
                    errors.append(exc)
                    for other in pool:
                        other.stop()

            threads = [threading.Thread(target=work, args=(w,), name=w.name) for w in pool]
            try:
                for thread in threads:
                    thread.start()
                while any(thread.is_alive() for thread in threads):
                    for thread in threads:
                        thread.join(0.2)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if errors:
                error = errors[0]
                if isinstance(error, DmpConnectorError):
                    state.fail(error)
                raise error
        found = queue.status()
    except DmpConnectorError as exc:
        state.fail(exc)
    finally:
        queue.close()
    attempted = sum(w.processed for w in pool)
    state.emit(f"{attempted} attempt(s)\n{_status_text(found)}", {"attempts": attempted, **_status_json(found)})
    if until_idle and found.counts[ItemState.FAILED]:
        sys.exit(EXIT_ERROR)


@outbox.command("status")
@_DB
@click.option("--watch", default=None, type=float, metavar="SECONDS", help="Show progress every SECONDS until idle.")
@click.option("--errors", default=5, show_default=True, type=click.IntRange(0, 100), help="Last errors to show.")
@pass_state
def status(state: CliState, /, url: str, watch: float | None, errors: int) -> None:
    """Counts by state, the oldest waiting item, expired leases, the last errors."""
    queue, _ = _open(state, url)
    try:
        found = queue.status(errors=errors)
        if watch is not None and not state.as_json:
            total = sum(found.counts.values())
            with click.progressbar(length=total, label="final", file=sys.stderr) as bar:
                done = total - found.pending
                bar.update(done)
                while found.pending:
                    time.sleep(watch)
                    found = queue.status(errors=errors)
                    now_done = sum(found.counts.values()) - found.pending
                    bar.update(now_done - done)
                    done = now_done
    finally:
        queue.close()
    state.emit(_status_text(found), _status_json(found))


@outbox.command("show")
@click.argument("item_id")
@_DB
@pass_state
def show(state: CliState, /, item_id: str, url: str) -> None:
    """One item and its history (the patient as a pseudonym)."""
    queue, _ = _open(state, url)
    try:
        item = queue.get(item_id)
    except KeyError as exc:
        raise click.ClickException(f"no item {item_id} in the queue") from exc
    finally:
        queue.close()
    lines = [f"{item.id}  {item.state.value}" + (f" ({item.reason.value})" if item.reason else "")]
    lines += [f"  patient {item.patient}, {item.attempts} attempt(s), due {item.due_at:%Y-%m-%d %H:%M:%S} UTC"]
    if item.detail:
        lines.append(f"  {item.detail}")
    for a in item.history:
        lines.append(
            f"  {a.at:%Y-%m-%d %H:%M:%S}  {a.outcome:<18} {a.worker or '':<24} {a.code or ''} {a.detail or ''}"
        )
    state.emit("\n".join(lines), _item_json(item))


def _by_hand(state: CliState, url: str, item_id: str, action: str) -> None:
    queue, _ = _open(state, url)
    try:
        item = queue.retry(item_id) if action == "retry" else queue.cancel(item_id)
    except KeyError as exc:
        raise click.ClickException(f"no item {item_id} in the queue") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        queue.close()
    state.emit(f"{item.id}: {item.state.value}", _item_json(item))


@outbox.command("retry")
@click.argument("item_id")
@_DB
@pass_state
def retry(state: CliState, /, item_id: str, url: str) -> None:
    """Make a failed item due now, its retry schedule started afresh (once the cause is fixed)."""
    _by_hand(state, url, item_id, "retry")


@outbox.command("cancel")
@click.argument("item_id")
@_DB
@pass_state
def cancel(state: CliState, /, item_id: str, url: str) -> None:
    """Cancel an item not yet deposited (waiting or failed)."""
    _by_hand(state, url, item_id, "cancel")
