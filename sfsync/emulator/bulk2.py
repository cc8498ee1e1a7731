"""Bulk API 2.0 ingest jobs: ``/services/data/vXX.X/jobs/ingest``.

Lifecycle, as Salesforce runs it: ``POST ingest`` (Open) → one ``PUT ingest/{id}/batches``
with CSV (201) → ``PATCH {"state": "UploadComplete"}`` → the job runs in 10,000-record
internal batches → ``JobComplete`` (or ``Failed`` with ``errorMessage``) → results as
CSV: ``successfulResults``, ``failedResults``, ``unprocessedrecords``.

The job runs when a client first polls it after UploadComplete (see
:mod:`.bulk_engine`). Query jobs live in :mod:`.bulk2_query`; :func:`handle` routes both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sfsync.emulator import bulk2_query
from sfsync.emulator.bulk2_common import (
    DEFAULT_USER_ID,
    api_error,
    job_not_found,
    parse_json_body,
    read_dialect,
    user_id,
)
from sfsync.emulator.bulk_csv import (
    DELIMITERS,
    LINE_ENDINGS,
    CsvFormatError,
    CsvUpload,
    decode_body,
    header_line,
    parse_upload,
    write_rows,
)
from sfsync.emulator.bulk_engine import (
    INGEST_OPERATIONS,
    JOB_PREFIX,
    OUTCOME_ROW_BYTES,
    HeaderError,
    Outcomes,
    csv_records,
    external_id_name,
    job_finished,
    note_batches,
    now,
    object_name,
    resolve_header,
    run_waves,
    sf_datetime,
    store_for,
)
from sfsync.emulator.bulk_http import (
    BodyTooLarge,
    BulkRequest,
    BulkResponse,
    json_response,
    mount,
    stream_response,
)
from sfsync.limits import BULK2_INTERNAL_BATCH, BULK2_MAX_UPLOAD_BYTES

#: Bulk 2.0 internal batches that Salesforce runs at once (what contends for parent locks).
PARALLEL_BATCHES = 4
_FINAL = ("JobComplete", "Failed", "Aborted")


@dataclass
class IngestJob:
    """One Bulk 2.0 ingest job and everything needed to answer about it."""

    id: str
    operation: str
    object: str
    external_id: str | None
    line_ending: str
    column_delimiter: str
    api_version: str
    created_by: str
    created: datetime
    modstamp: datetime
    state: str = "Open"
    data: bytes | None = None  # the uploaded bytes, until they are parsed into ``upload``
    upload: CsvUpload | None = None
    outcomes: Outcomes = field(default_factory=Outcomes)
    error_message: str | None = None
    polls_left: int = 0
    processing_ms: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    job_type: str = "V2Ingest"

    def touch(self) -> None:
        """Move systemModstamp, as every state change does."""
        self.modstamp = now()

    def info(self, *, full: bool) -> dict[str, Any]:
        """The job JSON: the short form (create/PATCH) or the full one (GET)."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": sf_datetime(self.created),
            "systemModstamp": sf_datetime(self.modstamp),
            "state": self.state,
        }
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        out.update(concurrencyMode="Parallel", contentType="CSV", apiVersion=float(self.api_version))
        if self.state == "Open":
            out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        out.update(lineEnding=self.line_ending, columnDelimiter=self.column_delimiter)
        if full:
            out["jobType"] = self.job_type
            out["numberRecordsProcessed"] = self.outcomes.processed
            out["numberRecordsFailed"] = self.outcomes.failed
            out["retries"] = 0
            out["totalProcessingTime"] = self.processing_ms
            out["apiActiveProcessingTime"] = self.processing_ms
            out["apexProcessingTime"] = 0
            if self.error_message:
                out["errorMessage"] = self.error_message
        return out

    def visible_state(self) -> str:
        """The state a poll reports: InProgress while the fault knob asks for more polls."""
        if self.state in ("JobComplete", "Failed") and self.polls_left > 0:
            self.polls_left -= 1
            return "InProgress"
        return self.state


# ---------------------------------------------------------------------------- routing


def handle(org: Any, req: BulkRequest) -> BulkResponse:
    """Serve one request below ``/services/data/vXX.X/jobs/``.

    Args:
        org: The emulated org.
        req: The request; ``req.path`` starts with ``ingest`` or ``query``.

    Returns:
        The response, with Salesforce's status codes and error bodies.
    """
    parts = [p for p in req.path.split("/") if p]
    if not parts or parts[0] not in ("ingest", "query"):
        return api_error(404, "NOT_FOUND", "The requested resource does not exist")
    if parts[0] == "query":
        return bulk2_query.handle(org, req, parts[1:])
    rest = parts[1:]
    method = req.method
    if not rest:
        if method == "POST":
            return _create(org, req)
        if method == "GET":
            return bulk2_query.list_jobs(org, req, ("V2Ingest", "Classic"))
        return _method_not_allowed(method, "GET, POST")
    job = store_for(org).jobs.get(rest[0])
    if not isinstance(job, IngestJob):
        return job_not_found()
    if len(rest) == 1:
        if method == "GET":
            _process(org, job)
            body = job.info(full=True)
            body["state"] = job.visible_state()
            return json_response(200, body)
        if method == "PATCH":
            return _set_state(org, job, req)
        if method == "DELETE":
            return _delete(org, job)
        return _method_not_allowed(method, "GET, PATCH, DELETE")
    if len(rest) == 2:
        resource = rest[1].lower()
        if resource == "batches":
            return _upload(org, job, req) if method == "PUT" else _method_not_allowed(method, "PUT")
        if method != "GET":
            return _method_not_allowed(method, "GET")
        if resource in ("successfulresults", "failedresults", "unprocessedrecords"):
            _process(org, job)
            return _results(job, resource)
    return api_error(404, "NOT_FOUND", "The requested resource does not exist")


