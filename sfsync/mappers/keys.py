"""Composite keys for objects without an external ID (AccountBalance, PaymentAdjustment).

sfsync matches such rows itself: first through its state store (by ``_key``), then — when the
state store has no entry, e.g. after a lost database — with a SOQL query built here, so that
a re-run never inserts duplicates.
"""

from __future__ import annotations

import pyarrow as pa

from sfsync.mappers.coerce import NUMBER_KINDS, FieldType

# SOQL IN/OR lists are bounded by the 100,000-character query limit; callers chunk keys.
MAX_KEYS_PER_QUERY = 200


def soql_literal(value: str | None, ftype: FieldType | None) -> str:
    """A CSV-ready value as a SOQL literal: numbers, dates, datetimes and booleans bare; text quoted."""
    if value is None:
        return "null"
    kind = ftype.kind if ftype else "string"
    if kind in NUMBER_KINDS or kind in ("date", "datetime", "boolean"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def soql_where(rows: pa.Table, key_fields: list[str], types: dict[str, FieldType | None]) -> str:
    """``(A = x AND B = y) OR (...)`` for every distinct key of ``rows``.

    With one key field this is ``A IN (x, y, ...)``. Callers keep batches at or under
    :data:`MAX_KEYS_PER_QUERY` keys so the query stays well within Salesforce's length limit.
    """
    if not key_fields or rows.num_rows == 0:
        return ""
    cols = [rows.column(k).to_pylist() for k in key_fields]
    seen: dict[tuple[str | None, ...], None] = {}
    for values in zip(*cols, strict=True):
        seen.setdefault(tuple(values), None)
    if len(key_fields) == 1:
        k = key_fields[0]
        return f"{k} IN ({', '.join(soql_literal(v[0], types.get(k)) for v in seen)})"
    clauses = []
    for values in seen:
        parts = [f"{k} = {soql_literal(v, types.get(k))}" for k, v in zip(key_fields, values, strict=True)]
        clauses.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(clauses)
