"""How runs and summaries look on a terminal (rich tables) and to machines (plain dicts)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from sfsync.state import Run

ALWAYS_SHOWN = {"read", "pulled", "unchanged", "sent", "exported", "rejected"}
COUNT_COLUMNS = ("read", "pulled", "skipped", "unchanged", "would_create", "would_update", "sent", "created",
                 "updated", "exported", "already_exported", "rejected", "rejected_by_biller", "retried")


def console(stderr: bool = False) -> Console:
    """A rich console (plain text when not a terminal)."""
    probe = Console(stderr=stderr)
    # Off a terminal rich assumes 80 columns; logs and CI output read better wider.
    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   width=None if probe.is_terminal else 160)


def run_dict(run: Run) -> dict[str, Any]:
    """A run as JSON-ready data."""
    d = asdict(run)
    d["duration_s"] = _duration(run)
    return d


def _duration(run: Run) -> float | None:
    if run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def print_runs(runs: list[Run]) -> None:
    """The run history as a table."""
    if not runs:
        console().print("no runs yet")
        return
    t = Table(title="sfsync runs", title_justify="left")
    for col in ("id", "job", "billers", "trigger", "status", "started (UTC)", "duration", "sent", "rejected"):
        t.add_column(col, justify="right" if col in ("id", "sent", "rejected", "duration") else "left")
    for r in runs:
        tot = totals(r.counts)
        dur = _duration(r)
        t.add_row(str(r.id), r.job, ",".join(r.billers), r.trigger, _status(r.status),
                  f"{r.started_at:%Y-%m-%d %H:%M:%S}", f"{dur:.1f}s" if dur is not None else "—",
                  f"{tot.get('sent', 0) + tot.get('exported', 0):,}",
                  f"{tot.get('rejected', 0) + tot.get('rejected_by_biller', 0):,}")
    console().print(t)


def totals(counts: dict[str, Any]) -> dict[str, int]:
    """Sum the per-object counts of a run."""
    out: dict[str, int] = {}
    for obj in counts.values():
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(v, int | float):
                    out[k] = out.get(k, 0) + int(v)
    return out


def _status(s: str) -> str:
    colour = {"succeeded": "green", "rejected": "yellow", "failed": "red", "stopped": "yellow",
              "running": "cyan"}.get(s, "white")
    return f"[{colour}]{s}[/{colour}]"


#: Durations kept with the counts: wall time, and the worker's own CPU time, per object.
TIMES = {"seconds": "time", "cpu_seconds": "cpu"}


def counts_table(counts: dict[str, dict[str, Any]], title: str) -> Table:
    """Per-object counts (read, unchanged, sent, created, updated, rejected, retried…)."""
    def shown(c: str) -> bool:
        # A column that is zero for every object says nothing, except the headline ones.
        return any(c in v for v in counts.values()) and (
            c in ALWAYS_SHOWN or any(v.get(c, 0) for v in counts.values()))

    cols = [c for c in COUNT_COLUMNS if shown(c)]
    extra = sorted({k for v in counts.values() for k in v if k not in COUNT_COLUMNS and k not in TIMES and shown(k)})
    t = Table(title=title, title_justify="left")
    t.add_column("object", no_wrap=True)
    for c in (*cols, *extra):
        t.add_column(c, justify="right", overflow="fold")
    times = [k for k in TIMES if any(k in v for v in counts.values())]
    for k in times:
        t.add_column(TIMES[k], justify="right")
    for obj, v in counts.items():
        row = [obj] + [f"{int(v.get(c, 0)):,}" for c in (*cols, *extra)]
        row += [f"{v.get(k, 0):.1f}s" for k in times]
        t.add_row(*row)
    return t


def print_run(run: Run, rejected_rows: int) -> None:
    """One run in detail."""
    c = console()
    dur = _duration(run)
    c.print(f"run {run.id}: {run.job} [{', '.join(run.billers) or '—'}] via {run.trigger} — {_status(run.status)}")
    c.print(f"  started {run.started_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f", took {dur:.1f}s" if dur is not None else ", still running (or killed)")
            + (f", on {run.host} pid {run.pid}" if run.host else ""))
    if run.options:
        c.print("  options: " + ", ".join(f"{k}={v}" for k, v in run.options.items()))
    if run.counts:
        c.print(counts_table(run.counts, "per object"))
    if run.api_calls:
        c.print("  API calls: " + ", ".join(f"{k} {v:,}" for k, v in sorted(run.api_calls.items())))
    if rejected_rows:
        c.print(f"  {rejected_rows:,} rejected rows: sfsync rejects {run.id}")
    if run.error:
        c.print(f"  [red]error:[/red] {run.error}")