def _method_not_allowed(method: str, allowed: str) -> BulkResponse:
    return api_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}")


# ------------------------------------------------------------------------ job control


def _create(org: Any, req: BulkRequest) -> BulkResponse:
    payload = parse_json_body(req)
    if isinstance(payload, BulkResponse):
        return payload
    operation = payload.get("operation")
    if operation not in INGEST_OPERATIONS:
        if operation in ("query", "queryAll"):
            return api_error(400, "INVALIDJOB", f"Operation {operation} is only valid for query jobs")
        return api_error(400, "INVALIDJOB", f"Invalid operation: {operation}")
    sobject = payload.get("object")
    if not isinstance(sobject, str) or not sobject:
        return api_error(400, "INVALIDJOB", "Object is required")
    canonical = object_name(org, sobject)
    if canonical is None:
        return api_error(400, "INVALIDJOB", f"Unable to find object: {sobject}")
    content_type = payload.get("contentType", "CSV")
    if content_type != "CSV":
        return api_error(400, "INVALIDJOB", f"Invalid contentType: {content_type}. Only CSV is supported")
    dialect = read_dialect(payload)
    if isinstance(dialect, BulkResponse):
        return dialect
    external_id = None
    if operation == "upsert":
        ext = payload.get("externalIdFieldName")
        if not ext:
            return api_error(
                400,
                "INVALIDJOB",
                f"External ID was blank for {canonical}. An External ID must be specified for upsert.",
            )
        external_id = external_id_name(org, canonical, str(ext))
        if external_id is None:
            return api_error(
                400,
                "INVALIDJOB",
                f"Field name provided, {ext} does not match an External ID, Salesforce Id, or indexed field "
                f"for {canonical}",
            )
    store = store_for(org)
    moment = now()
    job = IngestJob(
        id=store.new_id(JOB_PREFIX),
        operation=operation,
        object=canonical,
        external_id=external_id,
        line_ending=dialect[1],
        column_delimiter=dialect[0],
        api_version=req.api_version,
        created_by=user_id(org) or DEFAULT_USER_ID,
        created=moment,
        modstamp=moment,
    )
    with store.lock:
        store.jobs[job.id] = job
    return json_response(200, job.info(full=False))


def _set_state(org: Any, job: IngestJob, req: BulkRequest) -> BulkResponse:
    payload = parse_json_body(req)
    if isinstance(payload, BulkResponse):
        return payload
    target = payload.get("state")
    with job.lock:
        if target == "UploadComplete":
            if job.state != "Open":
                return api_error(409, "INVALIDJOBSTATE", f"Can't change job state from {job.state} to UploadComplete")
            job.state = "UploadComplete"
        elif target == "Aborted":
            if job.state in _FINAL:
                return api_error(409, "INVALIDJOBSTATE", f"Can't change job state from {job.state} to Aborted")
            job.state = "Aborted"
        else:
            return api_error(400, "INVALIDJOBSTATE", f"Invalid job state: {target}")
        job.touch()
        body = json_response(200, job.info(full=False))
    if job.state == "Aborted":
        job_finished(org, job.id, _retained(job))
    return body


def _delete(org: Any, job: IngestJob) -> BulkResponse:
    if job.state in ("Open", "InProgress"):
        return api_error(
            400, "INVALIDJOBSTATE", "Job can be deleted only in UploadComplete, JobComplete, Aborted or Failed state"
        )
    store_for(org).forget(job.id)
    return BulkResponse(204, [], [])


def _upload(org: Any, job: IngestJob, req: BulkRequest) -> BulkResponse:
    if req.media_type != "text/csv":
        return api_error(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type header specified in HTTP request is not supported: {req.media_type}"
        )
    try:
        data = req.body(BULK2_MAX_UPLOAD_BYTES)
    except BodyTooLarge:
        return api_error(
            413,
            "EXCEEDED_MAX_SIZE_REQUEST",
            f"Request size exceeds the maximum allowed upload size of {BULK2_MAX_UPLOAD_BYTES} bytes",
        )
    with job.lock:
        if job.state != "Open":
            return api_error(409, "INVALIDJOBSTATE", f"Job with id {job.id} is not in the Open state: {job.state}")
        if job.data is not None:
            return api_error(
                400,
                "BULK_API_ERROR",
                f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the current Job "
                "then create a new Job and make sure you only do 'PUT' once on a given Job.",
            )
        job.data = data
        job.touch()
    return BulkResponse(201, [], [])


