"""Writing a frame of records: API choice, per-row results, retries of what is transient.

API choice ("smart", as CumulusCI does it): REST sObject Collections below
:data:`~sfsync.limits.SMART_BULK_THRESHOLD` rows, Bulk API 2.0 above it, Bulk API 1.0 in
Serial mode when the caller asks for ``serial=True`` (children whose parents' locks
contend) or ``api="bulk1"``.

What is retried, and how often:

* ``UNABLE_TO_LOCK_ROW`` rows, at most ``max_lock_retries`` times: first grouped by
  parent (sorted on ``parent_column`` so one parent's children travel together), then
  serially (one collection at a time, or a Bulk 1.0 Serial job). Counted in
  ``RowResult.retried``.
* Rows that a ``Failed``/``Aborted`` bulk job did not process are re-sent once, in a new
  job. If that job fails too, :class:`~sfsync.errors.TerminalError` is raised: the job
  failure is about the job (a bad header, the org refusing it), not a row.
* Validation errors (every other row error) are never retried: they are results.
* HTTP-level failures (5xx, timeouts, expired sessions) are retried per call by the
  transport.

When an exception stops a write midway (budget exhausted, terminal failure), the rows
already answered are attached to it as ``exc.results`` (a result frame, see
:func:`write_frame`), so the caller can record them before stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.errors import SfsyncError, TerminalError
from sfsync.limits import SMART_BULK_THRESHOLD

from . import bulk1, bulk2, rest
from .bulk2 import JobFailure
from .csvio import frame_to_table
from .results import LOCK_ERROR, RESULT_COLUMNS, UNPROCESSED, Outcomes
from .transport import Transport

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
APIS = ("auto", "rest", "bulk2", "bulk1")
#: Re-sends of rows that failed with UNABLE_TO_LOCK_ROW (after the first attempt).
MAX_LOCK_RETRIES = 2

Progress = Callable[[int], None]


def choose_api(rows: int, operation: str, *, api: str = "auto", serial: bool = False) -> str:
    """The API to send ``rows`` rows with: ``"rest"``, ``"bulk2"`` or ``"bulk1"``.

    Args:
        rows: how many rows will be sent.
        operation: insert, update, upsert, delete or hardDelete.
        api: ``"auto"`` (smart) or a forced choice.
        serial: ask for Bulk 1.0 Serial processing for volumes that go through bulk.
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    if operation == "hardDelete" and api in ("auto", "rest"):
        return "bulk1" if serial else "bulk2"  # only the Bulk APIs can hard-delete
    if api != "auto":
        return api
    if rows < SMART_BULK_THRESHOLD:
        return "rest"  # one collection at a time: serial by construction
    return "bulk1" if serial else "bulk2"


def _send(
    transport: Transport,
    api: str,
    sobject: str,
    operation: str,
    table: pa.Table,
    *,
    external_id_field: str | None,
    serial: bool,
    batch_size: int | None,
    progress: Progress | None,
    match_on: Sequence[str] | None = None,
) -> tuple[Outcomes, list[JobFailure]]:
    if api == "rest":
        out = rest.write(transport, sobject, operation, table, external_id_field=external_id_field, batch_size=batch_size, progress=progress)
        return out, []
    if api == "bulk2":
        return bulk2.ingest(transport, sobject, operation, table, external_id_field=external_id_field, max_rows=batch_size,
                            progress=progress, match_on=match_on)
    return bulk1.ingest(
        transport, sobject, operation, table, external_id_field=external_id_field, serial=serial, max_rows=batch_size, progress=progress
    )


def _validate(frame: pd.DataFrame, operation: str, external_id_field: str | None, parent_column: str | None) -> None:
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if operation == "upsert":
        if not external_id_field:
            raise ValueError("upsert needs external_id_field")
        if external_id_field not in frame.columns:
            raise ValueError(f"upsert frame lacks its external ID column {external_id_field!r}")
    if operation in ("update", "delete", "hardDelete") and "Id" not in frame.columns:
        raise ValueError(f"{operation} needs an Id column")
    if parent_column is not None and parent_column not in frame.columns:
        raise ValueError(f"parent_column {parent_column!r} is not a column of the frame")


def _by_parent(table: pa.Table, positions: np.ndarray, parent_column: str | None) -> np.ndarray:
    """``positions`` ordered so that rows of the same parent are adjacent (stable)."""
    if parent_column is None or len(positions) < 2:
        return positions
    parents = table.column(parent_column).take(pa.array(positions))
    order = pc.array_sort_indices(pc.fill_null(parents.combine_chunks(), ""))  # stable
    return positions[order.to_numpy()]


