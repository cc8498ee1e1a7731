"""Bulk API 1.0 jobs and batches: their state machines and how they run.

A job is Open until closed (or aborted); each batch goes Queued → InProgress →
Completed or Failed (NotProcessed when its job is aborted while it waits). Batches run
when a client first asks about them (job/batch status, batch list, results): every
batch still queued at that moment runs, one at a time in Serial mode, all together in
Parallel mode, where batches writing children of the same master contend for its lock
(the org's ``lock_contention`` fault decides who fails).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sfsync.emulator import soql
from sfsync.emulator.bulk1_format import Bulk1RequestError, parse_json_records, parse_xml_records
from sfsync.emulator.bulk_csv import CsvFormatError, decode_body, parse_upload
from sfsync.emulator.bulk_engine import (
    OUTCOME_ROW_BYTES,
    QUERY_OPERATIONS,
    QUERY_ROW_BYTES,
    RESULT_PREFIX,
    HeaderError,
    Outcomes,
    csv_records,
    job_finished,
    now,
    resolve_header,
    run_waves,
    sf_datetime,
    sf_datetime_z,
    store_for,
)
from sfsync.emulator.errors import DmlResult, SfApiError
from sfsync.emulator.soql_parse import Call
from sfsync.limits import BULK1_MAX_CHARS_PER_BATCH, BULK1_MAX_RECORDS_PER_BATCH


@dataclass
class Batch:
    """One Bulk 1.0 batch: what was sent and what became of it."""

    id: str
    job_id: str
    created: datetime
    modstamp: datetime
    request: bytes
    state: str = "Queued"
    state_message: str | None = None
    polls_left: int = 0
    outcomes: Outcomes = field(default_factory=Outcomes)
    query_result: soql.QueryResult | None = None
    result_id: str | None = None
    processing_ms: int = 0

    def info(self, *, xml: bool) -> dict[str, Any]:
        """batchInfo fields (timestamps in the dialect's form)."""
        stamp = sf_datetime_z if xml else sf_datetime
        processed = self.outcomes.processed
        if self.query_result is not None:
            processed = self.query_result.total_size
        return {
            "id": self.id,
            "jobId": self.job_id,
            "state": self.reported_state,
            "stateMessage": self.state_message,
            "createdDate": stamp(self.created),
            "systemModstamp": stamp(self.modstamp),
            "numberRecordsProcessed": processed,
            "numberRecordsFailed": self.outcomes.failed,
            "totalProcessingTime": self.processing_ms,
            "apiActiveProcessingTime": self.processing_ms,
            "apexProcessingTime": 0,
        }

    @property
    def reported_state(self) -> str:
        """InProgress while the fault knob holds the batch back, else the real state."""
        if self.state in ("Completed", "Failed") and self.polls_left > 0:
            return "InProgress"
        return self.state

    def note_poll(self) -> None:
        """One status poll went by (the in-progress fault counts these down)."""
        if self.state in ("Completed", "Failed") and self.polls_left > 0:
            self.polls_left -= 1


@dataclass
class Job:
    """One Bulk 1.0 job."""

    id: str
    operation: str
    object: str
    external_id: str | None
    concurrency: str
    content_type: str
    api_version: str
    created_by: str
    created: datetime
    modstamp: datetime
    state: str = "Open"
    failure: str | None = None
    batches: list[Batch] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    job_type: str = "Classic"
    retired: bool = False  # handed to the store's retention once closed and every batch done

    @property
    def is_query(self) -> bool:
        """True for query and queryAll jobs."""
        return self.operation in QUERY_OPERATIONS

    def info(self, *, xml: bool) -> dict[str, Any]:
        """jobInfo fields with batch and record counts (timestamps in the dialect's form)."""
        stamp = sf_datetime_z if xml else sf_datetime
        states = [b.reported_state for b in self.batches]
        processed = sum(b.info(xml=xml)["numberRecordsProcessed"] for b in self.batches)
        processing = sum(b.processing_ms for b in self.batches)
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": stamp(self.created),
            "systemModstamp": stamp(self.modstamp),
            "state": self.state,
            "externalIdFieldName": self.external_id,
            "concurrencyMode": self.concurrency,
            "contentType": self.content_type,
            "numberBatchesQueued": states.count("Queued"),
            "numberBatchesInProgress": states.count("InProgress"),
            "numberBatchesCompleted": states.count("Completed"),
            "numberBatchesFailed": states.count("Failed") + states.count("NotProcessed"),
            "numberBatchesTotal": len(states),
            "numberRecordsProcessed": processed,
            "numberRetries": 0,
            "apiVersion": float(self.api_version),
            "numberRecordsFailed": sum(b.outcomes.failed for b in self.batches),
            "totalProcessingTime": processing,
            "apiActiveProcessingTime": processing,
            "apexProcessingTime": 0,
        }

    def v2_summary(self) -> dict[str, Any]:
        """How ``GET /jobs/ingest`` lists this job (Bulk 1.0 jobs show as ``Classic``)."""
        info = self.info(xml=False)
        keys = ("id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state",
                "externalIdFieldName", "concurrencyMode", "contentType", "apiVersion")
        out = {k: info[k] for k in keys if info.get(k) is not None}
        out["jobType"] = self.job_type
        return out

    def batch(self, batch_id: str) -> Batch | None:
        """The batch with this id, if it belongs to this job."""
        return next((b for b in self.batches if b.id == batch_id), None)


