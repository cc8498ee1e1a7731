"""sObject Collections: small writes (under the smart threshold) and serial lock retries.

Collections answer one result per record, in order, so matching is positional. Requests
go one at a time: that is what makes them the serial fallback for lock contention.
Values keep the Bulk CSV conventions so a row means the same whichever API sends it:
an empty value is left out, ``#N/A`` sets the field to null, and a flat relationship
column ``Parent__r.ExtId__c`` becomes the nested ``{"Parent__r": {"ExtId__c": ...}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from sfsync.limits import MAX_REST_COLLECTION

from .results import Outcomes
from .transport import Transport, json_body

NULL_MARKER = "#N/A"


def _record(row: dict[str, Any], sobject: str) -> dict[str, Any]:
    record: dict[str, Any] = {"attributes": {"type": sobject}}
    for name, value in row.items():
        if value is None or value == "":
            continue
        if value == NULL_MARKER:
            value = None
        if "." in name:
            relationship, field = name.split(".", 1)
            record.setdefault(relationship, {})[field] = value
        else:
            record[name] = value
    return record


def _request(transport: Transport, sobject: str, operation: str, rows: list[dict[str, Any]], external_id_field: str | None) -> Any:
    if operation == "delete":
        ids = ",".join(str(r.get("Id") or "") for r in rows)
        return transport.call(
            "rest", lambda sf: sf.restful("composite/sobjects", params={"ids": ids, "allOrNone": "false"}, method="DELETE", timeout=transport.timeout)
        )
    records = [_record(r, sobject) for r in rows]
    body = json_body({"allOrNone": False, "records": records})
    if operation == "insert":
        path, method = "composite/sobjects", "POST"
    elif operation == "update":
        path, method = "composite/sobjects", "PATCH"
    elif operation == "upsert":
        path, method = f"composite/sobjects/{quote(sobject)}/{quote(external_id_field or '')}", "PATCH"
    else:
        raise ValueError(f"sObject Collections cannot {operation!r}")
    return transport.call(
        "rest",
        lambda sf: sf.restful(path, method=method, data=body, timeout=transport.timeout),
        # An insert whose answer was lost may have happened: never repeat it blindly.
        idempotent=operation != "insert",
    )


def write(
    transport: Transport,
    sobject: str,
    operation: str,
    table: pa.Table,
    *,
    external_id_field: str | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcomes:
    """Write ``table`` with sObject Collections, ≤ 200 records per request, in order.

    Returns:
        Per-row outcomes (positional).
    """
    size = min(batch_size or MAX_REST_COLLECTION, MAX_REST_COLLECTION)
    out = Outcomes(table.num_rows)
    for start in range(0, table.num_rows, size):
        chunk = table.slice(start, size)
        rows = chunk.to_pylist()
        answers = _request(transport, sobject, operation, rows, external_id_field) or []
        n = min(len(answers), len(rows))
        success = np.array([bool(a.get("success")) for a in answers[:n]], dtype=bool)
        ids = np.array([a.get("id") for a in answers[:n]], dtype=object)
        if operation == "insert":
            created = success.copy()
        else:
            created = np.array([bool(a.get("created", False)) for a in answers[:n]], dtype=bool)
        errors = [(a.get("errors") or [{}])[0] for a in answers[:n]]
        codes = np.array([None if ok else (e.get("statusCode") or "UNKNOWN_ERROR") for ok, e in zip(success, errors, strict=True)], dtype=object)
        messages = np.array([None if ok else e.get("message") for ok, e in zip(success, errors, strict=True)], dtype=object)
        out.set(np.arange(start, start + n), success=success, ids=ids, created=created, error_code=codes, message=messages)
        if progress is not None:
            progress(len(rows))
    return out
