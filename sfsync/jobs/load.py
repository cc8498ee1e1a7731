"""``sfsync load``: extract → map → diff → send → record, per biller, mappings in dependency order.

For every batch a biller yields:

1. rows the biller could not read become rejects (``stage=read``);
2. the compiled mapping maps the batch; its rejects are stored (``stage=map``);
3. children of parents rejected earlier in this run are rejected (``PARENT_REJECTED``), not
   sent to fail again;
4. each row's payload is hashed and compared with the state store: unchanged rows stop here
   (batches wait in a window, up to 250,000 rows, for one scan of the store: ``window.py``;
   a first load of an external-ID object has nothing to compare with and streams through);
5. lookups sfsync resolves itself are resolved (only for rows that will be sent);
6. composite-key objects are matched (state store, then SOQL) → update by Id or insert;
   external-ID objects are upserted (``write.py``);
7. per-row results are recorded (Id + hash on success, a reject with Salesforce's code and
   message otherwise), and only then is the biller's checkpoint committed.

A crash at any point leaves the biller's cursor behind the rows not yet recorded: the same
command again re-reads them, finds the ones that made it unchanged (or matches them by key)
and sends the rest. Nothing is lost and nothing is duplicated. ``SFSYNC_CRASH_AT`` rehearses it
(tests): ``load.after_send``, ``load.mid_file`` and ``load.after_record``, each also suffixed
with ``.<sObject>``, die like ``kill -9`` there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sfsync import log
from sfsync.errors import BudgetExhausted
from sfsync.jobs.diff import diff, payload_hash
from sfsync.jobs.export import crash_point
from sfsync.jobs.memory import STREAM_TRIM_FREE, give_back_memory, peak_rss_mb
from sfsync.jobs.resolve import LookupResolver
from sfsync.jobs.runner import RunContext
from sfsync.jobs.window import Item, Window, repeated, window_full
from sfsync.jobs.write import BULK_JOB_FAILED, Writer
from sfsync.mappers.batch import empty_rejects
from sfsync.salesforce.transport import ApiError
from sfsync.state import Reject
from sfsync.state.segments import Probe

if TYPE_CHECKING:
    from sfsync.billers import Batch, Biller
    from sfsync.mappers import CompiledMapping, MappedBatch
    from sfsync.salesforce import SalesforceClient
    from sfsync.state import StateStore

PARENT_REJECTED = "PARENT_REJECTED"
#: Rejects that are no verdict on the row: the next run sends it again, so its file (or cursor) is
#: not committed. Validation errors are final until the data or the mapping changes.
SEND_AGAIN = frozenset({"UNABLE_TO_LOCK_ROW", "UNPROCESSED", "RESULT_MISSING", BULK_JOB_FAILED, PARENT_REJECTED})


@dataclass
class LoadOptions:
    """What the admin asked for."""

    full: bool = False  # resend rows even when unchanged
    dry_run: bool = False  # read, map, diff; no write call, no state change
    reread: bool = False  # ignore the biller's manifest/cursors (retry uses it)
    only_keys: dict[str, set[str]] | None = None  # sObject → keys to consider (retry)
    trim_date: date | None = None


@dataclass
class Planned:
    """What a dry run found for one object."""

    create: int = 0
    update: int = 0
    unchanged: int = 0
    rejected: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)


ProgressFn = Callable[[str, int], None]


class Loader:
    """Loads one biller's mappings into the org, recording everything in the state store.

    Args:
        run: the run being recorded.
        store: the state store.
        client: the Salesforce client (None only for a dry run without org access is not
            supported: lookups and diffs need the org's describe).
        options: the admin's options.
        progress: called with (sObject, rows done) as batches finish.
        remember: the (sObject, field) pairs mappings look up: the Ids the run writes for them
            are kept for those lookups (None: every single-key object's, e.g. in tests).
    """

    def __init__(self, run: RunContext, store: StateStore, client: SalesforceClient, options: LoadOptions,
                 progress: ProgressFn | None = None, remember: set[tuple[str, str]] | None = None) -> None:
        self.run = run
        self.store = store
        self.client = client
        self.options = options
        self.progress = progress
        self.resolver = LookupResolver(client)
        self.remember = remember
        self.rejected_keys: dict[str, set[str]] = defaultdict(set)
        self.planned: dict[str, Planned] = defaultdict(Planned)
        self.logger = log.get_logger("sfsync.load")
        self.writer = Writer(client, run, self.logger)
        self._source: str | None = None  # the file (or stream) of the batch in hand
        self._send_again: set[str | None] = set()  # sources with rows the next run must send again
        self._fresh: set[str] = set()  # external-ID objects with no stored state when their mapping began
        self._cpu: dict[str, float] = defaultdict(float)  # CPU seconds by stage, for the mapping in hand

    # -- one biller ----------------------------------------------------------------------------
    def load_biller(self, biller: Biller, mappings: list[CompiledMapping]) -> None:
        """Every mapping of one biller, in the order given (parents first)."""
        for compiled in mappings:
            started, cpu = time.monotonic(), time.process_time()
            if compiled.external_id and not self.store.has_states(biller.name, compiled.sobject):
                self._fresh.add(compiled.sobject)
            else:
                self._fresh.discard(compiled.sobject)
            self.logger.info("mapping started", biller=biller.name, mapping=compiled.name, sobject=compiled.sobject)
            deferred: list[MappedBatch] = []
            self._cpu = defaultdict(float)
            # A first load of an external-ID object has nothing to compare with: batches stream
            # straight through. Otherwise they wait in a window for one scan of the store.
            window = None if compiled.sobject in self._fresh else Window(with_ids=not compiled.external_id)
            try:
                for batch in self._timed_read(biller.read(compiled.mapping.source.entity or "", full=self.options.reread)):
                    prepared = self._prepare(biller.name, compiled, batch)
                    item = Item(batch.source, batch.checkpoint, batch.num_rows, *(prepared or (None, None)))
                    if window is None:
                        if item.mapped is not None and item.hashes is not None:
                            self._settle(biller.name, compiled, item.mapped, item.hashes,
                                         Probe.empty(len(item.hashes)), deferred)
                        self._done(biller, compiled, item, min_free=STREAM_TRIM_FREE)
                        continue
                    window.add(item)
                    give_back_memory()  # what mapping the batch freed: the window holds on to little of it
                    if window_full(window.rows, item.checkpoint is not None):
                        # Checkpoints wait too: committed as their rows are recorded.
                        self._flush(biller, compiled, window, deferred)
                if window is not None and len(window):
                    self._flush(biller, compiled, window, deferred)
            finally:
                if window is not None:
                    window.close()
            if deferred and not self.options.dry_run:
                self._deferred(biller.name, compiled, deferred)
            if not self.options.dry_run:
                with self._stage("state"):
                    self.store.tidy_states(biller.name, compiled.sobject)  # merge small state segments now and then
            self.store.release_states(biller.name, compiled.sobject)  # its index is not needed again this run
            give_back_memory()  # the next object starts from what this one leaves, not its peak
            spent = time.process_time() - cpu
            self.run.count(compiled.sobject, seconds=round(time.monotonic() - started, 3), cpu_seconds=round(spent, 3))
            # Where this process's CPU went, by stage (what `make bench` and a slow run want to know).
            self.logger.info("mapping finished", biller=biller.name, sobject=compiled.sobject, cpu_seconds=round(spent, 3),
                             cpu_by_stage={k: round(v, 3) for k, v in self._cpu.items()},
                             peak_rss_mb=peak_rss_mb())

    def _timed_read(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        while True:
            t = time.process_time()
            batch = next(batches, None)
            self._cpu["read"] += time.process_time() - t
            if batch is None:
                return
            yield batch

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        t = time.process_time()
        try:
            yield
        finally:
            self._cpu[name] += time.process_time() - t

    # -- one batch -----------------------------------------------------------------------------
    def _done(self, biller: Biller, compiled: CompiledMapping, item: Item, *, min_free: int = 0) -> None:
        """After a batch's rows are recorded: progress, crash rehearsals, its checkpoint."""
        self._progress(compiled.sobject, item.num_rows)
        point = "load.after_record" if item.checkpoint is not None else "load.mid_file"
        crash_point(point)
        crash_point(f"{point}.{compiled.sobject}")
        # A retry reads only some keys: its files are not loaded in full, so they stay
        # unprocessed (a fixed row without a key comes back with the next `sfsync load`).
        # Nor is a file committed whose rows failed for a passing reason (locks, a failed
        # job, a parent that failed): the next run reads it again and sends just those.
        if item.checkpoint is not None and not self.options.dry_run and self.options.only_keys is None:
            if item.source in self._send_again:
                self.logger.info("file kept for the next run: rows to send again", biller=biller.name,
                                 source=item.source)
            else:
                biller.commit(item.checkpoint)
        self.run.api_calls.update(self.client.calls)
        self.run.flush()
        # After a streamed batch (min_free set) the next one reuses most of what this one
        # freed: giving it back each time cost 10% of the line-item step's CPU in page faults
        # (its peak did not move), so only a heap holding much free memory is trimmed there.
        give_back_memory(min_free=min_free)

    def _flush(self, biller: Biller, compiled: CompiledMapping, window: Window, deferred: list[MappedBatch]) -> None:
        """Scan the store once for the window's keys, then settle its batches in order.

        A key met again later in the window (a file re-delivering a row of an earlier one) is
        asked of the store again once the batches before it are recorded: its first occurrence
        may have just created the record (an object matched by Id must update it, not insert).
        """
        stored: Probe | None = None
        khash, check = window.key_hashes()
        again = repeated(khash)
        if window.rows:
            with self._stage("state"):
                stored = self.store.scan_states(biller.name, compiled.sobject, with_ids=window.with_ids,
                                                hashes=(khash, check))
        at = 0
        for item in window.drain():
            if item.mapped is not None and item.hashes is not None and stored is not None:
                n = len(item.hashes)
                self._source = item.source
                part = stored.slice(at, at + n)
                rows = np.flatnonzero(again[at:at + n])
                if len(rows):
                    with self._stage("state"):
                        part = part.updated(rows, self.store.scan_states(
                            biller.name, compiled.sobject, with_ids=window.with_ids,
                            hashes=(khash[at + rows], None if check is None else check[at + rows])))
                # The key hashes the scan used travel with the rows: the state store files the
                # sent rows by them, without hashing every key again.
                mapped = replace(item.mapped, rows=item.mapped.rows.append_column("_khash", pa.array(khash[at:at + n])))
                self._settle(biller.name, compiled, mapped, item.hashes, part, deferred)
                at += n
            item.mapped = None
            self._done(biller, compiled, item)

    def _prepare(self, name: str, compiled: CompiledMapping, batch: Batch) -> tuple[MappedBatch, np.ndarray] | None:
        """Rejects, mapping, orphans and payload hashes of one batch (None: nothing left to send)."""
        sobject = compiled.sobject
        self._source = batch.source
        if batch.rejects is not None and batch.rejects.num_rows:
            r = batch.rejects.to_pydict()
            self._reject([Reject(self.run.run_id, name, sobject, None, s, "read", c, m)
                          for s, c, m in zip(r["_source"], r["code"], r["message"], strict=True)], sobject)
        if batch.file_error:
            self.logger.warning("file not loaded", biller=name, source=batch.source, error=batch.file_error)
            return None
        if batch.num_rows == 0:
            return None
        self.run.count(sobject, read=batch.num_rows)
        with self._stage("map"):
            mapped = compiled.apply(batch.table, biller=name, trim_date=self.options.trim_date)
        if mapped.skipped:
            self.run.count(sobject, skipped=mapped.skipped)
        self._reject_frame(name, sobject, mapped.rejects, "map")
        mapped = self._drop_orphans(name, compiled, mapped)
        if self.options.only_keys is not None:
            wanted = pa.array(sorted(self.options.only_keys.get(sobject, set())), pa.string())
            mapped = replace(mapped, rows=mapped.rows.filter(pc.is_in(mapped.rows.column("_key"), wanted)))
        if len(mapped) == 0:
            return None
        # Hash what determines the payload: the fields, with lookups by the biller's value (the
        # Id they resolve to is derived), so an unchanged re-run needs no lookup query at all.
        lookup_targets = {lk.field for lk in mapped.lookups}
        cols = [c for c in mapped.rows.column_names if c not in ("_source", "_key") and c not in lookup_targets]
        with self._stage("hash"):
            hashes = payload_hash(mapped.rows, cols)
        # Its rejects are recorded: what travels on (and may wait on disk) is the rows.
        return replace(mapped, rejects=empty_rejects()), hashes

    def _settle(self, name: str, compiled: CompiledMapping, mapped: MappedBatch, hashes: np.ndarray,
                stored: Probe, deferred: list[MappedBatch]) -> None:
        """Compare with what the store holds (``stored``, aligned with the rows) and send what changed."""
        sobject = compiled.sobject
        with self._stage("diff"):
            d = diff(hashes, stored, full=self.options.full)
        n_unchanged = int(d.unchanged.sum())
        self.run.count(sobject, unchanged=n_unchanged)
        if self.options.dry_run:
            self._plan_batch(name, compiled, mapped, d.new.copy(), d.changed.copy(), n_unchanged)
            return
        send = d.send
        if not send.any():
            return
        if send.all():  # a first load: every row (no copy of the batch)
            self._send(name, compiled, mapped, hashes, d.known_ids.tolist(), deferred)
            return
        idx = np.flatnonzero(send)
        sub = replace(mapped, rows=mapped.rows.take(pa.array(idx)))
        self._send(name, compiled, sub, hashes[idx], d.known_ids.iloc[idx].tolist(), deferred)

    def _send(self, biller: str, compiled: CompiledMapping, mapped: MappedBatch, hashes: np.ndarray,
              known_ids: list[str | None], deferred: list[MappedBatch]) -> None:
        sobject = compiled.sobject
        before = len(mapped)
        if mapped.lookups:
            resolved = mapped.resolve(self.resolver)
            if len(resolved) < before:
                self._reject_frame(biller, sobject, resolved.rejects.iloc[len(mapped.rejects):], "map")
                kept = pc.is_in(mapped.rows.column("_key"), resolved.rows.column("_key")).to_numpy(zero_copy_only=False)
                hashes = hashes[kept]
                known_ids = [k for k, keep in zip(known_ids, kept, strict=True) if keep]
            mapped = resolved
        if len(mapped) == 0:
            return
        if any(lk.deferred for lk in mapped.lookups):
            deferred.append(mapped.deferred_part())  # only what the after-step needs
        with self._stage("frame"):
            frame = mapped.to_csv_frame()
            keys = mapped.rows.column("_key").combine_chunks()
            khash = (mapped.rows.column("_khash").combine_chunks().to_numpy()
                     if "_khash" in mapped.rows.column_names else None)
            sources = mapped.rows.column("_source").combine_chunks()
        try:
            with self._stage("send"):
                if compiled.external_id:
                    results = self.writer.write(compiled, "upsert", frame, external_id=compiled.external_id)
                else:
                    results = self.writer.write_matched(compiled, mapped, frame, known_ids)
        except BudgetExhausted as exc:
            # Record what Salesforce already answered; the rest is re-sent by the next run.
            partial = getattr(exc, "partial", None)
            if partial is not None and len(partial):
                pos = frame.index.get_indexer(partial.index)
                at = pa.array(pos)
                self._record(biller, compiled, frame.iloc[pos], keys.take(at), sources.take(at), hashes[pos], partial,
                             None if khash is None else khash[pos])
            raise
        for point in ("load.after_send", f"load.after_send.{sobject}"):  # kill -9 rehearsals (tests)
            crash_point(point)
        self._record(biller, compiled, frame, keys, sources, hashes, results, khash)

    # -- recording -----------------------------------------------------------------------------
    def _record(self, biller: str, compiled: CompiledMapping, frame: pd.DataFrame,
                keys: pa.Array, sources: pa.Array, hashes: np.ndarray, results: pd.DataFrame,
                khash: np.ndarray | None = None) -> None:
        sobject = compiled.sobject
        with self._stage("record"):
            ok = results["success"].fillna(False).to_numpy(dtype=bool)
            ids = results["id"].to_numpy(dtype=object)
        with self._stage("state"):
            self.store.put_state_arrays(biller, sobject, keys.filter(pa.array(ok)), ids[ok], hashes[ok], self.run.run_id,
                                        key_hashes=None if khash is None else khash[ok])
        with self._stage("record"):
            self._record_rest(biller, compiled, frame, keys, sources, results, ok, ids)

    def _record_rest(self, biller: str, compiled: CompiledMapping, frame: pd.DataFrame, keys: pa.Array,
                     sources: pa.Array, results: pd.DataFrame, ok: np.ndarray, ids: np.ndarray) -> None:
        sobject = compiled.sobject
        created = results["created"].fillna(False).to_numpy(dtype=bool)
        retried = results["retried"].fillna(0).to_numpy(dtype=int)
        if len(compiled.key_fields) == 1 and compiled.key_fields[0] in frame.columns and (
                self.remember is None or (sobject, compiled.key_fields[0]) in self.remember):
            values = pa.array(frame[compiled.key_fields[0]].to_numpy(dtype=object)[ok], pa.string(), from_pandas=True)
            self.resolver.remember_arrays(sobject, compiled.key_fields[0], values,
                                          pa.array(ids[ok], pa.string(), from_pandas=True))
        bad = np.flatnonzero(~ok)
        if len(bad):
            codes, messages = results["error_code"].tolist(), results["message"].tolist()
            records = frame.iloc[bad].astype(object).where(frame.iloc[bad].notna(), None).to_dict("records")
            at = pa.array(bad)
            bad_keys, bad_sources = keys.take(at).to_pylist(), sources.take(at).to_pylist()
            self._reject([Reject(self.run.run_id, biller, sobject, k, src, "salesforce",
                                 str(codes[i] or "UNKNOWN"), str(messages[i] or ""), rec)
                          for i, k, src, rec in zip(bad.tolist(), bad_keys, bad_sources, records, strict=True)], sobject)
        n_created = int((ok & created).sum())
        self.run.count(sobject, sent=len(frame), created=n_created, updated=int(ok.sum()) - n_created,
                       retried=int((retried > 0).sum()))

    def _reject(self, rejects: list[Reject], sobject: str) -> None:
        if not rejects:
            return
        self.run.reject(rejects)
        self.run.count(sobject, rejected=len(rejects))
        self.rejected_keys[sobject].update(r.key for r in rejects if r.key)
        if any(r.code in SEND_AGAIN for r in rejects):
            self._send_again.add(self._source)
        if self.options.dry_run:
            self.planned[sobject].rejected += len(rejects)

    def _reject_frame(self, biller: str, sobject: str, rejects: pd.DataFrame, stage: str) -> None:
        if rejects is None or not len(rejects):
            return
        self._reject([Reject(self.run.run_id, biller, sobject, _s(k), _s(s), stage, str(c), str(m))
                      for s, k, c, m in zip(rejects["_source"], rejects["_key"], rejects["code"], rejects["message"],
                                            strict=True)], sobject)

    # -- parents rejected in this run ------------------------------------------------------------
    def _drop_orphans(self, biller: str, compiled: CompiledMapping, mapped: MappedBatch) -> MappedBatch:
        if not self.rejected_keys or len(mapped) == 0:
            return mapped
        rows = mapped.rows
        bad = np.zeros(rows.num_rows, dtype=bool)
        why: dict[int, str] = {}
        fields = {f.get("relationshipName"): f for f in self.client.describe(compiled.sobject)["fields"]
                  if f.get("relationshipName")}
        for col in rows.column_names:
            parent_obj: str | None = None
            prefix = ""
            if "." in col and not col.startswith("_"):
                rel = fields.get(col.split(".")[0])
                parent_obj = (rel or {}).get("referenceTo", [None])[0]
            elif col.startswith("_lookup."):
                lk = next((x for x in mapped.lookups if x.column == col), None)
                parent_obj = lk.sobject if lk and lk.sobject != compiled.sobject else None
                prefix = f"{biller}:"
            if not parent_obj or not self.rejected_keys.get(parent_obj):
                continue
            values = rows.column(col)
            if prefix:
                values = pc.binary_join_element_wise(pa.scalar(prefix), values, "")
            hit = pc.fill_null(pc.is_in(values, pa.array(sorted(self.rejected_keys[parent_obj]), pa.string())), False)
            mask = hit.to_numpy(zero_copy_only=False)
            for i in np.flatnonzero(mask & ~bad).tolist():
                why[i] = f"parent {parent_obj} {values[i].as_py()} was rejected in this run"
            bad |= mask
        if not bad.any():
            return mapped
        where = np.flatnonzero(bad)
        src = rows.column("_source").take(pa.array(where)).to_pylist()
        keys = rows.column("_key").take(pa.array(where)).to_pylist()
        self._reject([Reject(self.run.run_id, biller, compiled.sobject, k, s, "map", PARENT_REJECTED, why[i])
                      for s, k, i in zip(src, keys, where.tolist(), strict=True)], compiled.sobject)
        return replace(mapped, rows=rows.filter(pa.array(~bad)))

    # -- self references ------------------------------------------------------------------------
    def _deferred(self, biller: str, compiled: CompiledMapping, batches: list[MappedBatch]) -> None:
        """The "after" step: fields that point into the same object (Account.ParentId)."""
        for mapped in batches:
            upd = mapped.deferred_updates(self.resolver)
            self._reject_frame(biller, compiled.sobject, upd.rejects, "map")
            if len(upd) == 0:
                continue
            # The stored Ids of the rows' keys, as arrays: no Python object per account.
            keys = upd.rows.column("_key")
            probe = self.store.scan_states(biller, compiled.sobject, keys, with_ids=True)
            sf_ids = probe.sf_ids if probe.sf_ids is not None else np.full(len(upd), None, dtype=object)
            have = probe.present & pd.notna(sf_ids)
            if not have.any():
                continue
            fields = [lk.field for lk in upd.lookups if lk.deferred and lk.field in upd.rows.column_names]
            frame = upd.rows.select(fields).filter(pa.array(have)).to_pandas(types_mapper=pd.ArrowDtype)
            frame.insert(0, "Id", sf_ids[have])
            res = self.writer.write(compiled, "update", frame)
            failed = ~res["success"].fillna(False).to_numpy(dtype=bool)
            if failed.any():
                rows = pa.array(np.flatnonzero(have)[failed])
                src = upd.rows.column("_source").take(rows).to_pylist()
                kk = keys.take(rows).to_pylist()
                codes = res["error_code"].to_numpy(dtype=object)[failed].tolist()
                msgs = res["message"].to_numpy(dtype=object)[failed].tolist()
                self._reject([Reject(self.run.run_id, biller, compiled.sobject, k, s, "salesforce",
                                     str(c), f"after-load update of {', '.join(fields)}: {m}")
                              for k, s, c, m in zip(kk, src, codes, msgs, strict=True)], compiled.sobject)

    # -- dry run ---------------------------------------------------------------------------------
    def _plan_batch(self, biller: str, compiled: CompiledMapping, mapped: MappedBatch, new: np.ndarray,
                    changed: np.ndarray, unchanged: int) -> None:
        """What a real run would do with this batch, asking the org only read-only questions.

        Lookups are resolved (a statement of an account the org does not have is a reject, not
        a create); rows of objects without an External ID that the store does not know are
        matched on their composite key (after a lost state database they would be updated);
        records the run would create are remembered, so that later mappings' lookups of them
        resolve as they would in the real run.
        """
        sobject = compiled.sobject
        todo = np.flatnonzero(new | changed)
        if not len(todo):
            self._plan(sobject, mapped, new, changed, unchanged)
            return
        sub = replace(mapped, rows=mapped.rows.take(pa.array(todo)))
        if mapped.lookups:
            resolved = sub.resolve(self.resolver)
            if len(resolved) < len(sub):
                self._reject_frame(biller, sobject, resolved.rejects.iloc[len(sub.rejects):], "map")
                kept = pc.is_in(sub.rows.column("_key"), resolved.rows.column("_key")).to_numpy(zero_copy_only=False)
                new[todo[~kept]] = changed[todo[~kept]] = False
                todo = todo[kept]
            sub = resolved
        fresh = new[todo]  # rows of ``sub`` the store does not know
        if fresh.any() and not compiled.external_id and compiled.key_fields:
            found = np.array([i is not None for i in self.writer.match_existing(
                compiled, replace(sub, rows=sub.rows.filter(pa.array(fresh))))], dtype=bool)
            at = todo[fresh][found]
            new[at], changed[at] = False, True
            fresh[np.flatnonzero(fresh)[found]] = False
        if fresh.any():
            rows = sub.rows.filter(pa.array(fresh))
            placeholder = pa.array(["(would be created)"] * rows.num_rows, pa.string())
            for f in dict.fromkeys([*compiled.key_fields, *([compiled.external_id] if compiled.external_id else [])]):
                if f in rows.column_names:
                    self.resolver.remember_arrays(sobject, f, rows.column(f).combine_chunks(), placeholder)
        self._plan(sobject, mapped, new, changed, unchanged)

    def _plan(self, sobject: str, mapped: MappedBatch, new: np.ndarray, changed: np.ndarray, unchanged: int) -> None:
        p = self.planned[sobject]
        p.create += int(new.sum())
        p.update += int(changed.sum())
        p.unchanged += unchanged
        if len(p.samples) < 5:
            take = np.flatnonzero(new | changed)[: 5 - len(p.samples)]
            for row in mapped.rows.take(pa.array(take)).to_pylist():
                p.samples.append({k: v for k, v in row.items() if v is not None and k != "_khash"})
        self.run.count(sobject, would_create=int(new.sum()), would_update=int(changed.sum()))

    def _progress(self, sobject: str, n: int) -> None:
        if self.progress:
            self.progress(sobject, n)


def _s(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    return str(v)


def org_trim_date(client: SalesforceClient) -> date | None:
    """The org's data-retention trim date (``vlocity_cmt__BillingDataTrim__c``), if set."""
    try:
        rows = list(client.query("SELECT vlocity_cmt__TrimDate__c FROM vlocity_cmt__BillingDataTrim__c "
                                 "WHERE vlocity_cmt__TrimDate__c != null ORDER BY vlocity_cmt__TrimDate__c DESC LIMIT 1"))
    except ApiError as exc:
        if exc.error_code in ("INVALID_TYPE", "INVALID_FIELD"):
            return None  # the setting is absent in this org: nothing is trimmed
        log.get_logger("sfsync.load").warning(
            "the org's data-retention trim date could not be read; nothing is trimmed this run "
            "(set load.trim_date in the config or pass --trim-date)", error=str(exc), error_code=exc.error_code)
        return None
    if not rows:
        return None
    return date.fromisoformat(str(rows[0]["vlocity_cmt__TrimDate__c"])[:10])
