"""Match rows of objects without an External ID (AccountBalance, PaymentAdjustment) to records.

The state store knows the Id of every row sfsync sent. When it does not (first load of an
existing org, a lost state database, a crash between Salesforce's answer and the store's
write), the org is asked on the composite key, so that a re-run updates instead of inserting
a duplicate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sfsync.mappers.coerce import FieldType
from sfsync.mappers.keys import MAX_KEYS_PER_QUERY, soql_where

if TYPE_CHECKING:
    from sfsync.salesforce import SalesforceClient

BULK_MATCH_THRESHOLD = 2_000  # more unknown keys than this: read the object's keys in one query
KEY_JOIN = "\x1f"


def _norm(value: Any, kind: str) -> str:
    # The org and the mapper spell some values differently (Ids 15/18, numbers 100.0/100.00).
    if value is None:
        return ""
    s = str(value)
    if kind == "reference":
        return s[:15]
    if kind in ("double", "currency", "percent", "int"):
        try:
            return repr(float(s))
        except ValueError:
            return s
    if kind == "datetime":
        return s[:19]
    return s


class CompositeMatcher:
    """Find existing records by composite key, with a per-run cache."""

    def __init__(self, client: SalesforceClient, sobject: str, key_fields: list[str]) -> None:
        self.client = client
        self.sobject = sobject
        self.key_fields = key_fields
        fields = {f["name"]: f for f in client.describe(sobject)["fields"]}
        self.kinds = {k: str(fields[k]["type"]).lower() if k in fields else "string" for k in key_fields}
        self._types = {k: FieldType.from_describe(fields[k]) if k in fields else None for k in key_fields}
        self._all: dict[str, str] | None = None
        self.queries = 0

    def key_of(self, values: list[Any]) -> str:
        """The normalised composite key of one row's key-field values."""
        return KEY_JOIN.join(_norm(v, self.kinds[k]) for k, v in zip(self.key_fields, values, strict=True))

    def existing(self, rows: pa.Table) -> list[str | None]:
        """The Id of the record each row matches in the org (None where there is none)."""
        if rows.num_rows == 0:
            return []
        cols = [rows.column(k).to_pylist() for k in self.key_fields]
        keys = [self.key_of(list(v)) for v in zip(*cols, strict=True)]
        if self._all is not None:
            return [self._all.get(k) for k in keys]
        if rows.num_rows > BULK_MATCH_THRESHOLD:
            self._all = self._read_all()
            return [self._all.get(k) for k in keys]
        found: dict[str, str] = {}
        for i in range(0, rows.num_rows, MAX_KEYS_PER_QUERY):
            chunk = rows.slice(i, MAX_KEYS_PER_QUERY)
            where = soql_where(chunk, self.key_fields, self._types)
            soql = f"SELECT Id, {', '.join(self.key_fields)} FROM {self.sobject} WHERE {where} ORDER BY CreatedDate, Id"
            self.queries += 1
            for rec in self.client.query(soql):
                found.setdefault(self.key_of([rec.get(k) for k in self.key_fields]), rec["Id"])
        return [found.get(k) for k in keys]

    def _read_all(self) -> dict[str, str]:
        out: dict[str, str] = {}
        soql = f"SELECT Id, {', '.join(self.key_fields)} FROM {self.sobject} ORDER BY CreatedDate, Id"
        self.queries += 1
        for frame in self.client.query_frames(soql):
            if not len(frame):
                continue
            for values in zip(*(frame[k] if k in frame else [None] * len(frame) for k in self.key_fields),
                              frame["Id"], strict=True):
                out.setdefault(self.key_of(list(values[:-1])), values[-1])
        return out
