"""Sending a load's rows: Bulk/REST write calls in slices, retries of what is transient, matching by key.

Part of ``sfsync load`` (``load.py`` decides what to send; this sends it and returns one
result per row, aligned with the frame given): upserts retried once on ``DUPLICATE_VALUE``
(a concurrent refresh created the record), inserts of objects without an External ID
fenced against another process inserting the same keys (``sfsync/state/fence.py``) and
recovered by matching on the composite key after a failure in flight, a bulk job that failed
twice turned into per-row rejects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sfsync.errors import BudgetExhausted, TerminalError, TransientError
from sfsync.jobs.match import CompositeMatcher
from sfsync.state.fence import WAIT_SECONDS, InsertFence

if TYPE_CHECKING:
    from sfsync.jobs.runner import RunContext
    from sfsync.mappers import CompiledMapping, MappedBatch
    from sfsync.salesforce import SalesforceClient

DUPLICATE_VALUE = "DUPLICATE_VALUE"
BULK_JOB_FAILED = "BULK_JOB_FAILED"
INSERT_RECOVERIES = 2  # re-match and re-send an insert that failed in flight, at most this often
SEND_SLICE = 200_000  # rows per write call: bounds memory, one Bulk job each


class Writer:
    """Writes frames of one run's rows; keeps the run's composite-key matchers and master fields."""

    def __init__(self, client: SalesforceClient, run: RunContext, logger: Any,
                 fence_wait: float = WAIT_SECONDS) -> None:
        self.client = client
        self.run = run
        self.logger = logger
        self.fence_wait = fence_wait
        self._matchers: dict[str, CompositeMatcher] = {}
        self._fenced_at: dict[str, int] = {}  # sObject → the insert generation its matcher has seen
        self._parents: dict[str, dict[str, str]] = {}

    def write(self, compiled: CompiledMapping, operation: str, frame: pd.DataFrame,
               external_id: str | None = None) -> pd.DataFrame:
        opts = compiled.load
        parent = self._parent_column(compiled, frame)
        # An insert's rows are told apart by their composite key: results are matched on it.
        keys = compiled.key_fields if operation == "insert" and all(k in frame.columns for k in compiled.key_fields) \
            else ()
        parts = []
        for i in range(0, len(frame), SEND_SLICE):
            part = frame.iloc[i:i + SEND_SLICE]
            try:
                res = self.client.write_frame(compiled.sobject, operation, part, external_id_field=external_id,
                                              api=opts.api, serial=opts.serial, batch_size=opts.batch_size,
                                              parent_column=parent, match_on=keys or None)
            except BudgetExhausted as exc:
                answered = getattr(exc, "results", None)
                if answered is not None:
                    parts.append(answered)
                setattr(exc, "partial", pd.concat(parts) if parts else None)  # noqa: B010 - rows answered so far
                raise
            except TerminalError as exc:
                res = _job_failed(part, exc)
                if res is None:
                    raise
                self.logger.warning("bulk job failed twice; its rows are rejected", sobject=compiled.sobject,
                                    error=str(exc))
            if operation == "upsert":
                res = self._retry_duplicates(compiled, part, res, external_id, parent)
            parts.append(res)
        return pd.concat(parts) if len(parts) > 1 else parts[0]

    def _retry_duplicates(self, compiled: CompiledMapping, part: pd.DataFrame, res: pd.DataFrame,
                          external_id: str | None, parent: str | None) -> pd.DataFrame:
        # Two upserts of one new External ID at the same moment (a webhook refresh during the
        # monthly load): the loser gets DUPLICATE_VALUE. The record exists now: upsert again.
        dup = (res["error_code"] == DUPLICATE_VALUE).fillna(False).to_numpy(dtype=bool)
        if not dup.any():
            return res
        again = self.client.write_frame(compiled.sobject, "upsert", part[dup], external_id_field=external_id,
                                        api="rest" if dup.sum() < 2000 else compiled.load.api, parent_column=parent)
        again["retried"] = again["retried"].fillna(0).astype(res["retried"].dtype) + 1
        res = res.copy()
        for col in again.columns:  # column by column: each keeps the dtype of the first answer
            res.loc[again.index, col] = again[col].to_numpy(dtype=res[col].dtype if col in res else None)
        return res  # counted as retried where the rows are recorded (their ``retried`` column)

    def write_matched(self, compiled: CompiledMapping, mapped: MappedBatch, frame: pd.DataFrame,
                       known_ids: list[str | None]) -> pd.DataFrame:
        """Update the rows whose record is known or found by key, insert the others.

        An insert is not idempotent, so the transport does not repeat one that failed in flight
        (a 503, a dropped connection): it may have happened. Ask the org again by composite key
        (a fresh matcher: the run's cache predates the attempt) and send again: what was
        created is updated, not duplicated.

        Rows that may be inserted are matched and sent inside the object's insert fence, so
        that another process (a refresh during a load) inserting the same keys cannot slip in
        between the match and the insert; a matcher whose cache predates another process's
        inserts is dropped first.
        """
        if not compiled.key_fields or all(k is not None for k in known_ids):
            return self._write_matched(compiled, mapped, frame, known_ids)  # updates by Id only
        sobject = compiled.sobject
        with InsertFence(self.run.store, sobject, wait_seconds=self.fence_wait) as fence:
            if self._fenced_at.get(sobject) != fence.generation:
                self._matchers.pop(sobject, None)  # another process inserted since: ask the org again
            try:
                res = self._write_matched(compiled, mapped, frame, known_ids)
            finally:
                self._fenced_at.pop(sobject, None)
            if res["created"].fillna(False).to_numpy(dtype=bool).any():
                fence.inserted()
        if fence.waited > 1:
            self.logger.info("waited for another process's inserts", sobject=sobject, seconds=round(fence.waited, 1))
        self._fenced_at[sobject] = fence.generation  # its own inserts: the state store knows them
        return res

    def _write_matched(self, compiled: CompiledMapping, mapped: MappedBatch, frame: pd.DataFrame,
                       known_ids: list[str | None]) -> pd.DataFrame:
        ids = self._match(compiled, mapped, known_ids)
        for attempt in range(INSERT_RECOVERIES + 1):
            try:
                res = self._write_split(compiled, frame, ids)
                if attempt:  # every row was sent again: retried, counted once where the rows are recorded
                    res = res.copy()
                    res["retried"] = np.maximum(res["retried"].fillna(0).to_numpy(dtype=np.int64), 1)
                return res
            except TransientError as exc:
                if attempt == INSERT_RECOVERIES or not compiled.key_fields:
                    raise
                self.logger.warning("write failed in flight; matching by key before sending again",
                                    sobject=compiled.sobject, error=str(exc))
                self._matchers.pop(compiled.sobject, None)
                ids = self._match(compiled, mapped, known_ids)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _write_split(self, compiled: CompiledMapping, frame: pd.DataFrame, ids: list[str | None]) -> pd.DataFrame:
        has_id = np.array([i is not None for i in ids], dtype=bool)
        parts: list[pd.DataFrame] = []
        try:
            if has_id.any():
                upd = frame[has_id].copy()
                upd.insert(0, "Id", [i for i in ids if i is not None])
                parts.append(self.write(compiled, "update", upd))
            if (~has_id).any():
                parts.append(self.write(compiled, "insert", frame[~has_id]))
        except BudgetExhausted as exc:
            earlier = getattr(exc, "partial", None)
            done = [*parts, *([earlier] if earlier is not None else [])]
            setattr(exc, "partial", pd.concat(done) if done else None)  # noqa: B010 - rows answered so far
            raise
        return pd.concat(parts).loc[frame.index]

    def match_existing(self, compiled: CompiledMapping, mapped: MappedBatch) -> list[str | None]:
        """The Id of the org's record with each row's composite key, or None (read-only: a dry run's question)."""
        return self._match(compiled, mapped, [None] * len(mapped))

    def _match(self, compiled: CompiledMapping, mapped: MappedBatch, known_ids: list[str | None]) -> list[str | None]:
        unknown = [i for i, k in enumerate(known_ids) if k is None]
        if not unknown or not compiled.key_fields:
            return known_ids
        matcher = self._matchers.get(compiled.sobject)
        if matcher is None:
            matcher = self._matchers[compiled.sobject] = CompositeMatcher(self.client, compiled.sobject,
                                                                          list(compiled.key_fields))
        found = matcher.existing(mapped.rows.take(pa.array(unknown)).select(list(compiled.key_fields)))
        out = list(known_ids)
        for pos, sf_id in zip(unknown, found, strict=True):
            out[pos] = sf_id
        return out

    def _parent_column(self, compiled: CompiledMapping, frame: pd.DataFrame) -> str | None:
        # Lock retries are grouped by the master record: the first relationship or master-detail column.
        if compiled.sobject not in self._parents:
            fields = {f["name"]: f for f in self.client.describe(compiled.sobject)["fields"]}
            self._parents[compiled.sobject] = {
                n: f.get("relationshipName") or "" for n, f in fields.items()
                if f.get("type") == "reference" and f.get("cascadeDelete", f.get("relationshipOrder") is not None)}
        masters = self._parents[compiled.sobject]
        for col in frame.columns:
            base = col.split(".")[0]
            if col in masters or any(base == rel for rel in masters.values() if rel):
                return col
        return None


def _job_failed(part: pd.DataFrame, exc: TerminalError) -> pd.DataFrame | None:
    """One result per row when a bulk job failed again after its re-send, else None.

    The rows Salesforce answered keep their answers; the others are rejected with the job's
    error, so that every row ends loaded or rejected (the next run sends them again: a rejected
    row has no state). Other terminal errors (a refused request, a spent budget) stop the run.
    """
    from sfsync.salesforce import RESULT_COLUMNS, UNPROCESSED, ApiError

    answered = getattr(exc, "results", None)
    if isinstance(exc, (ApiError, BudgetExhausted)) or answered is None:
        return None
    res = pd.DataFrame({"success": False, "id": None, "created": False, "error_code": BULK_JOB_FAILED,
                        "message": str(exc), "retried": 1}, index=part.index, columns=RESULT_COLUMNS)
    done = answered[answered["error_code"].fillna("") != UNPROCESSED]
    res.loc[done.index, RESULT_COLUMNS] = done[RESULT_COLUMNS]
    return res
