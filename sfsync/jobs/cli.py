"""CLI commands of the jobs: ``load``, ``retry``, ``rejects`` (and ``export``). Parse, call, print."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from sfsync.app import App
from sfsync.errors import UserError
from sfsync.state import Reject

pass_app = click.make_pass_decorator(App)


def _print_load(report: object, dry_run: bool) -> None:
    from sfsync import render

    run = report.run  # type: ignore[attr-defined]
    con = render.console()
    title = f"load run {run.run_id} — {'dry run: nothing was written' if dry_run else run.status}"
    con.print(render.counts_table(run.plain_counts(), title))
    if dry_run:
        for sobject, p in report.planned.items():  # type: ignore[attr-defined]
            con.print(f"  {sobject}: would create {p.create:,}, update {p.update:,}; "
                      f"{p.unchanged:,} unchanged, {p.rejected:,} rejected")
    calls = run.api_calls
    con.print("API calls: " + (", ".join(f"{k} {v:,}" for k, v in sorted(calls.items()) if v) or "none")
              + f" · {report.seconds:.1f}s")  # type: ignore[attr-defined]
    if report.trim_date:  # type: ignore[attr-defined]
        con.print(f"records dated before {report.trim_date} were not loaded (data-retention trim date)")  # type: ignore[attr-defined]
    if run.rejected:
        con.print(f"[yellow]{run.rejected:,} rows rejected[/yellow]: sfsync rejects {run.run_id} "
                  f"(--csv FILE for a Data Loader-style error file)")


@click.command("load")
@click.option("--biller", "billers", multiple=True, help="Only this biller (repeatable). Default: every enabled one.")
@click.option("--full", is_flag=True, help="Resend every row, even those unchanged since the last run.")
@click.option("--dry-run", is_flag=True, help="Read, map and diff; report what would be sent; write nothing.")
@click.option("--trim-date", type=click.DateTime(["%Y-%m-%d"]), help="Skip records dated before this (overrides config/org).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def load(app: App, billers: tuple[str, ...], full: bool, dry_run: bool, trim_date: object, as_json: bool) -> int:
    """Load the billers' statements, line items, balances and disputes into Salesforce.

    Only new and changed rows are sent. Exit 0 when everything went through, 3 when rows were
    rejected (see `sfsync rejects RUN`), 1 when the run failed or stopped (rerun to resume).
    """
    from sfsync.jobs.load import LoadOptions
    from sfsync.jobs.load_run import run_load

    td = trim_date.date() if trim_date is not None else None  # type: ignore[attr-defined]
    report = run_load(app, list(billers) or None, LoadOptions(full=full, dry_run=dry_run, trim_date=td),
                      progress=None if not as_json else False)
    if as_json:
        r = report.run
        click.echo(json.dumps({"run_id": r.run_id, "status": r.status, "counts": r.plain_counts(),
                               "api_calls": r.api_calls, "rejected": r.rejected,
                               "planned": {k: vars(v) for k, v in report.planned.items()}}, default=str, indent=2))
    else:
        _print_load(report, dry_run)
    return report.run.exit_code


@click.command("retry")
@click.argument("run_id", type=int)
@pass_app
def retry(app: App, run_id: int) -> int:
    """Re-send the rows a load run rejected, once the data or the mapping is fixed.

    The billers' files are read again (processed or not) and only the rejected rows are
    considered; those that are still wrong are rejected again, with their reason.
    """
    from sfsync.jobs.load import LoadOptions
    from sfsync.jobs.load_run import run_load

    store = app.store
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"no run {run_id}")
    if run.job != "load":
        raise UserError(f"run {run_id} is a {run.job} run; retry re-sends load rejects (rerun `sfsync {run.job}`)")
    rejects = store.list_rejects(run_id)
    keyed: dict[str, set[str]] = {}
    for r in rejects:
        if r.key:
            keyed.setdefault(r.sobject, set()).add(r.key)
    if not rejects:
        click.echo(f"run {run_id} rejected no rows: nothing to retry")
        return 0
    unkeyed = sum(1 for r in rejects if not r.key)
    if unkeyed:
        click.echo(f"note: {unkeyed:,} rejected rows had no key (unreadable rows); fix the source file and run "
                   "`sfsync load` — a changed file is read again", err=True)
    report = run_load(app, run.billers, LoadOptions(reread=True, only_keys=keyed), trigger="cli")
    store.mark_rejects_retried(run_id, report.run.run_id)
    _print_load(report, False)
    return report.run.exit_code


@click.command("rejects")
@click.argument("run_id", type=int)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True),
              help="Write a Data Loader-style error file: SOURCE (file:line or the biller's id), OBJECT, KEY, "
                   "STAGE, ERROR_CODE, ERROR, then the fields that were sent (rows rejected by Salesforce).")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown on screen.")
@pass_app
def rejects(app: App, run_id: int, csv_path: str | None, limit: int) -> int:
    """The rejected rows of a run: where each came from and why."""
    from rich.table import Table

    from sfsync import render

    store = app.store
    if store.get_run(run_id) is None:
        raise UserError(f"no run {run_id}")
    rows = store.list_rejects(run_id)
    if csv_path:
        _write_error_csv(Path(csv_path), rows)
        click.echo(f"{len(rows):,} rejected rows written to {csv_path}")
        return 0
    if not rows:
        click.echo(f"run {run_id} rejected no rows")
        return 0
    t = Table(title=f"run {run_id}: {len(rows):,} rejected rows" + (f" (first {limit})" if len(rows) > limit else ""),
              title_justify="left")
    for c in ("source", "object", "key", "stage", "code", "message"):
        t.add_column(c, overflow="fold")
    for r in rows[:limit]:
        t.add_row(r.source or "", r.sobject, r.key or "", r.stage, r.code, r.message)
    render.console().print(t)
    return 0


def _write_error_csv(path: Path, rows: list[Reject]) -> None:
    payload_cols: list[str] = []
    for r in rows:
        for k in (r.payload or {}):
            if k not in payload_cols:
                payload_cols.append(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["SOURCE", "OBJECT", "KEY", "STAGE", "ERROR_CODE", "ERROR", *payload_cols])
        for r in rows:
            p = r.payload or {}
            w.writerow([r.source or "", r.sobject, r.key or "", r.stage, r.code, r.message,
                        *[("" if p.get(c) is None else p.get(c)) for c in payload_cols]])


@click.command("export")
@click.option("--biller", "billers", multiple=True, help="Only this biller (repeatable). Default: every biller with export mappings.")
@click.option("--dry-run", is_flag=True, help="Pull, route, map and check the ledger; list what would be exported; send and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def export(app: App, billers: tuple[str, ...], dry_run: bool, as_json: bool) -> int:
    """Export payments, adjustments, payment methods and dispute Cases to their billers, each once.

    Outcomes are written back to Salesforce as configured (export.objects). Exit 0 when all went
    through, 3 when records were rejected or conflict (see `sfsync rejects RUN`), 1 on failure.
    """
    from sfsync import render
    from sfsync.jobs.export import ExportOptions
    from sfsync.jobs.export_run import run_export

    report = run_export(app, list(billers) or None, ExportOptions(dry_run=dry_run))
    run = report.run
    if as_json:
        click.echo(json.dumps({"run_id": run.run_id, "status": run.status, "counts": run.plain_counts(),
                               "api_calls": run.api_calls, "rejected": run.rejected,
                               "would_export": {f"{b}/{s}": {"count": p.count, "sample": p.sample}
                                                for (b, s), p in report.planned.items()}}, indent=2))
        return run.exit_code
    con = render.console()
    title = f"export run {run.run_id} — {'dry run: nothing was sent or written' if dry_run else run.status}"
    con.print(render.counts_table(run.plain_counts(), title))
    for (biller, stream), p in sorted(report.planned.items()):
        more = f" … and {p.count - len(p.sample):,} more" if p.count > len(p.sample) else ""
        con.print(f"  would export {p.count:,} {stream} to {biller}: {', '.join(p.sample)}{more}")
    con.print("API calls: " + (", ".join(f"{k} {v:,}" for k, v in sorted(run.api_calls.items()) if v) or "none")
              + f" · {report.seconds:.1f}s")
    if run.rejected:
        con.print(f"[yellow]{run.rejected:,} records rejected or in conflict[/yellow]: sfsync rejects {run.run_id}")
    return run.exit_code


__all__ = ["export", "load", "rejects", "retry"]
