"""Run the export job: wiring, planning (one pull per object), the run, the summary.

Everything is validated before anything is pulled or sent: the export mappings against the
org's describe, their ``source.where`` against what the export can evaluate, the write-back
fields against the describe. One query per object serves every biller and mapping (the
mappings' conditions are OR-ed in the query and told apart in memory), so a run with nothing
new costs one API call per exported object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfsync import log
from sfsync.config import ExportObjectSettings
from sfsync.errors import ConfigError, MappingError, UserError
from sfsync.jobs.export import Exporter, ExportOptions, Planned
from sfsync.jobs.export_filter import Condition, FilterUnsupported
from sfsync.jobs.export_pull import (
    IDS_PER_QUERY,
    MODSTAMP,
    VOLATILE_FIELDS,
    Cursor,
    build_query,
    oldest,
    pull_frames,
    rechunk,
    since_for,
)
from sfsync.jobs.export_route import STREAM_OF_ENTITY, Router, Target
from sfsync.jobs.export_writeback import check_fields
from sfsync.jobs.runner import RunContext, start_run
from sfsync.jobs.setup import connect_salesforce, make_biller, mapping_files, select_billers

if TYPE_CHECKING:
    import requests

    from sfsync.app import App
    from sfsync.billers import Biller
    from sfsync.config import Settings
    from sfsync.mappers import Mapping
    from sfsync.salesforce import SalesforceClient


@dataclass
class ExportReport:
    """What an export run did (the CLI prints it)."""

    run: RunContext
    planned: dict[tuple[str, str], Planned] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ObjectPlan:
    """One pull: an object, its fields and conditions, the targets and the router."""

    sobject: str
    settings: ExportObjectSettings
    targets: list[Target]
    router: Router
    fields: list[str]
    conditions: list[str]

    @property
    def cursor_key(self) -> str:
        """The cursor's stream name in the state store."""
        return f"export:{self.sobject}"


def export_mappings(settings: Settings) -> dict[str, list[Mapping]]:
    """Every enabled biller's export mappings (routing needs to know who exports what)."""
    from sfsync.billers import BILLER_KINDS
    from sfsync.mappers import load_mappings

    out: dict[str, list[Mapping]] = {}
    for b in settings.billers:
        kind = BILLER_KINDS.get(b.kind)
        if not b.enabled or kind is None or not hasattr(kind, "export") or not b.mappings:
            continue
        found = [m for m in load_mappings(mapping_files(b, settings)) if m.direction == "export"]
        if found:
            out[b.name] = found
    return out


def plan_objects(settings: Settings, client: SalesforceClient, chosen: list[str], store: Any,
                 mappings: dict[str, list[Mapping]]) -> list[ObjectPlan]:
    """Compile the chosen billers' export mappings and group them into one pull per object.

    Raises:
        MappingError: a mapping is invalid against the org, or its condition cannot be evaluated.
        ConfigError: a write-back field is unknown or read-only.
    """
    from sfsync.mappers import compile_mapping

    cfg = settings.export
    problems: list[str] = []
    by_object: dict[str, list[Target]] = {}
    exporters: dict[str, list[str]] = {}
    for name, maps in mappings.items():
        for m in maps:
            sobject = m.source.sobject or ""
            obj = cfg.objects.get(sobject, ExportObjectSettings())
            if not obj.enabled:
                continue
            exporters.setdefault(sobject, [])
            if name not in exporters[sobject]:
                exporters[sobject].append(name)
            if name not in chosen:
                continue
            stream = STREAM_OF_ENTITY.get(m.target.entity or "")
            if stream is None:
                problems.append(m.problem(("target", "entity"), f"unknown export entity {m.target.entity!r}; "
                                          f"expected one of {', '.join(sorted(STREAM_OF_ENTITY))}"))
                continue
            try:
                cond = Condition(m.source.where) if m.source.where else None
            except FilterUnsupported as exc:
                problems.append(m.problem(("source", "where"), f"the export cannot evaluate this condition ({exc}); "
                                          "use =, !=, <, >, IN, NOT IN, LIKE, AND, OR, NOT"))
                continue
            try:
                compiled = compile_mapping(m, client.describe)
            except MappingError as exc:
                problems.extend(exc.problems)
                continue
            skip = {f.lower() for f in (*obj.on_success, *obj.on_reject)} | VOLATILE_FIELDS | {"id"}
            hash_fields = [f for f in (m.source.fields or []) if f.lower() not in skip]
            by_object.setdefault(sobject, []).append(Target(name, compiled, stream, cond, hash_fields))
    if problems:
        raise MappingError(f"{len(problems)} export mapping problem(s):\n  " + "\n  ".join(problems), problems)
    plans = []
    for sobject, targets in by_object.items():
        obj = cfg.objects.get(sobject, ExportObjectSettings())
        bad = check_fields(client, sobject, obj)
        if bad:
            raise ConfigError("; ".join(bad), file=str(settings.source or ""))
        router = Router(store, {b.name for b in settings.billers}, exporters.get(sobject, []), cfg.default_biller,
                        obj.account_field, obj.statement_field, obj.route_field)
        fields = ["Id", MODSTAMP, *router.fields]
        for t in targets:
            fields += [*(t.compiled.mapping.source.fields or []), *(t.condition.fields if t.condition else [])]
        conds = [obj.where or ""]
        wheres = [t.compiled.mapping.source.where for t in targets]
        if all(wheres):
            conds.append(" OR ".join(f"({w})" for w in dict.fromkeys(wheres)))
        plans.append(ObjectPlan(sobject, obj, targets, router, _unique(fields), conds))
    return plans