def write_frame(
    transport: Transport,
    sobject: str,
    operation: str,
    frame: pd.DataFrame,
    *,
    external_id_field: str | None = None,
    api: str = "auto",
    serial: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
    parent_column: str | None = None,
    max_lock_retries: int = MAX_LOCK_RETRIES,
    match_on: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write ``frame`` and return one result per input row, as a frame.

    Args:
        transport: the connected transport.
        sobject: e.g. ``vlocity_cmt__StatementLineItem__c``.
        operation: insert, update, upsert, delete or hardDelete.
        frame: string values ready for CSV; empty or null leaves a field untouched,
            ``#N/A`` sets it to null; relationship columns flat (``Parent__r.ExtId__c``).
        external_id_field: the upsert key.
        api: ``"auto"``, ``"rest"``, ``"bulk2"`` or ``"bulk1"``.
        serial: Bulk 1.0 Serial for volumes (parent lock contention).
        batch_size: cap on rows per request/batch/job (within Salesforce's limits).
        progress: called with the number of rows answered, as they are answered.
        parent_column: the column naming each row's parent, for grouping lock retries.
        max_lock_retries: bound on re-sends of UNABLE_TO_LOCK_ROW rows.
        match_on: for an insert, the columns of a composite key: Bulk API 2.0 results are
            matched to rows on them rather than on every column (when they are distinct).

    Returns:
        A frame indexed like ``frame`` with columns ``success, id, created, error_code,
        message, retried``.

    Raises:
        TerminalError: a bulk job failed twice (``exc.results`` holds the rows answered).
        BudgetExhausted: the API budget guard stopped the write (``exc.results`` too).
    """
    _validate(frame, operation, external_id_field, parent_column)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS}, index=frame.index)
    table = frame_to_table(frame)
    out = Outcomes(table.num_rows)
    opts: dict[str, Any] = {"external_id_field": external_id_field, "batch_size": batch_size, "match_on": match_on}
    try:
        chosen = choose_api(table.num_rows, operation, api=api, serial=serial)
        first, failures = _send(transport, chosen, sobject, operation, table, serial=serial, progress=progress, **opts)
        out = first  # the answers for every row, in order: nothing to copy
        if failures:
            _resend_unprocessed(transport, sobject, operation, table, out, api=api, serial=serial, **opts)
        for attempt in range(1, max_lock_retries + 1):
            locked = out.positions_with(LOCK_ERROR)
            if not len(locked):
                break
            locked = _by_parent(table, locked, parent_column)
            transport.policy.sleep(transport.policy.backoff(attempt))
            if attempt == 1:
                # Grouped by parent, same kind of API: most contention was between our own batches.
                retry_api, retry_serial = choose_api(len(locked), operation, api=api, serial=serial), serial
            else:
                retry_api = "rest" if (api == "rest" or len(locked) < SMART_BULK_THRESHOLD) else "bulk1"
                retry_serial = True
            sub, _ = _send(transport, retry_api, sobject, operation, table.take(pa.array(locked)), serial=retry_serial, progress=None, **opts)
            out.merge(locked, sub, retried=True)
    except SfsyncError as exc:
        exc.results = out.to_frame(frame.index)[out.known]  # type: ignore[attr-defined]
        raise
    out.finish()
    return out.to_frame(frame.index)


def _resend_unprocessed(
    transport: Transport,
    sobject: str,
    operation: str,
    table: pa.Table,
    out: Outcomes,
    *,
    api: str,
    serial: bool,
    external_id_field: str | None,
    batch_size: int | None,
    match_on: Sequence[str] | None = None,
) -> None:
    """Send once more the rows a Failed/Aborted job left unprocessed; fail if it fails again."""
    pending = out.positions_with(UNPROCESSED)
    if not len(pending):
        return
    again_api = choose_api(len(pending), operation, api=api, serial=serial)
    sub, again = _send(
        transport,
        again_api,
        sobject,
        operation,
        table.take(pa.array(pending)),
        external_id_field=external_id_field,
        serial=serial,
        batch_size=batch_size,
        progress=None,
        match_on=match_on,
    )
    out.merge(pending, sub, retried=True)
    if again:
        first = again[0]
        raise TerminalError(
            f"Bulk job {first.job_id} for {sobject} ended {first.state} again after a re-send: {first.message}; "
            f"{int((out.error_code == UNPROCESSED).sum())} rows were not processed"
        )
