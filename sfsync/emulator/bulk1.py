"""Bulk API 1.0: ``/services/async/XX.X/job...`` in its XML and JSON dialects.

The router (``sfsync.emulator.app``) checks ``X-SFDC-Session`` and answers Bulk 1.0's own
``InvalidSessionId`` form; this module serves jobs, batches and results. Responses carry
Content-Type exactly ``application/xml``, ``application/json`` or ``text/csv`` (no charset)
because salesforce-bulk compares the header as a string. Job and batch state machines
and the way batches run are in :mod:`.bulk1_jobs`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sfsync.emulator.bulk1_format import (
    BATCH_FIELDS,
    CT_CSV,
    CT_JSON,
    CT_XML,
    JOB_FIELDS,
    Bulk1RequestError,
    batch_list_xml,
    batch_xml,
    dml_results_xml,
    error_body,
    job_xml,
    json_info,
    parse_job_request,
    query_records_json,
    query_records_xml,
    result_list_xml,
)
from sfsync.emulator.bulk1_jobs import Batch, Job, process, retire_if_done
from sfsync.emulator.bulk2_common import DEFAULT_USER_ID, user_id
from sfsync.emulator.bulk_csv import csv_value, header_line, write_rows
from sfsync.emulator.bulk_engine import (
    BATCH_PREFIX,
    INGEST_OPERATIONS,
    JOB_PREFIX,
    QUERY_OPERATIONS,
    Outcomes,
    external_id_name,
    note_batches,
    now,
    object_name,
    store_for,
)
from sfsync.emulator.bulk_http import (
    BodyTooLarge,
    BulkRequest,
    BulkResponse,
    mount,
    stream_response,
    text_response,
)
from sfsync.emulator.soql import flat_row
from sfsync.limits import BULK1_MAX_BYTES_PER_BATCH

_CONTENT_TYPES = {"CSV": CT_CSV, "JSON": CT_JSON, "XML": CT_XML}
_NO_RECORDS = "Records not found for this query"


def _dialect(req: BulkRequest, job: Job | None = None) -> str:
    """``json`` or ``xml``: what the client speaks (its Content-Type, else the job's type)."""
    media = req.media_type
    if media == CT_JSON or CT_JSON in req.header("accept"):
        return "json"
    if media in (CT_XML, "text/xml") or job is None:
        return "xml"
    return "json" if job.content_type == "JSON" else "xml"


def _error(req: BulkRequest, exc: Bulk1RequestError, job: Job | None = None) -> BulkResponse:
    dialect = _dialect(req, job)
    body = error_body(exc.code, exc.message, dialect)
    return text_response(exc.status, body, CT_JSON if dialect == "json" else CT_XML)


def _info_response(status: int, req: BulkRequest, job: Job, info: dict[str, Any], kind: str) -> BulkResponse:
    if _dialect(req, job) == "json":
        return text_response(status, json_info(JOB_FIELDS if kind == "job" else BATCH_FIELDS, info), CT_JSON)
    return text_response(status, job_xml(info) if kind == "job" else batch_xml(info), CT_XML)


# ---------------------------------------------------------------------------- routing


def handle(org: Any, req: BulkRequest) -> BulkResponse:
    """Serve one request below ``/services/async/XX.X/``.

    Args:
        org: The emulated org.
        req: The request; ``req.path`` starts with ``job``.

    Returns:
        The response; request-level problems come back as ``<error>`` documents (or
        their JSON form) with the status Salesforce uses.
    """
    parts = [p for p in req.path.split("/") if p]
    try:
        return _route(org, req, parts)
    except Bulk1RequestError as exc:
        job = store_for(org).jobs.get(parts[1]) if len(parts) > 1 else None
        return _error(req, exc, job if isinstance(job, Job) else None)


def _route(org: Any, req: BulkRequest, parts: list[str]) -> BulkResponse:
    method = req.method
    if parts == ["job"]:
        if method != "POST":
            raise Bulk1RequestError("InvalidUrl", f"HTTP method {method} is not supported on this resource", 405)
        return _create_job(org, req)
    if len(parts) < 2 or parts[0] != "job":
        raise Bulk1RequestError("InvalidUrl", "unknown resource", 404)
    job = store_for(org).jobs.get(parts[1])
    if not isinstance(job, Job):
        raise Bulk1RequestError("InvalidJob", f"Invalid job id: {parts[1]}")
    rest = parts[2:]
    if not rest:
        if method == "GET":
            process(org, job)
            return _info_response(200, req, job, job.info(xml=_dialect(req, job) == "xml"), "job")
        if method == "POST":
            return _change_job(org, req, job)
        raise Bulk1RequestError("InvalidUrl", f"HTTP method {method} is not supported on this resource", 405)
    if rest[0] != "batch":
        raise Bulk1RequestError("InvalidUrl", "unknown resource", 404)
    if len(rest) == 1:
        if method == "POST":
            return _add_batch(org, req, job)
        if method == "GET":
            return _list_batches(org, req, job)
        raise Bulk1RequestError("InvalidUrl", f"HTTP method {method} is not supported on this resource", 405)
    batch = job.batch(rest[1])
    if batch is None:
        raise Bulk1RequestError("InvalidBatch", f"Invalid batch id: {rest[1]}")
    if method != "GET":
        raise Bulk1RequestError("InvalidUrl", f"HTTP method {method} is not supported on this resource", 405)
    process(org, job)
    tail = rest[2:]
    if not tail:
        info = batch.info(xml=_dialect(req, job) == "xml")
        batch.note_poll()
        return _info_response(200, req, job, info, "batch")
    if tail == ["request"]:
        return BulkResponse(200, [("Content-Type", _CONTENT_TYPES[job.content_type])], [batch.request])
    if tail[0] == "result":
        if batch.reported_state != "Completed":
            raise Bulk1RequestError("InvalidBatch", f"Batch not completed: {batch.id} is {batch.reported_state}")
        if len(tail) == 1:
            return _query_result_list(req, job, batch) if job.is_query else _dml_results(job, batch)
        if len(tail) == 2 and job.is_query and tail[1] == batch.result_id:
            return _query_results(job, batch)
        raise Bulk1RequestError("InvalidBatch", f"Invalid result id: {tail[-1]}")
    raise Bulk1RequestError("InvalidUrl", "unknown resource", 404)


# ------------------------------------------------------------------------ job control


def _create_job(org: Any, req: BulkRequest) -> BulkResponse:
    dialect = _dialect(req)
    spec = parse_job_request(req.body(1 << 20), dialect)
    operation = spec.get("operation", "")
    if operation not in INGEST_OPERATIONS + QUERY_OPERATIONS:
        raise Bulk1RequestError("InvalidJob", f"Invalid operation: {operation}")
    sobject = spec.get("object", "")
    canonical = object_name(org, sobject) if sobject else None
    if canonical is None:
        raise Bulk1RequestError("InvalidJob", f"Unable to find object: {sobject}")
    content_type = spec.get("contentType") or ("JSON" if dialect == "json" else "XML")
    if content_type not in _CONTENT_TYPES:
        raise Bulk1RequestError("InvalidJob", f"Invalid contentType: {content_type}")
    concurrency = spec.get("concurrencyMode") or "Parallel"
    if concurrency not in ("Parallel", "Serial"):
        raise Bulk1RequestError("InvalidJob", f"Invalid concurrencyMode: {concurrency}")
    external_id = None
    if operation == "upsert":
        ext = spec.get("externalIdFieldName")
        if not ext:
            raise Bulk1RequestError(
                "InvalidJob", f"External ID was blank for {canonical}. An External ID must be specified for upsert."
            )
        external_id = external_id_name(org, canonical, ext)
        if external_id is None:
            raise Bulk1RequestError(
                "InvalidJob",
                f"Field name provided, {ext} does not match an External ID, Salesforce Id, or indexed field "
                f"for {canonical}",
            )
    store = store_for(org)
    moment = now()
    job = Job(
        id=store.new_id(JOB_PREFIX),
        operation=operation,
        object=canonical,
        external_id=external_id,
        concurrency=concurrency,
        content_type=content_type,
        api_version=req.api_version,
        created_by=user_id(org) or DEFAULT_USER_ID,
        created=moment,
        modstamp=moment,
        failure=org.faults.job_failure(canonical, operation),
    )
    with store.lock:
        store.jobs[job.id] = job
    return _info_response(201, req, job, job.info(xml=dialect == "xml"), "job")


def _change_job(org: Any, req: BulkRequest, job: Job) -> BulkResponse:
    spec = parse_job_request(req.body(1 << 20), _dialect(req, job))
    target = spec.get("state")
    with job.lock:
        if target == "Closed":
            if job.state != "Open":
                raise Bulk1RequestError("InvalidJobState", f"Job {job.id} is not open: {job.state}")
            job.state = "Closed"
        elif target == "Aborted":
            if job.state == "Aborted":
                raise Bulk1RequestError("InvalidJobState", f"Job {job.id} is already aborted")
            job.state = "Aborted"
            for batch in job.batches:
                if batch.state == "Queued":
                    batch.state = "NotProcessed"
                    batch.modstamp = now()
        else:
            raise Bulk1RequestError("InvalidJob", f"Invalid state: {target}")
        job.modstamp = now()
    if job.state == "Closed":
        process(org, job)
    else:
        retire_if_done(org, job)
    return _info_response(200, req, job, job.info(xml=_dialect(req, job) == "xml"), "job")


def _add_batch(org: Any, req: BulkRequest, job: Job) -> BulkResponse:
    expected = _CONTENT_TYPES[job.content_type]
    if req.media_type != expected:
        raise Bulk1RequestError(
            "InvalidBatch", f"Content type {req.media_type or 'missing'} does not match the job's content type {expected}"
        )
    try:
        data = req.body(BULK1_MAX_BYTES_PER_BATCH)
    except BodyTooLarge:
        raise Bulk1RequestError(
            "InvalidBatch", f"Exceeded max size limit of {BULK1_MAX_BYTES_PER_BATCH} bytes", 400
        ) from None
    store = store_for(org)
    with job.lock:
        if job.state != "Open":
            raise Bulk1RequestError("InvalidJobState", f"Job {job.id} is not open: {job.state}")
        moment = now()
        batch = Batch(
            id=store.new_id(BATCH_PREFIX),
            job_id=job.id,
            created=moment,
            modstamp=moment,
            request=data,
            polls_left=org.faults.in_progress_polls(),
        )
        job.batches.append(batch)
        job.modstamp = moment
    note_batches(org, 1)
    info = batch.info(xml=_dialect(req, job) == "xml")
    return _info_response(201, req, job, info, "batch")


def _list_batches(org: Any, req: BulkRequest, job: Job) -> BulkResponse:
    process(org, job)
    xml = _dialect(req, job) == "xml"
    infos = [b.info(xml=xml) for b in job.batches]
    if xml:
        return text_response(200, batch_list_xml(infos), CT_XML)
    listed = [{n: i[n] for n in BATCH_FIELDS if i.get(n) is not None} for i in infos]
    return stream_response(200, [_json({"batchInfo": listed})], CT_JSON)


def _json(data: Any) -> str:
    return json.dumps(data)


# ---------------------------------------------------------------------------- results


def _dml_results(job: Job, batch: Batch) -> BulkResponse:
    outcomes = batch.outcomes
    rows = range(len(outcomes))
    if job.content_type == "CSV":
        head = header_line(["Id", "Success", "Created", "Error"], ",", quote=True)
        pieces = write_rows(head, (_csv_result(outcomes, i) for i in rows))
        return stream_response(200, pieces, CT_CSV)
    if job.content_type == "JSON":
        return stream_response(200, [_json([_json_result(outcomes, i) for i in rows])], CT_JSON)
    return stream_response(200, dml_results_xml(_xml_result(outcomes, i) for i in rows), CT_XML)


def _csv_result(outcomes: Outcomes, index: int) -> list[str]:
    flag = outcomes.flags[index]
    return [
        outcomes.ids[index] or "",
        "true" if flag & Outcomes.SUCCESS else "false",
        "true" if flag & Outcomes.CREATED else "false",
        outcomes.error_text(index),
    ]


def _json_result(outcomes: Outcomes, index: int) -> dict[str, Any]:
    flag = outcomes.flags[index]
    return {
        "success": bool(flag & Outcomes.SUCCESS),
        "created": bool(flag & Outcomes.CREATED),
        "id": outcomes.ids[index],
        "errors": [
            {"statusCode": code, "message": message, "fields": fields}
            for code, message, fields in outcomes.error_tuples(index)
        ],
    }


def _xml_result(outcomes: Outcomes, index: int) -> tuple[str | None, bool, bool, list[tuple[str, str, list[str]]]]:
    flag = outcomes.flags[index]
    return (
        outcomes.ids[index],
        bool(flag & Outcomes.SUCCESS),
        bool(flag & Outcomes.CREATED),
        outcomes.error_tuples(index),
    )


def _query_result_list(req: BulkRequest, job: Job, batch: Batch) -> BulkResponse:
    ids = [batch.result_id] if batch.result_id else []
    if _dialect(req, job) == "json" or job.content_type == "JSON":
        return text_response(200, _json(ids), CT_JSON)
    return text_response(200, result_list_xml(ids), CT_XML)


def _query_results(job: Job, batch: Batch) -> BulkResponse:
    result = batch.query_result
    assert result is not None
    records = result.records
    if job.content_type == "JSON":
        return stream_response(200, query_records_json(records), CT_JSON)
    if job.content_type == "XML":
        return stream_response(200, query_records_xml(records), CT_XML)
    if not records:
        return text_response(200, _NO_RECORDS, CT_CSV)
    head = header_line(result.fields, ",", quote=True)
    return stream_response(200, write_rows(head, _flat(records, result.fields)), CT_CSV)


def _flat(records: list[dict[str, Any]], fields: list[str]) -> Iterator[list[str]]:
    for record in records:
        yield [csv_value(v) for v in flat_row(record, fields)]


#: (methods, pattern, handler, auth, kind), the tuple form of ``app.Route``: the router
#: checks ``X-SFDC-Session`` (Bulk 1.0's own InvalidSessionId form) and counts ``bulk1``.
ROUTES = [
    ("*", r"/services/async/(?P<version>\d+\.\d)/(?P<path>job(?:/.*)?)", mount(handle), "bulk1", "bulk1"),
]
