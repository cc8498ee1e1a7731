"""Bulk API 2.0: ingest and query jobs through the run's session, on sfsync's own schedule.

simple-salesforce's bulk2 helpers sleep 5 s before the first status check and parse
results row by row; a worker that loads a million rows, or refreshes one account while a
customer waits, cannot afford either. These functions speak the same REST resources
(``jobs/ingest``, ``jobs/query``) through the same authenticated session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.errors import TransientError
from sfsync.limits import BULK2_MAX_UPLOAD_BYTES

from .csvio import csv_chunks, read_csv
from .results import UNPROCESSED, Outcomes, match_on_key, match_positions, split_errors
from .transport import Transport, json_body

log = logging.getLogger(__name__)

FINISHED = ("JobComplete", "Failed", "Aborted")
# Calls one ingest job needs at least: create, upload, close, one poll, one result file.
CALLS_PER_JOB = 5
#: Rows per page of Bulk 2.0 query results.
QUERY_PAGE_ROWS = 50_000


@dataclass(frozen=True)
class JobFailure:
    """A bulk job that ended ``Failed`` or ``Aborted``."""

    job_id: str
    state: str
    message: str
    rows: int


def _key_field(operation: str, external_id_field: str | None) -> str | None:
    if operation == "upsert":
        return external_id_field
    if operation in ("update", "delete", "hardDelete"):
        return "Id"
    return None


def wait_for_jobs(transport: Transport, kind: str, path: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Poll jobs until each is finished: first check within ``first_poll``, then back-off.

    Raises:
        TransientError: a job is still running after ``policy.job_timeout`` seconds.
    """
    policy = transport.policy
    pending = list(job_ids)
    infos: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + policy.job_timeout
    for delay in policy.polls():
        policy.sleep(delay)
        still = []
        for job_id in pending:
            info = transport.request(kind, "GET", f"{path}/{job_id}", guarded=False).json()
            if info.get("state") in FINISHED:
                infos[job_id] = info
            else:
                still.append(job_id)
        pending = still
        if not pending:
            return infos
        if time.monotonic() > deadline:
            raise TransientError(f"Bulk API 2.0 job(s) {', '.join(pending)} still running after {policy.job_timeout:.0f} s")
    return infos  # pragma: no cover - polls() never ends


def _int(info: dict[str, Any], key: str) -> int | None:
    value = info.get(key)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def ingest(
    transport: Transport,
    sobject: str,
    operation: str,
    table: pa.Table,
    *,
    external_id_field: str | None = None,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
    match_on: Sequence[str] | None = None,
) -> tuple[Outcomes, list[JobFailure]]:
    """Write ``table`` with Bulk API 2.0 ingest jobs (one per ≤ 150 MB upload).

    ``match_on``: for an insert, columns whose values together tell the rows apart (a
    composite key): results are matched on them alone instead of on every echoed column.

    Returns:
        Per-row outcomes, and the jobs that ended Failed/Aborted (their unprocessed rows
        carry the code ``UNPROCESSED`` and may be re-sent by the caller).
    """
    out = Outcomes(table.num_rows)
    key = _key_field(operation, external_id_field)
    keys = (key,) if key is not None else tuple(match_on or ()) or None
    payload: dict[str, Any] = {"object": sobject, "operation": operation, "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"}
    if operation == "upsert":
        payload["externalIdFieldName"] = external_id_field
    jobs: list[tuple[str, int, int]] = []
    for chunk in csv_chunks(table, max_rows=max_rows, max_bytes=BULK2_MAX_UPLOAD_BYTES):
        # Check for the whole job first: a job cut off halfway leaves rows in limbo.
        transport.guard.check(CALLS_PER_JOB)
        job = transport.request("bulk2", "POST", "jobs/ingest", data=json_body(payload), idempotent=False).json()
        job_id = job["id"]
        # Once the job exists, it is finished even past the budget share (see Transport).
        transport.request("bulk2", "PUT", f"jobs/ingest/{job_id}/batches", data=chunk.data, content_type="text/csv", guarded=False)
        transport.request("bulk2", "PATCH", f"jobs/ingest/{job_id}", data=json_body({"state": "UploadComplete"}), guarded=False)
        jobs.append((job_id, chunk.start, chunk.stop))
    infos = wait_for_jobs(transport, "bulk2", "jobs/ingest", [j for j, _, _ in jobs])
    failures: list[JobFailure] = []
    for job_id, start, stop in jobs:
        info = infos[job_id]
        sent = table.slice(start, stop - start)
        sub = _collect(transport, job_id, info, sent, keys)
        if stop - start == out.n:
            out = sub  # one job for the whole table (the usual case): nothing to copy
        else:
            out.merge(slice(start, stop), sub)
        if info["state"] != "JobComplete":
            failures.append(JobFailure(job_id, info["state"], str(info.get("errorMessage") or info["state"]), stop - start))
        if progress is not None:
            progress(stop - start)
    return out, failures


#: The result columns ``_collect`` reads besides the match key, by result file.
_RESULT_FIELDS = {"successfulResults": ("sf__Id", "sf__Created"), "failedResults": ("sf__Id", "sf__Error"), "unprocessedrecords": ()}


