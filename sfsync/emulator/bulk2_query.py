"""Bulk API 2.0 query jobs: ``/services/data/vXX.X/jobs/query``, and job listings.

``POST query`` validates the SOQL at once (a bad query is a 400 there, as in
Salesforce) and takes its snapshot; polls report ``UploadComplete``/``InProgress`` then
``JobComplete``; ``GET query/{id}/results?maxRecords=&locator=`` pages the CSV with the
``Sforce-NumberOfRecords`` and ``Sforce-Locator`` headers (``null`` on the last page).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sfsync.emulator import soql
from sfsync.emulator.bulk2_common import (
    DEFAULT_USER_ID,
    api_error,
    job_not_found,
    list_fields,
    parse_json_body,
    read_dialect,
    user_id,
)
from sfsync.emulator.bulk_csv import (
    DELIMITERS,
    LINE_ENDINGS,
    csv_value,
    decode_locator,
    encode_locator,
    write_rows,
)
from sfsync.emulator.bulk_engine import JOB_PREFIX, QUERY_ROW_BYTES, job_finished, now, sf_datetime, store_for
from sfsync.emulator.bulk_http import BulkRequest, BulkResponse, json_response, stream_response
from sfsync.emulator.errors import SfApiError
from sfsync.emulator.soql_parse import Call

_FINAL = ("JobComplete", "Failed", "Aborted")


@dataclass
class QueryJob:
    """One Bulk 2.0 query job with its result snapshot."""

    id: str
    operation: str
    object: str
    query: str
    line_ending: str
    column_delimiter: str
    api_version: str
    created_by: str
    created: datetime
    modstamp: datetime
    result: soql.QueryResult
    state: str = "UploadComplete"
    polls_left: int = 0
    processing_ms: int = 0
    error_message: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    job_type: str = "V2Query"
    retired: bool = False  # handed to the store's retention once final

    def info(self, *, full: bool) -> dict[str, Any]:
        """The job JSON (short form for create/PATCH, full for GET)."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": sf_datetime(self.created),
            "systemModstamp": sf_datetime(self.modstamp),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if full:
            out["jobType"] = self.job_type
            out["numberRecordsProcessed"] = self.result.total_size if self.state == "JobComplete" else 0
            out["retries"] = 0
            out["totalProcessingTime"] = self.processing_ms
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out

    def poll(self) -> str:
        """Advance the job as a status poll does and return the state to report."""
        with self.lock:
            if self.state == "UploadComplete":
                self.state = "InProgress"
                self.modstamp = now()
            if self.state == "InProgress":
                if self.polls_left > 0:
                    self.polls_left -= 1
                    return "InProgress"
                self.state = "Failed" if self.error_message else "JobComplete"
                self.modstamp = now()
            return self.state


def handle(org: Any, req: BulkRequest, rest: list[str]) -> BulkResponse:
    """Serve ``jobs/query[/{id}[/results]]``."""
    method = req.method
    if not rest:
        if method == "POST":
            return _create(org, req)
        if method == "GET":
            return list_jobs(org, req, ("V2Query",))
        return api_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET, POST")
    job = store_for(org).jobs.get(rest[0])
    if not isinstance(job, QueryJob):
        return job_not_found()
    if len(rest) == 1:
        if method == "GET":
            state = job.poll()
            body = job.info(full=True)
            body["state"] = state
            if state in _FINAL and not job.retired:
                job.retired = True
                job_finished(org, job.id, len(job.result.records) * QUERY_ROW_BYTES)
            return json_response(200, body)
        if method == "PATCH":
            return _abort(job, req)
        if method == "DELETE":
            if job.state not in _FINAL:
                return api_error(400, "INVALIDJOBSTATE", "Job can be deleted only when it is complete, aborted or failed")
            store_for(org).forget(job.id)
            return BulkResponse(204, [], [])
        return api_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET, PATCH, DELETE")
    if len(rest) == 2 and rest[1] == "results" and method == "GET":
        return _results(job, req)
    return api_error(404, "NOT_FOUND", "The requested resource does not exist")