# ------------------------------------------------------------------------- processing


def _process(org: Any, job: IngestJob) -> None:
    """Run the job if it is ready and has not run yet (idempotent, thread-safe)."""
    if job.state != "UploadComplete":
        return
    with job.lock:
        if job.state != "UploadComplete":
            return
        started = time.monotonic()
        job.state = "InProgress"
        job.polls_left = org.faults.in_progress_polls()
        try:
            _run(org, job)
        finally:
            job.processing_ms = int((time.monotonic() - started) * 1000)
            job.touch()
    job_finished(org, job.id, _retained(job))


def _retained(job: IngestJob) -> int:
    """What a finished job keeps: its upload (echoed in the results) and per-row outcomes."""
    text = len(job.upload.text) if job.upload is not None else len(job.data or b"")
    return text + len(job.outcomes) * OUTCOME_ROW_BYTES


def _run(org: Any, job: IngestJob) -> None:
    failure = org.faults.job_failure(job.object, job.operation)
    try:
        text = decode_body(job.data or b"")
        if not text.strip():
            raise CsvFormatError("InvalidBatch : Failed to parse CSV header. The CSV data is empty")
        job.upload = parse_upload(
            text, delimiter=DELIMITERS[job.column_delimiter], line_ending=LINE_ENDINGS[job.line_ending]
        )
        job.data = None  # the upload holds the text now: no second copy for the life of the job
        if failure:
            raise CsvFormatError(failure)
        names = resolve_header(org, job.object, job.upload.header)
    except (CsvFormatError, HeaderError) as exc:
        job.state = "Failed"
        job.error_message = str(exc)
        return
    upload = job.upload
    note_batches(org, -(-upload.row_count // BULK2_INTERNAL_BATCH))
    batches = (csv_records(names, rows) for rows in upload.chunks(BULK2_INTERNAL_BATCH))
    outcomes = job.outcomes
    run_waves(
        org,
        job.object,
        job.operation,
        job.external_id,
        "bulk2",
        batches,
        PARALLEL_BATCHES,
        lambda _index, results: outcomes.add(results),
    )
    job.state = "JobComplete"


# ---------------------------------------------------------------------------- results


def _results(job: IngestJob, resource: str) -> BulkResponse:
    upload = job.upload
    if upload is None and job.data:
        # Aborted before it ran: the columns still head the (empty) result files.
        try:
            upload = job.upload = parse_upload(
                decode_body(job.data), delimiter=DELIMITERS[job.column_delimiter], check_line_ending=False
            )
        except CsvFormatError:
            upload = None
    delim = DELIMITERS[job.column_delimiter]
    eol = LINE_ENDINGS[job.line_ending]
    original = header_line(upload.header, delim, quote=False) if upload is not None else ""
    if resource == "unprocessedrecords":
        if upload is None and job.data is not None:
            # The data never parsed: hand it back as it came.
            return stream_response(200, [job.data], "text/csv")
        pieces = write_rows(original, _unprocessed_rows(job), delimiter=delim, line_ending=eol) if upload else []
        return stream_response(200, pieces, "text/csv")
    second = "sf__Created" if resource == "successfulresults" else "sf__Error"
    head = delim.join(('"sf__Id"', f'"{second}"')) + (delim + original if original else "")
    rows = _success_rows(job) if resource == "successfulresults" else _failure_rows(job)
    return stream_response(200, write_rows(head, rows, delimiter=delim, line_ending=eol), "text/csv")


def _success_rows(job: IngestJob) -> Iterator[list[str]]:
    if job.upload is None:
        return
    outcomes = job.outcomes
    flags, ids = outcomes.flags, outcomes.ids
    limit = len(flags)
    for index, row in enumerate(job.upload.rows()):
        if index >= limit:
            return
        flag = flags[index]
        if flag & Outcomes.SUCCESS:
            yield [ids[index] or "", "true" if flag & Outcomes.CREATED else "false", *row]


def _failure_rows(job: IngestJob) -> Iterator[list[str]]:
    if job.upload is None or not job.outcomes.failed:
        return
    outcomes = job.outcomes
    flags, ids = outcomes.flags, outcomes.ids
    limit = len(flags)
    for index, row in enumerate(job.upload.rows()):
        if index >= limit:
            return
        if flags[index] == Outcomes.PROCESSED:
            yield [ids[index] or "", outcomes.error_text(index), *row]


def _unprocessed_rows(job: IngestJob) -> Iterator[list[str]]:
    if job.upload is None:
        return
    flags = job.outcomes.flags
    limit = len(flags)
    for index, row in enumerate(job.upload.rows()):
        if index >= limit or not flags[index]:
            yield row


#: Mounted by the emulator's router (see :mod:`sfsync.emulator.app`); the router checks
#: the Bearer session and counts each call as ``bulk2``.
#: (methods, pattern, handler, auth, kind), the tuple form of ``app.Route``.
ROUTES = [
    ("*", r"/services/data/v(?P<version>\d+\.\d)/jobs/(?P<path>(?:ingest|query)(?:/.*)?)", mount(handle), "rest", "bulk2"),
]
