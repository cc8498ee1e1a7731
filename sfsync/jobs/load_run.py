"""Run the load job for the configured billers: wiring, order, progress, summary."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from sfsync import log
from sfsync.errors import MappingError
from sfsync.jobs.load import Loader, LoadOptions, Planned, org_trim_date
from sfsync.jobs.memory import tune_memory
from sfsync.jobs.runner import RunContext, start_run
from sfsync.jobs.setup import connect_salesforce, load_biller_mappings, make_biller, select_billers
from sfsync.jobs.window import sweep_stale

if TYPE_CHECKING:
    import requests

    from sfsync.app import App
    from sfsync.mappers import CompiledMapping
    from sfsync.salesforce import SalesforceClient


@dataclass
class LoadReport:
    """What a load run did (the CLI prints it; the service returns it)."""

    run: RunContext
    planned: dict[str, Planned] = field(default_factory=dict)
    seconds: float = 0.0
    trim_date: date | None = None


def compile_for(client: SalesforceClient, mappings: list[Any], columns: dict[str, dict[str, str] | None]
                ) -> list[CompiledMapping]:
    """Validate every mapping against the org's describe and order them parents first."""
    from sfsync.mappers import compile_mapping, plan_order

    problems: list[str] = []
    compiled: dict[str, CompiledMapping] = {}
    for m in plan_order(mappings, client.describe):
        try:
            compiled[m.name] = compile_mapping(m, client.describe, columns=columns.get(m.source.entity or ""))
        except MappingError as exc:
            problems.extend(exc.problems)
    if problems:
        raise MappingError(f"{len(problems)} mapping problem(s):\n  " + "\n  ".join(problems), problems)
    return list(compiled.values())


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # On stderr, beside the log: stdout keeps the summary (and `--json`) clean.
    with Progress(TextColumn("{task.description:<40}"), BarColumn(bar_width=None),
                  TextColumn("{task.completed:>12,.0f} rows"), TimeElapsedColumn(), transient=False,
                  console=Console(stderr=True)) as p:
        yield p


def run_load(app: App, billers: list[str] | None = None, options: LoadOptions | None = None, *,
             session: requests.Session | None = None, trigger: str | None = None,
             progress: bool | None = None) -> LoadReport:
    """Load the selected billers (every enabled one by default) into the org.

    Raises:
        UserError: configuration or mapping problems (nothing is sent).
        LockHeld: another load of one of these billers is running.
    """
    options = options or LoadOptions()
    settings = app.settings
    tune_memory()
    sweep_stale()  # spill files of a load that was killed
    chosen = select_billers(settings, billers)
    store = app.store
    client = connect_salesforce(settings, session=session)
    logger = log.get_logger("sfsync.load")
    if options.trim_date is None and settings.load.trim_date is not None:
        configured = settings.load.trim_date
        options.trim_date = org_trim_date(client) if configured == "org" else configured

    # Everything is validated before anything is sent: a broken mapping costs no API call.
    plan: list[tuple[Any, list[CompiledMapping]]] = []
    for b in chosen:
        biller = make_biller(b, store)
        cols = {name: spec.columns for name, spec in biller.entities().items()}
        plan.append((biller, compile_for(client, load_biller_mappings(b, settings), cols)))

    opts_record = {k: v for k, v in (("full", options.full), ("dry_run", options.dry_run),
                                     ("trim_date", str(options.trim_date) if options.trim_date else None)) if v}
    started = time.monotonic()
    show = sys.stderr.isatty() if progress is None else progress
    with start_run(store, "load", [b.name for b in chosen], trigger or app.trigger, opts_record) as run, \
            _progress(show) as bar:
        tasks: dict[str, Any] = {}

        def tick(sobject: str, n: int) -> None:
            if bar is None:
                return
            if sobject not in tasks:
                tasks[sobject] = bar.add_task(sobject, total=None)
            bar.update(tasks[sobject], advance=n)

        # Only what some mapping looks up is worth remembering from the writes (not 1M line items).
        looked_up = {(lk.sobject, lk.match_field) for _, cs in plan for c in cs for lk in c.lookups}
        loader = Loader(run, store, client, options, progress=tick, remember=looked_up)
        try:
            for biller, compiled in plan:
                with biller:
                    loader.load_biller(biller, compiled)
        finally:
            run.api_calls.update(client.calls)
            run.flush(force=True)
        logger.info("load done", counts=run.plain_counts(), api_calls=dict(client.calls))
    return LoadReport(run, dict(loader.planned), time.monotonic() - started, options.trim_date)
