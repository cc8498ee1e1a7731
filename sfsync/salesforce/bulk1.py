"""Bulk API 1.0 through salesforce-bulk: the Serial mode that Bulk 2.0 lacks.

Children of one parent loaded in parallel batches contend for the parent's lock
(UNABLE_TO_LOCK_ROW); a Serial job processes its batches one at a time. salesforce-bulk's
``wait_for_batch`` sleeps 10 s between checks, so sfsync polls the batch list itself, and
it reads the positional result CSV with Arrow rather than row by row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from salesforce_bulk import SalesforceBulk
from salesforce_bulk import salesforce_bulk as _sfbulk_module

from sfsync.errors import TransientError
from sfsync.limits import BULK1_MAX_BYTES_PER_BATCH, BULK1_MAX_CHARS_PER_BATCH, BULK1_MAX_RECORDS_PER_BATCH

from .bulk2 import JobFailure
from .csvio import csv_chunks, read_csv
from .results import UNPROCESSED, Outcomes, split_errors
from .transport import Transport

BATCH_DONE = ("Completed", "Failed", "NotProcessed")


def _post_batch(bulk: SalesforceBulk, *, job_id: str, data: bytes | memoryview) -> str:
    return str(bulk.post_batch(job_id, data))


RESULT_READ_BYTES = 1 << 20


def _batch_result(bulk: SalesforceBulk, *, job_id: str, batch_id: str) -> bytes:
    # Through the module salesforce-bulk itself calls, so whatever routes its requests
    # (REQUESTS_CA_BUNDLE, an in-process emulator) routes this one too.
    url = f"{bulk.endpoint}/job/{job_id}/batch/{batch_id}/result"
    response = _sfbulk_module.requests.get(url, headers=bulk.headers(), stream=True)
    bulk.check_status(response)
    # In pieces of up to 1 MiB, as they arrive: ``.content`` reads 10 KiB at a time, some
    # 4,000 rounds through urllib3 for the results of a million rows.
    return b"".join(response.iter_content(RESULT_READ_BYTES))


def _wait(transport: Transport, job_id: str, batch_ids: list[str]) -> dict[str, dict[str, Any]]:
    policy = transport.policy
    deadline = time.monotonic() + policy.job_timeout
    wanted = set(batch_ids)
    for delay in policy.polls():
        policy.sleep(delay)
        listing = transport.call_bulk1(lambda b: b.get_batch_list(job_id), guarded=False)
        if isinstance(listing, dict):  # one batch in XML comes back as a dict
            listing = [listing]
        states = {info["id"]: info for info in listing if info.get("id") in wanted}
        if len(states) == len(wanted) and all(info.get("state") in BATCH_DONE for info in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TransientError(f"Bulk API 1.0 job {job_id} still running after {policy.job_timeout:.0f} s")
    return {}  # pragma: no cover - polls() never ends


def ingest(
    transport: Transport,
    sobject: str,
    operation: str,
    table: pa.Table,
    *,
    external_id_field: str | None = None,
    serial: bool = True,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Outcomes, list[JobFailure]]:
    """Write ``table`` in one Bulk API 1.0 job, batches within the 10k rows / 10 MB limits.

    Returns:
        Per-row outcomes (positional within each batch) and the batches that Failed.
    """
    out = Outcomes(table.num_rows)
    rows = min(max_rows or BULK1_MAX_RECORDS_PER_BATCH, BULK1_MAX_RECORDS_PER_BATCH)
    # UTF-8 bytes ≥ characters, so this byte cap also keeps the 10M-characters limit.
    max_bytes = min(BULK1_MAX_BYTES_PER_BATCH, BULK1_MAX_CHARS_PER_BATCH)
    # create + batches + close + one poll + one result per batch
    transport.guard.check(3 + 2 * -(-table.num_rows // rows))
    job_id: str = transport.call_bulk1(
        lambda b: b.create_job(
            sobject,
            operation,
            contentType="CSV",
            concurrency="Serial" if serial else "Parallel",
            external_id_name=external_id_field if operation == "upsert" else None,
        ),
        idempotent=False,
    )
    batches: list[tuple[str, int, int]] = []
    for chunk in csv_chunks(table, max_rows=rows, max_bytes=max_bytes, reuse=True):  # posted one by one
        batch_id: str = transport.call_bulk1(
            partial(_post_batch, job_id=job_id, data=chunk.data), idempotent=operation != "insert", guarded=False
        )
        batches.append((batch_id, chunk.start, chunk.stop))
    transport.call_bulk1(lambda b: b.close_job(job_id), guarded=False)
    states = _wait(transport, job_id, [b for b, _, _ in batches])
    failures: list[JobFailure] = []
    for batch_id, start, stop in batches:
        info = states[batch_id]
        positions = np.arange(start, stop)
        if info.get("state") != "Completed":
            reason = info.get("stateMessage") or info.get("state")
            out.set(positions, success=False, error_code=UNPROCESSED, message=f"not processed: batch {batch_id} {info.get('state')}: {reason}")
            failures.append(JobFailure(f"{job_id}/{batch_id}", str(info.get("state")), str(reason), stop - start))
        else:
            body = transport.call_bulk1(partial(_batch_result, job_id=job_id, batch_id=batch_id), guarded=False)
            _positional(out, positions, read_csv(body, threads=False))  # 10k rows: a block or two
        if progress is not None:
            progress(stop - start)
    return out, failures


def _positional(out: Outcomes, positions: np.ndarray, result: pa.Table) -> None:
    """Bulk 1.0 DML results: ``Id, Success, Created, Error``, one row per input row, in order."""
    n = min(result.num_rows, len(positions))
    if n == 0:
        return
    result = result.slice(0, n)
    pos = positions[:n]
    # ascii_lower: "true" in any case is ASCII (a quarter of utf8_lower's cost).
    success = pc.equal(pc.ascii_lower(result.column("Success")), "true").to_numpy()
    created = pc.equal(pc.ascii_lower(result.column("Created")), "true").to_numpy()
    ids = result.column("Id").to_numpy().astype(object)
    ids[ids == ""] = None
    codes = np.full(n, None, dtype=object)
    messages = np.full(n, None, dtype=object)
    failed = np.flatnonzero(~success)
    if len(failed):  # only failed rows carry an error to split
        codes[failed], messages[failed] = split_errors(result.column("Error").take(pa.array(failed)).combine_chunks())
    out.set(pos, success=success, ids=ids, created=created, error_code=codes, message=messages)
