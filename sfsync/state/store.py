"""The state store: sfsync's memory between runs. The only module (with its siblings) that speaks SQL.

One :class:`StateStore` per process. It upgrades an empty database by itself on first use.
Record state, the bulk path of every load, is kept as columnar segments (``record_states.py``,
``segments.py``); the rest goes through SQLAlchemy Core.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from sfsync.state import models as m
from sfsync.state.record_states import RecordStates, utcnow

CHUNK = 5_000  # rows per executemany / IN (...) — well under SQLite's variable limit
RUN_STATUSES = ("running", "succeeded", "rejected", "failed", "stopped")


def _aware(dt: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes; everything stored is UTC.
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


@dataclass(frozen=True)
class Run:
    """One run of a job, as the admin sees it in ``sfsync runs``."""

    id: int
    job: str
    billers: list[str]
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    api_calls: dict[str, int]
    options: dict[str, Any]
    error: str | None
    host: str | None
    pid: int | None


@dataclass(frozen=True)
class FileEntry:
    """A biller file the store has seen."""

    name: str
    size: int
    checksum: str
    status: str
    processed_at: datetime


@dataclass(frozen=True)
class Reject:
    """A row that did not make it, with where it came from and why."""

    run_id: int
    biller: str
    sobject: str
    key: str | None
    source: str | None
    stage: str
    code: str
    message: str
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One Salesforce record's journey to a biller (export)."""

    biller: str
    sobject: str
    sf_id: str
    status: str
    payload_hash: int | None
    biller_ref: str | None
    attempts: int
    last_error: str | None
    written_back: bool
    sf_modstamp: str | None


def _engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint the WAL every 64 MB rather than every 4 MB: a bulk load rewrites the same
            # index pages batch after batch, and each checkpoint copies them into the database again.
            cur.execute("PRAGMA wal_autocheckpoint=16384")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


