"""sObject Collections: ``composite/sobjects`` create/update/delete/retrieve and upsert by
external ID, up to 200 records per call, one result per record in order, ``allOrNone``.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from werkzeug.wrappers import Request, Response

from sfsync.emulator.errors import DmlResult, SfApiError, SfError
from sfsync.emulator.http import json_response, read_json
from sfsync.emulator.ids import normalize_id
from sfsync.emulator.org import Org
from sfsync.limits import MAX_REST_COLLECTION

_ROLLED_BACK = SfError("ALL_OR_NONE_OPERATION_ROLLED_BACK",
                       "Record rolled back because not all records were valid and the request was using AllOrNone header")


def _result_json(result: DmlResult, with_created: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": result.id, "success": result.success}
    if result.success or with_created:
        if with_created and result.success:
            out["created"] = result.created
    out["errors"] = [e.to_rest() for e in result.errors]
    return out


def _body(request: Request) -> tuple[list[Any], bool]:
    media = request.mimetype
    if media and media != "application/json":
        raise SfApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content type '{media}' not supported")
    body = read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SfApiError(400, "JSON_PARSER_ERROR", "Expected an object with a 'records' array")
    records = body["records"]
    if len(records) > MAX_REST_COLLECTION:
        raise SfApiError(400, "EXCEEDED_ID_LIMIT",
                         f"record limit reached. cannot submit more than {MAX_REST_COLLECTION} records into this call")
    return records, bool(body.get("allOrNone", False))


def _type_of(rec: Any, default: str | None) -> str:
    if not isinstance(rec, dict):
        raise SfApiError(400, "JSON_PARSER_ERROR", "Each element of 'records' must be an object")
    attrs = rec.get("attributes")
    sobject = attrs.get("type") if isinstance(attrs, dict) else None
    if not sobject and default is None:
        raise SfApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
    return str(sobject or default)


def _run(org: Org, records: list[Any], operation: str, all_or_none: bool, default_type: str | None = None,
         external_id: str | None = None) -> list[DmlResult]:
    from sfsync.emulator.rest import rows_from_body

    typed = [(_type_of(r, default_type), rows_from_body(r)) for r in records]
    results: list[DmlResult] = []
    with org.lock:
        # Consecutive records of one type go in one call; with allOrNone and several types,
        # a failing group rolls back the groups after it but not the ones already applied
        # (documented difference: the emulator has no cross-object transaction).
        for sobject, group in groupby(typed, key=lambda t: t[0]):
            rows = [row for _, row in group]
            if all_or_none and any(not r.success for r in results):
                results.extend(DmlResult(None, False, False, [_ROLLED_BACK]) for _ in rows)
                continue
            results.extend(org.dml(sobject, operation, rows, external_id, all_or_none=all_or_none))
    return results


def collections(request: Request, org: Org, version: str) -> Response:
    """``POST`` (create), ``PATCH`` (update), ``DELETE`` (``?ids=`` delete) ``composite/sobjects``."""
    if request.method == "DELETE":
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids:
            raise SfApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > MAX_REST_COLLECTION:
            raise SfApiError(400, "EXCEEDED_ID_LIMIT",
                             f"record limit reached. cannot submit more than {MAX_REST_COLLECTION} records into this call")
        all_or_none = request.args.get("allOrNone", "false").lower() == "true"
        prefix_obj = org.schema.by_prefix((normalize_id(ids[0]) or "xxx")[:3])
        results = org.dml(prefix_obj.name if prefix_obj else "Account", "delete", [{"Id": i} for i in ids],
                          all_or_none=all_or_none)
        return json_response([_result_json(r, False) for r in results])
    records, all_or_none = _body(request)
    operation = "insert" if request.method == "POST" else "update"
    results = _run(org, records, operation, all_or_none)
    return json_response([_result_json(r, False) for r in results])


def collections_upsert(request: Request, org: Org, version: str, sobject: str, field: str) -> Response:
    """``PATCH composite/sobjects/{Obj}/{ExtField}``: upsert up to 200 records."""
    obj = org.schema.get(sobject)
    records, all_or_none = _body(request)
    results = _run(org, records, "upsert", all_or_none, default_type=obj.name, external_id=field)
    return json_response([_result_json(r, True) for r in results])


def collections_retrieve(request: Request, org: Org, version: str, sobject: str) -> Response:
    """``GET composite/sobjects/{Obj}?ids=&fields=``: records in order, null when missing."""
    from sfsync.emulator.rest import record_json

    obj = org.schema.get(sobject)
    ids = [i for i in request.args.get("ids", "").split(",") if i]
    fields = [f.strip() for f in request.args.get("fields", "").split(",") if f.strip()]
    if not ids or not fields:
        raise SfApiError(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
    for name in fields:
        org.schema.field(obj.name, name)
    out: list[Any] = []
    for raw in ids:
        rid = normalize_id(raw)
        rec = org.get(obj.name, rid) if rid else None
        out.append(record_json(org, obj.name, rec, version, fields) if rec else None)
    return json_response(out)


_V = r"/services/data/v(?P<version>\d+\.\d)"
ROUTES: list[tuple[Any, ...]] = [
    ("POST,PATCH,DELETE", _V + r"/composite/sobjects/?", collections),
    ("PATCH", _V + r"/composite/sobjects/(?P<sobject>[A-Za-z][A-Za-z0-9_]*)/(?P<field>[A-Za-z][A-Za-z0-9_]*)/?",
     collections_upsert),
    ("GET", _V + r"/composite/sobjects/(?P<sobject>[A-Za-z][A-Za-z0-9_]*)/?", collections_retrieve),
]
