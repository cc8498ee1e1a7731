"""The export job's core: each pulled record to its biller exactly once, the outcome written back.

For one chunk of pulled records of one object (see :mod:`export_pull` for the pull and
:mod:`export_route` for routing):

1. route each record to a biller and pick that biller's mapping for it;
2. map; hash what the mapping reads (the payload's source, minus fields that move on their
   own, such as SystemModstamp or our write-back fields);
3. compare with the export ledger: new → intent recorded (``pending``); already accepted with
   the same hash → nothing to do (our own write-back moved SystemModstamp); accepted with
   another hash → ``conflict`` for a human, never re-sent; rejected and since edited → tried again;
4. mark the batch ``sending``, hand it to the biller (idempotent per Salesforce Id), record the
   outcome (``accepted`` / ``rejected`` / still ``pending`` when the biller was unreachable);
5. advance the object's cursor to the chunk's last ``(SystemModstamp, Id)``.

Write-back (:meth:`Exporter.write_back`) is driven by the ledger alone: every settled entry not
yet written back, whichever run settled it, so a crash between the biller's accept and the
write-back is completed by the next run.

``SFSYNC_CRASH_AT=<step>`` is a test hook (see :func:`crash_point`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sfsync import log
from sfsync.errors import TransientError
from sfsync.jobs.diff import payload_hash
from sfsync.jobs.export_pull import Cursor, chunk_cursor
from sfsync.jobs.export_route import UNROUTED, Router, Target, choose_targets
from sfsync.jobs.export_writeback import write_back

if TYPE_CHECKING:
    from sfsync.billers import Biller, ExportResult
    from sfsync.config import ExportObjectSettings, ExportSettings
    from sfsync.jobs.runner import RunContext
    from sfsync.salesforce import SalesforceClient
    from sfsync.state import LedgerEntry, StateStore

CRASH_ENV = "SFSYNC_CRASH_AT"
CRASH_STEPS = ("export.after_pull", "export.after_accept", "export.after_ledger", "export.after_writeback")
UNSETTLED = ("pending", "sending")


def crash_point(step: str) -> None:
    """Test hook: die like ``kill -9`` when ``SFSYNC_CRASH_AT`` names this step (exit status 137)."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(137)


@dataclass
class ExportOptions:
    """Options of one export run."""

    dry_run: bool = False


@dataclass
class Planned:
    """What a dry run would export for one (biller, stream)."""

    count: int = 0
    sample: list[str] = field(default_factory=list)


@dataclass
class _Rows:
    """The rows of one target in a chunk, classified against the ledger."""

    send: list[int] = field(default_factory=list)
    new: list[int] = field(default_factory=list)
    rehash: list[int] = field(default_factory=list)
    conflicts: list[tuple[int, str]] = field(default_factory=list)
    already: int = 0
    already_rejected: int = 0