class StateStore(RecordStates):
    """sfsync's state: runs, record state, cursors, file manifest, export ledger, rejects, events, locks.

    Export ledger statuses (one entry per biller, sObject and Salesforce Id):
    ``pending`` (intent recorded, not yet handed over, or the biller was unreachable) →
    ``sending`` (handed to the biller; after a crash it may or may not be there — the sink is
    idempotent, so it is sent again) → ``accepted`` | ``rejected`` (the biller's answer, or a
    record that cannot be exported); ``conflict`` (changed in Salesforce after it may have
    reached the biller: for a human); ``withdrawn`` (no longer selected before it was ever sent).

    Args:
        url: SQLAlchemy URL (``sqlite:///.sfsync/state.db`` or ``postgresql://...``).
        upgrade: apply migrations on open (an empty database is created by itself).
    """

    def __init__(self, url: str, *, echo: bool = False, upgrade: bool = True) -> None:
        self.url = url
        self.engine = _engine(url, echo)
        self.dialect = self.engine.dialect.name
        self._indexes = {}
        if upgrade:
            from sfsync.state.migrate import upgrade as _upgrade

            _upgrade(self.engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, job: str, billers: Sequence[str], trigger: str = "cli",
                  options: dict[str, Any] | None = None) -> int:
        """Record the start of a run and return its id."""
        with self.engine.begin() as c:
            res = c.execute(insert(m.runs).values(
                job=job, billers=",".join(billers), trigger=trigger, status="running",
                started_at=utcnow(), counts={}, api_calls={}, options=options or {},
                host=socket.gethostname(), pid=os.getpid()))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def update_run(self, run_id: int, *, counts: dict[str, Any] | None = None,
                   api_calls: dict[str, int] | None = None) -> None:
        """Store the running totals of a run (so a crashed run still shows how far it got)."""
        values: dict[str, Any] = {}
        if counts is not None:
            values["counts"] = counts
        if api_calls is not None:
            values["api_calls"] = api_calls
        if values:
            with self.engine.begin() as c:
                c.execute(update(m.runs).where(m.runs.c.id == run_id).values(**values))

    def finish_run(self, run_id: int, status: str, *, counts: dict[str, Any] | None = None,
                   api_calls: dict[str, int] | None = None, error: str | None = None) -> None:
        """Close a run with its final status (see ``RUN_STATUSES``)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
        if counts is not None:
            values["counts"] = counts
        if api_calls is not None:
            values["api_calls"] = api_calls
        with self.engine.begin() as c:
            c.execute(update(m.runs).where(m.runs.c.id == run_id).values(**values))

    def get_run(self, run_id: int) -> Run | None:
        """One run, or None."""
        with self.engine.connect() as c:
            row = c.execute(select(m.runs).where(m.runs.c.id == run_id)).mappings().first()
        return _run(row) if row else None

    def list_runs(self, *, job: str | None = None, limit: int = 20) -> list[Run]:
        """The latest runs, newest first."""
        q = select(m.runs).order_by(m.runs.c.id.desc()).limit(limit)
        if job:
            q = q.where(m.runs.c.job == job)
        with self.engine.connect() as c:
            return [_run(r) for r in c.execute(q).mappings()]

    def _upsert(self, conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str],
                cols: list[str]) -> int:
        ins: Any = postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)
        stmt = ins.on_conflict_do_update(index_elements=keys, set_={c: ins.excluded[c] for c in cols})
        conn.execute(stmt, rows)
        return len(rows)

    # -- cursors ----------------------------------------------------------------------------
    def get_cursor(self, biller: str, stream: str) -> dict[str, Any] | None:
        """The stored cursor of one (biller, stream), or None before the first run."""
        t = m.cursors
        with self.engine.connect() as c:
            v = c.execute(select(t.c.value).where(t.c.biller == biller, t.c.stream == stream)).scalar()
        return dict(v) if v is not None else None

    def set_cursor(self, biller: str, stream: str, value: dict[str, Any], run_id: int | None = None) -> None:
        """Advance a cursor. Call only once the rows it covers are recorded."""
        with self.engine.begin() as c:
            self._upsert(c, m.cursors, [{"biller": biller, "stream": stream, "value": value,
                                         "run_id": run_id, "updated_at": utcnow()}],
                         ["biller", "stream"], ["value", "run_id", "updated_at"])

    def list_cursors(self, biller: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """All cursors, keyed by (biller, stream)."""
        t = m.cursors
        q = select(t.c.biller, t.c.stream, t.c.value)
        if biller:
            q = q.where(t.c.biller == biller)
        with self.engine.connect() as c:
            return {(b, s): dict(v) for b, s, v in c.execute(q)}

    # -- file manifest ----------------------------------------------------------------------
    def file_status(self, biller: str, name: str) -> FileEntry | None:
        """What the store knows of one biller file."""
        t = m.files
        with self.engine.connect() as c:
            r = c.execute(select(t).where(t.c.biller == biller, t.c.name == name)).mappings().first()
        if r is None:
            return None
        return FileEntry(r["name"], r["size"], r["checksum"], r["status"], _aware(r["processed_at"]))  # type: ignore[arg-type]

    def mark_file(self, biller: str, name: str, size: int, checksum: str, status: str = "processed",
                  run_id: int | None = None) -> None:
        """Record a file as processed (only once its rows are loaded)."""
        with self.engine.begin() as c:
            self._upsert(c, m.files, [{"biller": biller, "name": name, "size": size, "checksum": checksum,
                                       "status": status, "run_id": run_id, "processed_at": utcnow()}],
                         ["biller", "name"], ["size", "checksum", "status", "run_id", "processed_at"])

    # -- rejects ----------------------------------------------------------------------------
    def add_rejects(self, rejects: Iterable[Reject]) -> int:
        """Store rejected rows; return how many."""
        batch = [{"run_id": r.run_id, "biller": r.biller, "sobject": r.sobject, "key": r.key,
                  "source": r.source, "stage": r.stage, "code": r.code, "message": r.message,
                  "payload": r.payload} for r in rejects]
        if not batch:
            return 0
        with self.engine.begin() as c:
            for i in range(0, len(batch), CHUNK):
                c.execute(insert(m.rejects), batch[i:i + CHUNK])
        return len(batch)

    def list_rejects(self, run_id: int, *, limit: int | None = None) -> list[Reject]:
        """The rejected rows of one run, in the order they were recorded."""
        t = m.rejects
        q = select(t).where(t.c.run_id == run_id).order_by(t.c.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [Reject(r["run_id"], r["biller"], r["sobject"], r["key"], r["source"], r["stage"],
                           r["code"], r["message"], r["payload"]) for r in c.execute(q).mappings()]

    def count_rejects(self, run_id: int) -> int:
        """How many rows a run rejected."""
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(m.rejects)
                                 .where(m.rejects.c.run_id == run_id)).scalar_one())

    def mark_rejects_retried(self, run_id: int, retry_run_id: int) -> None:
        """Note that a later run re-sent this run's rejects."""
        with self.engine.begin() as c:
            c.execute(update(m.rejects).where(m.rejects.c.run_id == run_id).values(retried_by=retry_run_id))

    # -- export ledger ----------------------------------------------------------------------
    def ledger_get(self, biller: str, sobject: str, sf_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """Ledger entries for the given Salesforce Ids."""
        t = m.export_ledger
        ids = list(sf_ids)
        out: dict[str, LedgerEntry] = {}
        with self.engine.connect() as c:
            for i in range(0, len(ids), CHUNK):
                q = select(t).where(t.c.biller == biller, t.c.sobject == sobject, t.c.sf_id.in_(ids[i:i + CHUNK]))
                for r in c.execute(q).mappings():
                    out[r["sf_id"]] = _ledger(r)
        return out

    def ledger_list(self, *, biller: str | None = None, sobject: str | None = None,
                    statuses: Sequence[str] | None = None) -> list[LedgerEntry]:
        """Ledger entries filtered by biller, object and status."""
        t = m.export_ledger
        q = select(t).order_by(t.c.id)
        if biller:
            q = q.where(t.c.biller == biller)
        if sobject:
            q = q.where(t.c.sobject == sobject)
        if statuses:
            q = q.where(t.c.status.in_(list(statuses)))
        with self.engine.connect() as c:
            return [_ledger(r) for r in c.execute(q).mappings()]

    def ledger_intend(self, biller: str, sobject: str, entries: Iterable[tuple[str, int, str | None]],
                      run_id: int) -> list[str]:
        """Record the intent to export (sf_id, payload_hash, modstamp); return the sf_ids newly recorded.

        Existing entries are left alone: the ledger is unique per (biller, sObject, Id), which is
        what makes an export exactly-once across crashes.
        """
        t = m.export_ledger
        now = utcnow()
        rows: list[dict[str, Any]] = [{"biller": biller, "sobject": sobject, "sf_id": sid, "status": "pending", "payload_hash": h,
                 "sf_modstamp": ms, "attempts": 0, "written_back": False, "run_id": run_id,
                 "created_at": now, "updated_at": now} for sid, h, ms in entries]
        if not rows:
            return []
        existing = set(self.ledger_get(biller, sobject, [str(r["sf_id"]) for r in rows]))
        new = [r for r in rows if r["sf_id"] not in existing]
        if new:
            ins: Any = postgresql.insert(t) if self.dialect == "postgresql" else sqlite.insert(t)
            with self.engine.begin() as c:
                for i in range(0, len(new), CHUNK):
                    c.execute(ins.on_conflict_do_nothing(index_elements=["biller", "sobject", "sf_id"]),
                              new[i:i + CHUNK])
        return [str(r["sf_id"]) for r in new]

    def ledger_update(self, biller: str, sobject: str, sf_id: str, **values: Any) -> None:
        """Set fields of one ledger entry (status, biller_ref, last_error, written_back, attempts...)."""
        self.ledger_update_many(biller, sobject, [(sf_id, values)])

    def ledger_update_many(self, biller: str, sobject: str,
                           updates: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Set fields of several ledger entries in one transaction."""
        t = m.export_ledger
        now = utcnow()
        with self.engine.begin() as c:
            for sf_id, values in updates:
                vals = dict(values)
                if vals.pop("attempt", False):
                    vals["attempts"] = t.c.attempts + 1
                c.execute(update(t).where(t.c.biller == biller, t.c.sobject == sobject, t.c.sf_id == sf_id)
                          .values(updated_at=now, **vals))

    def ledger_mark(self, biller: str, sobject: str, rows: Iterable[dict[str, Any]], *,
                    attempt: bool = False) -> int:
        """Set fields of many ledger entries fast (one ``executemany`` per set of keys).

        Args:
            biller: the biller.
            sobject: the object.
            rows: one dict per entry: ``sf_id`` plus the fields to set (``status``,
                ``biller_ref``, ``last_error``, ``written_back``, ``payload_hash``, ``run_id``).
            attempt: add one to ``attempts`` of every entry (it is being handed to the biller).

        Returns:
            How many rows were given.
        """
        t = m.export_ledger
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(sorted(k for k in r if k != "sf_id")), []).append(r)
        now, n = utcnow(), 0
        with self.engine.begin() as c:
            for keys, group in groups.items():
                # Bind names must differ from column names in an UPDATE ... WHERE col = :bind.
                values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in keys}
                if attempt:
                    values["attempts"] = t.c.attempts + 1
                stmt = (update(t).where(t.c.biller == biller, t.c.sobject == sobject,
                                        t.c.sf_id == bindparam("v_sf_id")).values(updated_at=now, **values))
                params = [{f"v_{k}": v for k, v in r.items()} for r in group]
                for i in range(0, len(params), CHUNK):
                    c.execute(stmt, params[i:i + CHUNK])
                n += len(group)
        return n

    def ledger_unwritten(self, billers: Sequence[str], sobject: str) -> list[LedgerEntry]:
        """Settled entries (accepted or rejected) whose outcome is not yet written back to Salesforce."""
        t = m.export_ledger
        q = (select(t).where(t.c.sobject == sobject, t.c.biller.in_(list(billers)),
                             t.c.status.in_(["accepted", "rejected"]), t.c.written_back.is_(False))
             .order_by(t.c.id))
        with self.engine.connect() as c:
            return [_ledger(r) for r in c.execute(q).mappings()]

    # -- inbound events ---------------------------------------------------------------------
    def record_event(self, event_id: str, source: str, account: str | None = None,
                     run_id: int | None = None) -> bool:
        """Record an inbound event; False when it was already seen (a duplicate delivery)."""
        try:
            with self.engine.begin() as c:
                c.execute(insert(m.inbound_events).values(event_id=event_id, source=source, account=account,
                                                          run_id=run_id, received_at=utcnow()))
            return True
        except IntegrityError:
            return False

    def set_event_run(self, event_id: str, run_id: int) -> None:
        """Link an inbound event to the run it triggered."""
        with self.engine.begin() as c:
            c.execute(update(m.inbound_events).where(m.inbound_events.c.event_id == event_id)
                      .values(run_id=run_id))

    # -- maintenance ------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        """Row counts per table (for ``sfsync db status``)."""
        with self.engine.connect() as c:
            counts = {t.name: int(c.execute(select(func.count()).select_from(t)).scalar_one())
                      for t in m.metadata.sorted_tables}
        counts["record_state"] = self.count_states()  # states, resolved across segments
        return counts


def _run(r: Any) -> Run:
    return Run(r["id"], r["job"], [b for b in (r["billers"] or "").split(",") if b], r["trigger"], r["status"],
               _aware(r["started_at"]), _aware(r["finished_at"]), r["counts"] or {}, r["api_calls"] or {},  # type: ignore[arg-type]
               r["options"] or {}, r["error"], r["host"], r["pid"])


def _ledger(r: Any) -> LedgerEntry:
    return LedgerEntry(r["biller"], r["sobject"], r["sf_id"], r["status"], r["payload_hash"], r["biller_ref"],
                       r["attempts"], r["last_error"], bool(r["written_back"]), r["sf_modstamp"])