def _unique(fields: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for f in fields:
        seen.setdefault(f.lower(), f)
    return list(seen.values())


def export_object(exporter: Exporter, client: SalesforceClient, plan: ObjectPlan, overlap: int) -> None:
    """Pull one object (unconfirmed records by Id, then what changed since the cursor), export, write back."""
    cfg, store = exporter.settings, exporter.store
    unsettled = {b: store.ledger_list(biller=b, sobject=plan.sobject, statuses=("pending", "sending"))
                 for b in exporter.billers}
    ids = sorted({e.sf_id for es in unsettled.values() for e in es})
    found: set[str] = set()
    for i in range(0, len(ids), IDS_PER_QUERY):
        soql = build_query(plan.sobject, plan.fields, [plan.conditions[0]], ids=ids[i:i + IDS_PER_QUERY])
        for frame in pull_frames(client, soql, plan.fields, api="rest", page_rows=cfg.page_rows):
            found.update(frame["Id"])
            exporter.process(plan.sobject, frame, plan.router, plan.targets, plan.settings, cursor_key=None)
    for b, es in unsettled.items():
        exporter.settle_vanished(b, plan.sobject, [e for e in es if e.sf_id not in found])
    cursor = oldest(Cursor.from_dict(store.get_cursor(b, plan.cursor_key)) for b in exporter.billers)
    soql = build_query(plan.sobject, plan.fields, plan.conditions, since=since_for(cursor, overlap))
    frames = pull_frames(client, soql, plan.fields, api=cfg.query_api, page_rows=cfg.page_rows)
    for chunk in rechunk(frames, cfg.chunk_rows):
        exporter.process(plan.sobject, chunk, plan.router, plan.targets, plan.settings, cursor_key=plan.cursor_key)
    exporter.write_back(plan.sobject, plan.settings)
    exporter.count_pending(plan.sobject)


def run_export(app: App, billers: list[str] | None = None, options: ExportOptions | None = None, *,
               session: requests.Session | None = None, trigger: str | None = None) -> ExportReport:
    """Export the selected billers' records (every enabled biller able to export by default).

    Raises:
        UserError: configuration or mapping problems (nothing is pulled or sent).
        LockHeld: another export for one of these billers is running.
    """
    options = options or ExportOptions()
    settings = app.settings
    mappings = export_mappings(settings)
    if billers:
        select_billers(settings, billers)  # unknown names: a ConfigError naming the configured ones
        missing = [b for b in billers if b not in mappings]
        if missing:
            raise UserError(f"biller(s) {', '.join(missing)} have no export mappings (direction: export) "
                            "or cannot receive exports")
        chosen = list(billers)
    else:
        chosen = [b.name for b in select_billers(settings, None) if b.name in mappings]
    if not chosen:
        raise UserError("no enabled biller has export mappings (direction: export) in its mappings")
    store = app.store
    client = connect_salesforce(settings, session=session)
    plans = plan_objects(settings, client, chosen, store, mappings)
    instances: dict[str, Biller] = {b.name: make_biller(b, store) for b in settings.billers if b.name in chosen}
    logger = log.get_logger("sfsync.export")
    started = time.monotonic()
    record = {"dry_run": True} if options.dry_run else {}
    try:
        with start_run(store, "export", chosen, trigger or app.trigger, record) as run:
            exporter = Exporter(run, store, client, settings.export, instances, options)
            try:
                for plan in plans:
                    export_object(exporter, client, plan, settings.export.overlap_seconds)
            finally:
                run.api_calls.update(client.calls)
                run.flush(force=True)
            logger.info("export done", counts=run.plain_counts(), api_calls=dict(client.calls))
    finally:
        for b in instances.values():
            b.close()
    return ExportReport(run, dict(exporter.planned), time.monotonic() - started)