def _create(org: Any, req: BulkRequest) -> BulkResponse:
    payload = parse_json_body(req)
    if isinstance(payload, BulkResponse):
        return payload
    operation = payload.get("operation")
    if operation not in ("query", "queryAll"):
        return api_error(400, "INVALIDJOB", f"Invalid operation for a query job: {operation}")
    text = payload.get("query")
    if not isinstance(text, str) or not text.strip():
        return api_error(400, "INVALIDJOB", "A query is required for a query job")
    if payload.get("contentType", "CSV") != "CSV":
        return api_error(400, "INVALIDJOB", f"Invalid contentType: {payload.get('contentType')}. Only CSV is supported")
    dialect = read_dialect(payload)
    if isinstance(dialect, BulkResponse):
        return dialect
    started = time.monotonic()
    try:
        parsed = soql.parse(text)
        if parsed.group_by or parsed.offset is not None or any(isinstance(i.expr, Call) for i in parsed.select):
            return api_error(
                400, "API_ERROR", "Aggregate queries, GROUP BY and OFFSET are not supported by the Bulk API"
            )
        result = soql.execute(org, text, include_deleted=operation == "queryAll")
    except SfApiError as exc:
        return api_error(exc.status, exc.code, exc.message)
    org.note_bulk_query_job()
    store = store_for(org)
    moment = now()
    job = QueryJob(
        id=store.new_id(JOB_PREFIX),
        operation=operation,
        object=result.sobject,
        query=text,
        line_ending=dialect[1],
        column_delimiter=dialect[0],
        api_version=req.api_version,
        created_by=user_id(org) or DEFAULT_USER_ID,
        created=moment,
        modstamp=moment,
        result=result,
        polls_left=org.faults.in_progress_polls(),
        processing_ms=int((time.monotonic() - started) * 1000),
    )
    job.error_message = org.faults.job_failure(job.object, operation)
    with store.lock:
        store.jobs[job.id] = job
    return json_response(200, job.info(full=False))


def _abort(job: QueryJob, req: BulkRequest) -> BulkResponse:
    payload = parse_json_body(req)
    if isinstance(payload, BulkResponse):
        return payload
    if payload.get("state") != "Aborted":
        return api_error(400, "INVALIDJOBSTATE", f"Invalid job state: {payload.get('state')}")
    with job.lock:
        if job.state in _FINAL:
            return api_error(409, "INVALIDJOBSTATE", f"Can't change job state from {job.state} to Aborted")
        job.state = "Aborted"
        job.modstamp = now()
        return json_response(200, job.info(full=False))


def _results(job: QueryJob, req: BulkRequest) -> BulkResponse:
    if job.state != "JobComplete":
        return api_error(
            400, "INVALIDJOBSTATE", f"Results are not available: job {job.id} is in state {job.state}, not JobComplete"
        )
    records = job.result.records
    start = 0
    locator = req.query.get("locator", "")
    if locator and locator != "null":
        decoded = decode_locator(locator)
        if decoded is None or decoded > len(records):
            return api_error(400, "INVALID_QUERY_LOCATOR", f"Invalid query locator: {locator}")
        start = decoded
    size = len(records) - start
    max_text = req.query.get("maxRecords", "")
    if max_text:
        if not max_text.isdigit() or int(max_text) <= 0:
            return api_error(400, "INVALIDPARAMETERVALUE", f"Invalid value for maxRecords: {max_text}")
        size = min(size, int(max_text))
    end = start + size
    next_locator = encode_locator(end) if end < len(records) else "null"
    fields = job.result.fields
    delim = DELIMITERS[job.column_delimiter]
    header = delim.join(f'"{name}"' for name in fields)
    pieces = write_rows(
        header, _flat(records[start:end], fields), delimiter=delim, line_ending=LINE_ENDINGS[job.line_ending]
    )
    extra = [("Sforce-NumberOfRecords", str(size)), ("Sforce-Locator", next_locator)]
    return stream_response(200, pieces, "text/csv", extra)


def _flat(records: Iterable[dict[str, Any]], fields: list[str]) -> Iterator[list[str]]:
    for record in records:
        yield [csv_value(v) for v in soql.flat_row(record, fields)]


def list_jobs(org: Any, req: BulkRequest, job_types: tuple[str, ...]) -> BulkResponse:
    """``GET jobs/ingest`` / ``GET jobs/query``: every job of those types, oldest first.

    Filters ``jobType`` and ``concurrencyMode`` as Salesforce accepts them.
    """
    wanted_type = req.query.get("jobType")
    wanted_mode = req.query.get("concurrencyMode")
    records = []
    for job in list(store_for(org).jobs.values()):
        if getattr(job, "job_type", None) not in job_types:
            continue
        summary = job.v2_summary() if hasattr(job, "v2_summary") else list_fields(job.info(full=True))
        if wanted_type and summary.get("jobType") != wanted_type:
            continue
        if wanted_mode and summary.get("concurrencyMode") != wanted_mode:
            continue
        records.append(summary)
    return json_response(200, {"done": True, "records": records, "nextRecordsUrl": None})