def _match(sent: pa.Table, bodies: dict[str, bytes | bytearray], match_on: tuple[str, ...] | None) -> tuple[dict[str, pa.Table], list[np.ndarray]]:
    """Parse the result files and find each result row's position in ``sent``.

    Result files echo every uploaded column, but when the key (one column or several) is
    distinct in ``sent`` only it is needed: the other echoed columns are parsed past, never converted. Only
    when the key repeats (or is missing) are all columns read, to match on whole rows.
    """
    if match_on is not None:
        tables = {name: read_csv(body, columns=(*_RESULT_FIELDS[name], *match_on), threads=False) for name, body in bodies.items()}
        found = match_on_key(sent, list(tables.values()), match_on)
        if found is not None:
            return tables, found
    tables = {name: read_csv(body, threads=False) for name, body in bodies.items()}
    return tables, match_positions(sent, list(tables.values()), None)


def _collect(transport: Transport, job_id: str, info: dict[str, Any], sent: pa.Table, match_on: tuple[str, ...] | None) -> Outcomes:
    """Fetch only the result files that can hold rows, and match them to ``sent``."""
    n = sent.num_rows
    out = Outcomes(n)
    processed = _int(info, "numberRecordsProcessed")
    failed = _int(info, "numberRecordsFailed")
    complete = info["state"] == "JobComplete"
    want_success = processed is None or failed is None or processed - failed > 0
    want_failed = failed is None or failed > 0
    want_unprocessed = not complete or processed is None or processed < n
    bodies: dict[str, bytes | bytearray] = {}
    for name, wanted in (("successfulResults", want_success), ("failedResults", want_failed), ("unprocessedrecords", want_unprocessed)):
        if wanted:
            # The large file goes to the transport's reused buffer: parsed below, before any
            # other download of this thread.
            reuse = name == "successfulResults"
            bodies[name], _ = transport.download("bulk2", f"jobs/ingest/{job_id}/{name}", reuse=reuse, accept="text/csv", guarded=False)
    tables, found = _match(sent, bodies, match_on)
    positions = dict(zip(bodies, found, strict=True))
    del bodies
    for name, table in tables.items():
        pos = positions[name]
        ok = pos >= 0
        if not ok.all():
            log.warning("bulk2 job %s: %d %s rows matched no input row", job_id, int((~ok).sum()), name)
        pos = pos[ok]
        if not len(pos):
            continue
        if name == "successfulResults":
            ids = table.column("sf__Id").to_numpy()[ok]
            created = pc.equal(pc.ascii_lower(table.column("sf__Created")), "true").to_numpy()[ok]
            out.set(pos, success=True, ids=ids, created=created)
        elif name == "failedResults":
            codes, messages = split_errors(table.column("sf__Error"))
            ids = table.column("sf__Id").to_numpy().astype(object)[ok]
            ids[ids == ""] = None
            out.set(pos, success=False, ids=ids, error_code=codes[ok], message=messages[ok])
        else:
            out.set(pos, success=False, error_code=UNPROCESSED, message=f"not processed: job {job_id} {info['state']}")
    if not complete:
        # A Failed/Aborted job may not list every row it skipped.
        missing = np.flatnonzero(~out.known)
        if len(missing):
            reason = info.get("errorMessage") or info["state"]
            out.set(missing, success=False, error_code=UNPROCESSED, message=f"not processed: job {job_id} {info['state']}: {reason}")
    return out


def query(transport: Transport, soql: str, *, include_deleted: bool = False, page_rows: int = QUERY_PAGE_ROWS) -> Iterator[pd.DataFrame]:
    """Run a Bulk API 2.0 query job; yield one frame per results page (see :func:`query_tables`)."""
    for table in query_tables(transport, soql, include_deleted=include_deleted, page_rows=page_rows):
        yield table.to_pandas()


def query_tables(transport: Transport, soql: str, *, include_deleted: bool = False,
                 page_rows: int = QUERY_PAGE_ROWS) -> Iterator[pa.Table]:
    """Run a Bulk API 2.0 query job; yield one Arrow table per results page (locator paging).

    Columns are strings; Salesforce's empty values are nulls.

    Raises:
        TerminalError: the query job ended Failed or Aborted.
    """
    from sfsync.errors import TerminalError

    payload = {"operation": "queryAll" if include_deleted else "query", "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}
    job = transport.request("query", "POST", "jobs/query", data=json_body(payload), idempotent=False).json()
    info = wait_for_jobs(transport, "query", "jobs/query", [job["id"]])[job["id"]]
    if info["state"] != "JobComplete":
        raise TerminalError(f"Bulk API 2.0 query job {job['id']} ended {info['state']}: {info.get('errorMessage') or ''}".strip())
    locator: str | None = None
    while True:
        params: dict[str, Any] = {"maxRecords": page_rows}
        if locator:
            params["locator"] = locator
        body, headers = transport.download("query", f"jobs/query/{job['id']}/results", params=params, reuse=True, accept="text/csv")
        table = read_csv(body, nullable=True)  # before the next download, which reuses the buffer
        del body
        if table.num_rows or table.num_columns:
            yield table
        locator = headers.get("Sforce-Locator")
        if not locator or locator == "null":
            return