class Exporter:
    """Runs the export of pulled chunks for one run.

    Args:
        run: the run context (counts, rejects).
        store: the state store (ledger, cursors).
        client: the Salesforce client (write-back).
        settings: the ``export`` settings.
        billers: the selected billers by name (each supports export).
        options: dry run or not.
    """

    def __init__(self, run: RunContext, store: StateStore, client: SalesforceClient, settings: ExportSettings,
                 billers: dict[str, Biller], options: ExportOptions) -> None:
        self.run = run
        self.store = store
        self.client = client
        self.settings = settings
        self.billers = billers
        self.options = options
        self.planned: dict[tuple[str, str], Planned] = defaultdict(Planned)
        self.logger = log.get_logger("sfsync.export")
        self._seen: dict[str, set[str]] = defaultdict(set)

    # -- one chunk ----------------------------------------------------------------------------
    def process(self, sobject: str, frame: pd.DataFrame, router: Router, targets: list[Target],
                obj: ExportObjectSettings, *, cursor_key: str | None) -> None:
        """Export one chunk of pulled records; advance the cursor when ``cursor_key`` is given."""
        crash_point("export.after_pull")
        seen = self._seen[sobject]
        fresh = ~frame["Id"].isin(seen).to_numpy()
        chunk_end = chunk_cursor(frame)
        frame = frame[fresh].reset_index(drop=True)
        seen.update(frame["Id"].tolist())
        self.run.count(sobject, pulled=len(frame))
        if len(frame):
            # Records a biller sent us (disputes loaded as Cases) are not sent back to billers:
            # only what was entered in Salesforce is exported.
            loaded = self.store.owners(sobject, frame["Id"].tolist())
            if loaded:
                from_biller = frame["Id"].isin(list(loaded)).to_numpy()
                self.run.count(sobject, from_biller=int(from_biller.sum()))
                frame = frame[~from_biller].reset_index(drop=True)
        if len(frame):
            billers, reasons = router.route(frame)
            bad = np.array([r is not None for r in reasons], dtype=bool)
            if bad.any():
                self._unroutable(sobject, frame[bad].reset_index(drop=True), [r for r in reasons if r], obj)
            for name in sorted({b for b in billers[~bad] if b is not None}):
                sub = frame[billers == name].reset_index(drop=True)
                if name not in self.billers:
                    self.run.count(sobject, other_biller=len(sub))
                    continue
                mine = [t for t in targets if t.biller == name]
                if not mine:
                    self._settle_bad(name, sobject, sub, self._hashes(sub, None, obj), ["NO_EXPORT_MAPPING"] * len(sub),
                                     [f"biller {name!r} has no export mapping for {sobject}"] * len(sub), "route")
                    continue
                which = choose_targets(sub, mine)
                if (which < 0).any():
                    self._unselected(name, sobject, sub[which < 0].reset_index(drop=True))
                for i, t in enumerate(mine):
                    if (which == i).any():
                        self._export_target(t, sobject, sub[which == i].reset_index(drop=True), obj)
        if cursor_key and not self.options.dry_run and chunk_end.ts is not None:
            for name in self.billers:
                current = Cursor.from_dict(self.store.get_cursor(name, cursor_key))
                if chunk_end.after(current):
                    self.store.set_cursor(name, cursor_key, chunk_end.to_dict(), self.run.run_id)
        self.run.flush()

    def _hashes(self, frame: pd.DataFrame, target: Target | None, obj: ExportObjectSettings) -> np.ndarray:
        if target is not None:
            cols = target.hash_fields
        else:
            skip = {f.lower() for f in (*obj.on_success, *obj.on_reject)}
            from sfsync.jobs.export_pull import VOLATILE_FIELDS

            cols = [c for c in frame.columns if c != "Id" and c.lower() not in VOLATILE_FIELDS | skip]
        return payload_hash(frame, cols)

    def _unroutable(self, sobject: str, frame: pd.DataFrame, reasons: list[str], obj: ExportObjectSettings) -> None:
        self._settle_bad(UNROUTED, sobject, frame, self._hashes(frame, None, obj), ["NO_BILLER"] * len(frame),
                         reasons, "route")

    def _unselected(self, biller: str, sobject: str, frame: pd.DataFrame) -> None:
        """Rows no mapping of their biller selects: skipped, unless their export was left unconfirmed."""
        self.run.count(sobject, not_selected=len(frame))
        entries = self.store.ledger_get(biller, sobject, frame["Id"].tolist())
        self.settle_vanished(biller, sobject, [e for e in entries.values() if e.status in UNSETTLED])

    def settle_vanished(self, biller: str, sobject: str, entries: list[LedgerEntry]) -> None:
        """Unconfirmed entries whose record is no longer selected (status changed, deleted).

        Never handed over → ``withdrawn``. Possibly at the biller (a crash, a timeout) →
        ``conflict``: a human checks the biller.
        """
        if not entries or self.options.dry_run:
            return
        withdrawn = [e for e in entries if e.status == "pending" and e.attempts == 0]
        doubtful = [e for e in entries if not (e.status == "pending" and e.attempts == 0)]
        self.store.ledger_mark(biller, sobject, [{"sf_id": e.sf_id, "status": "withdrawn"} for e in withdrawn])
        msg = (f"no longer selected for export while its export to {biller} was unconfirmed; "
               f"check whether {biller} has it")
        self.store.ledger_mark(biller, sobject, [{"sf_id": e.sf_id, "status": "conflict", "last_error": msg}
                                                 for e in doubtful])
        self.run.reject([self.run.new_reject(biller, sobject, e.sf_id, e.sf_id, "export", "UNCONFIRMED_WITHDRAWN", msg)
                         for e in doubtful])
        self.run.count(sobject, withdrawn=len(withdrawn), conflicts=len(doubtful))

    # -- rows that cannot be exported ---------------------------------------------------------
    def _settle_bad(self, biller: str, sobject: str, frame: pd.DataFrame, hashes: np.ndarray, codes: list[str],
                    messages: list[str], stage: str) -> None:
        """Reject records that cannot be exported; once per unchanged record (the ledger remembers)."""
        ids = frame["Id"].tolist()
        entries = self.store.ledger_get(biller, sobject, ids)
        todo = [i for i, sid in enumerate(ids)
                if (e := entries.get(sid)) is None or e.status not in ("rejected", "withdrawn", "accepted", "conflict")
                or (e.status in ("rejected", "withdrawn") and e.payload_hash != int(hashes[i]))]
        known = len(ids) - len(todo)
        self.run.count(sobject, already_rejected=known)
        if not todo:
            return
        self.run.count(sobject, rejected=len(todo))
        self.run.reject([self.run.new_reject(biller, sobject, ids[i], ids[i], stage, codes[i], messages[i])
                         for i in todo])
        if self.options.dry_run:
            return
        stamps = frame["SystemModstamp"].tolist()
        self.store.ledger_intend(biller, sobject, [(ids[i], int(hashes[i]), stamps[i]) for i in todo
                                                   if ids[i] not in entries], self.run.run_id)
        self.store.ledger_mark(biller, sobject, [
            {"sf_id": ids[i], "status": "rejected", "last_error": messages[i], "payload_hash": int(hashes[i]),
             "written_back": False, "run_id": self.run.run_id} for i in todo])

    # -- the main path ------------------------------------------------------------------------
    def _export_target(self, t: Target, sobject: str, frame: pd.DataFrame, obj: ExportObjectSettings) -> None:
        hashes = self._hashes(frame, t, obj)
        table = pa.Table.from_pandas(frame.assign(_source=frame["Id"]), preserve_index=False)
        mapped = t.compiled.apply(table, biller=t.biller)
        ids = frame["Id"].tolist()
        pos = {sid: i for i, sid in enumerate(ids)}
        bad = {str(s): (str(c), str(m)) for s, c, m in zip(mapped.rejects["_source"], mapped.rejects["code"],
                                                            mapped.rejects["message"], strict=True)}
        rows = self._classify(t, sobject, ids, hashes, set(bad))
        if bad:
            where = [pos[s] for s in bad if s in pos]
            self._settle_bad(t.biller, sobject, frame.iloc[where].reset_index(drop=True), hashes[where],
                             [bad[ids[i]][0] for i in where], [bad[ids[i]][1] for i in where], "map")
        self.run.count(sobject, already_exported=rows.already, already_rejected=rows.already_rejected)
        if rows.conflicts:
            self._conflicts(t.biller, sobject, [(ids[i], m) for i, m in rows.conflicts])
        if not rows.send:
            return
        if self.options.dry_run:
            p = self.planned[(t.biller, t.stream)]
            p.count += len(rows.send)
            p.sample.extend(ids[i] for i in rows.send[: max(0, 20 - len(p.sample))])
            self.run.count(sobject, would_export=len(rows.send))
            return
        stamps = frame["SystemModstamp"].tolist()
        self.store.ledger_intend(t.biller, sobject, [(ids[i], int(hashes[i]), stamps[i]) for i in rows.new],
                                 self.run.run_id)
        if rows.rehash:
            self.store.ledger_mark(t.biller, sobject, [
                {"sf_id": ids[i], "status": "pending", "payload_hash": int(hashes[i]), "written_back": False,
                 "last_error": None, "sf_modstamp": stamps[i]} for i in rows.rehash])
        self._send(t, sobject, mapped, [ids[i] for i in rows.send])

    def _classify(self, t: Target, sobject: str, ids: list[str], hashes: np.ndarray, bad: set[str]) -> _Rows:
        entries = self.store.ledger_get(t.biller, sobject, ids)
        out = _Rows()
        for i, sid in enumerate(ids):
            h, e = int(hashes[i]), entries.get(sid)
            if sid in bad and (e is None or e.status not in ("accepted", "conflict")):
                continue  # settled (and counted) as a reject by the caller
            if e is None:
                out.new.append(i)
                out.send.append(i)
            elif e.status == "accepted":
                if e.payload_hash == h:
                    out.already += 1
                else:
                    out.conflicts.append((i, f"changed in Salesforce after {t.biller} accepted it "
                                             f"(reference {e.biller_ref}); not sent again"))
            elif e.status == "conflict":
                out.already += 1  # reported when it arose; a human settles it
            elif e.status in ("rejected", "withdrawn"):
                if e.payload_hash == h:
                    out.already_rejected += 1
                else:
                    out.rehash.append(i)
                    out.send.append(i)
            elif e.payload_hash == h or e.attempts == 0:  # pending / sending
                if e.payload_hash != h:
                    out.rehash.append(i)
                out.send.append(i)
            else:
                out.conflicts.append((i, f"changed in Salesforce while its export to {t.biller} was unconfirmed; "
                                         f"check whether {t.biller} has it; not sent again"))
        return out

    def _conflicts(self, biller: str, sobject: str, items: list[tuple[str, str]]) -> None:
        self.run.count(sobject, conflicts=len(items))
        self.run.reject([self.run.new_reject(biller, sobject, sid, sid, "export", "CHANGED_AFTER_EXPORT", msg)
                         for sid, msg in items])
        if not self.options.dry_run:
            self.store.ledger_mark(biller, sobject, [{"sf_id": sid, "status": "conflict", "last_error": msg}
                                                     for sid, msg in items])

    def _send(self, t: Target, sobject: str, mapped: Any, send_ids: list[str]) -> None:
        """Hand the records to the biller in batches; record each batch's outcome before the next."""
        rows = mapped.rows
        wanted = pa.array(send_ids, pa.string())
        import pyarrow.compute as pc

        rows = rows.filter(pc.is_in(rows.column("_source"), value_set=wanted))
        records = _records(mapped, rows, t.fmt)
        sids = rows.column("_source").to_pylist()
        biller = self.billers[t.biller]
        step = max(1, self.settings.send_rows)
        for start in range(0, len(records), step):
            batch_ids = sids[start:start + step]
            batch = [{"sf_id": sid, **rec} for sid, rec in zip(batch_ids, records[start:start + step], strict=True)]
            self.store.ledger_mark(t.biller, sobject, [{"sf_id": s, "status": "sending"} for s in batch_ids],
                                   attempt=True)
            try:
                results = biller.export(t.stream, batch)  # type: ignore[attr-defined]
            except TransientError as exc:
                results = [_transient(s, str(exc)) for s in batch_ids]
            crash_point("export.after_accept")
            self._record(t, sobject, batch_ids, results)
            crash_point("export.after_ledger")

    def _record(self, t: Target, sobject: str, batch_ids: list[str], results: list[ExportResult]) -> None:
        by_id = {r.sf_id: r for r in results}
        marks: list[dict[str, Any]] = []
        refused: list[tuple[str, str]] = []
        ok = pending = 0
        for sid in batch_ids:
            r = by_id.get(sid)
            if r is None:  # a biller that answered fewer records: nothing known, keep it pending
                marks.append({"sf_id": sid, "status": "pending", "last_error": "no answer from the biller"})
                pending += 1
            elif r.ok:
                marks.append({"sf_id": sid, "status": "accepted", "biller_ref": r.reference, "last_error": None,
                              "written_back": False, "run_id": self.run.run_id})
                ok += 1
            elif r.transient:
                marks.append({"sf_id": sid, "status": "pending", "last_error": r.error})
                pending += 1
            else:
                marks.append({"sf_id": sid, "status": "rejected", "last_error": r.error or "refused",
                              "written_back": False, "run_id": self.run.run_id})
                refused.append((sid, r.error or "refused"))
        self.store.ledger_mark(t.biller, sobject, marks)
        if refused:
            self.run.reject([self.run.new_reject(t.biller, sobject, sid, sid, "biller", "BILLER_REFUSED", msg)
                             for sid, msg in refused])
        if pending:
            self.logger.warning("biller did not confirm records; they stay pending for the next run",
                                biller=t.biller, stream=t.stream, records=pending)
        self.run.count(sobject, exported=ok, rejected_by_biller=len(refused), send_failed=pending)

    # -- after the pull -----------------------------------------------------------------------
    def write_back(self, sobject: str, obj: ExportObjectSettings) -> None:
        """Write every settled, not yet written-back outcome of ``sobject`` to Salesforce."""
        if self.options.dry_run:
            return
        write_back(self, sobject, obj)

    def count_pending(self, sobject: str) -> None:
        """How many records of ``sobject`` still wait for their biller (summary)."""
        n = sum(len(self.store.ledger_list(biller=b, sobject=sobject, statuses=UNSETTLED)) for b in self.billers)
        self.run.count(sobject, pending=n)


def _transient(sf_id: str, error: str) -> ExportResult:
    from sfsync.billers import ExportResult

    return ExportResult(sf_id, False, None, error, transient=True)


def _records(mapped: Any, rows: pa.Table, fmt: str) -> list[dict[str, Any]]:
    """Biller records: nested and typed for JSON bodies; flat exact text for CSV rows."""
    from dataclasses import replace

    if fmt == "json":
        return list(replace(mapped, rows=rows).to_records())
    fields = [c for c in rows.column_names if not c.startswith("_")]
    return [{k: v for k, v in r.items() if v is not None} for r in rows.select(fields).to_pylist()]