# ------------------------------------------------------------------------------- running


def process(org: Any, job: Job) -> None:
    """Run every queued batch of ``job`` (Serial: one by one; Parallel: as one wave).

    A closed or aborted job whose batches are all done is handed to the store's retention.
    """
    _process(org, job)
    retire_if_done(org, job)


def retire_if_done(org: Any, job: Job) -> None:
    """Once a job is closed (or aborted) and no batch waits, the store counts what it keeps."""
    if job.retired or job.state not in ("Closed", "Aborted"):
        return
    if any(b.state in ("Queued", "InProgress") for b in job.batches):
        return
    job.retired = True
    kept = sum(len(b.request) + len(b.outcomes) * OUTCOME_ROW_BYTES
               + (len(b.query_result.records) * QUERY_ROW_BYTES if b.query_result is not None else 0)
               for b in job.batches)
    job_finished(org, job.id, kept)


def _process(org: Any, job: Job) -> None:
    if not any(b.state == "Queued" for b in job.batches):
        return
    with job.lock:
        pending = [b for b in job.batches if b.state == "Queued"]
        if not pending:
            return
        for batch in pending:
            batch.state = "InProgress"
        if job.is_query:
            for batch in pending:
                _timed(batch, lambda b=batch: _run_query(org, job, b))
            return
        ready: list[tuple[Batch, list[dict[str, object]]]] = []
        for batch in pending:
            records = _records(org, job, batch)
            if records is not None:
                ready.append((batch, records))
        parallel = 1 if job.concurrency == "Serial" else max(1, len(ready))
        started = time.monotonic()

        def sink(index: int, results: list[DmlResult]) -> None:
            batch = ready[index][0]
            batch.outcomes.add(results)
            batch.state = "Completed"
            batch.processing_ms = int((time.monotonic() - started) * 1000)
            batch.modstamp = now()

        run_waves(org, job.object, job.operation, job.external_id, "bulk1", (r for _, r in ready), parallel, sink)


def _timed(batch: Batch, work: Any) -> None:
    started = time.monotonic()
    work()
    batch.processing_ms = int((time.monotonic() - started) * 1000)
    batch.modstamp = now()


def _fail(batch: Batch, message: str) -> None:
    batch.state = "Failed"
    batch.state_message = message
    batch.modstamp = now()


def _records(org: Any, job: Job, batch: Batch) -> list[dict[str, object]] | None:
    """The batch's records, or None after failing the batch the way Salesforce would."""
    if job.failure:
        _fail(batch, job.failure)
        return None
    try:
        if len(batch.request) > BULK1_MAX_CHARS_PER_BATCH:
            raise CsvFormatError(f"InvalidBatch : Exceeded max size limit of {BULK1_MAX_CHARS_PER_BATCH}")
        if job.content_type == "CSV":
            # Parsed for this run only: the batch keeps its request bytes, not a decoded copy.
            upload = parse_upload(decode_body(batch.request), check_line_ending=False)
            names = resolve_header(org, job.object, upload.header)
            rows = list(upload.rows())
            records = csv_records(names, rows)
        elif job.content_type == "JSON":
            records = parse_json_records(batch.request)
        else:
            records = parse_xml_records(batch.request)
        if len(records) > BULK1_MAX_RECORDS_PER_BATCH:
            raise CsvFormatError(
                f"InvalidBatch : Exceeded number of records : {len(records)}. Number of records should be less "
                f"than or equal to {BULK1_MAX_RECORDS_PER_BATCH}"
            )
        if job.content_type != "CSV":
            resolve_header(org, job.object, sorted({k for r in records for k in r}))
    except (CsvFormatError, HeaderError) as exc:
        _fail(batch, str(exc))
        return None
    except Bulk1RequestError as exc:
        _fail(batch, f"{exc.code} : {exc.message}")
        return None
    return records


def _run_query(org: Any, job: Job, batch: Batch) -> None:
    if job.failure:
        _fail(batch, job.failure)
        return
    text = batch.request.decode("utf-8", errors="replace")
    try:
        parsed = soql.parse(text)
        if parsed.group_by or parsed.offset is not None or any(isinstance(i.expr, Call) for i in parsed.select):
            _fail(batch, "InvalidBatch : Failed to process query: FUNCTIONALITY_NOT_ENABLED: Aggregate queries "
                         "are not supported by the Bulk API")
            return
        if parsed.sobject.lower() != job.object.lower():
            _fail(batch, f"InvalidBatch : Failed to process query: INVALID_TYPE: the query is on {parsed.sobject}, "
                         f"the job is on {job.object}")
            return
        result = soql.execute(org, text, include_deleted=job.operation == "queryAll")
    except SfApiError as exc:
        _fail(batch, f"InvalidBatch : Failed to process query: {exc.code}: {exc.message}")
        return
    batch.query_result = result
    batch.result_id = store_for(org).new_id(RESULT_PREFIX)
    batch.state = "Completed"
