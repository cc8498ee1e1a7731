"""Match rows of objects without an External ID (AccountBalance, PaymentAdjustment) to records.

The state store knows the Id of every row sfsync sent. When it does not (first load of an
existing org, a lost state database, a crash between Salesforce's answer and the store's
write), the org is asked on the composite key, so that a re-run updates instead of inserting
a duplicate.

The query filters on one key field with an ``IN`` list (the most selective one: a reference
such as the account, which Salesforce indexes) and the rest is matched here — far cheaper
for the org than long ``(A AND B) OR (A AND B) …`` chains. An object with no record at all when
the run starts costs one ``COUNT()`` and nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sfsync.mappers.coerce import FieldType
from sfsync.mappers.keys import MAX_KEYS_PER_QUERY, soql_literal

if TYPE_CHECKING:
    from sfsync.salesforce import SalesforceClient

BULK_MATCH_THRESHOLD = 20_000  # more unknown keys than this: read all the object's keys in one query
KEY_JOIN = "\x1f"


def _norm(value: Any, kind: str) -> str:
    # The org and the mapper spell some values differently (Ids 15/18, numbers 100.0/100.00).
    if value is None or value == "":
        return ""
    s = str(value)
    if kind == "reference" or kind == "id":
        return s[:15]
    if kind in ("double", "currency", "percent", "int", "long"):
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
        refs = [k for k in key_fields if self.kinds[k] == "reference"]
        self.probe = refs[0] if refs else key_fields[0]
        self._all: dict[str, str] | None = None
        self._empty: bool | None = None
        self.queries = 0

    def key_of(self, values: list[Any]) -> str:
        """The normalised composite key of one row's key-field values."""
        return KEY_JOIN.join(_norm(v, self.kinds[k]) for k, v in zip(self.key_fields, values, strict=True))

    def existing(self, rows: pa.Table) -> list[str | None]:
        """The Id of the record each row matches in the org (None where there is none)."""
        if rows.num_rows == 0:
            return []
        if self._empty is None:
            self.queries += 1
            self._empty = self.client.count(f"SELECT COUNT() FROM {self.sobject}") == 0
        if self._empty:
            # Nothing existed when the run started; what this run creates, the state store knows.
            return [None] * rows.num_rows
        cols = [rows.column(k).to_pylist() for k in self.key_fields]
        keys = [self.key_of(list(v)) for v in zip(*cols, strict=True)]
        if self._all is None and rows.num_rows > BULK_MATCH_THRESHOLD:
            self._all = self._read(None)
        if self._all is not None:
            return [self._all.get(k) for k in keys]
        probe_values = sorted({v for v in rows.column(self.probe).to_pylist() if v})
        found: dict[str, str] = {}
        for i in range(0, len(probe_values), MAX_KEYS_PER_QUERY):
            chunk = probe_values[i:i + MAX_KEYS_PER_QUERY]
            found.update(self._read(f"{self.probe} IN ({', '.join(soql_literal(v, self._types[self.probe]) for v in chunk)})"))
        return [found.get(k) for k in keys]

    def _read(self, where: str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        soql = f"SELECT Id, {', '.join(self.key_fields)} FROM {self.sobject}"
        if where:
            soql += f" WHERE {where}"
        self.queries += 1
        for frame in self.client.query_frames(soql + " ORDER BY CreatedDate, Id"):
            if not len(frame):
                continue
            columns = [frame[k].tolist() if k in frame else [None] * len(frame) for k in self.key_fields]
            for values, sf_id in zip(zip(*columns, strict=True), frame["Id"].tolist(), strict=True):
                out.setdefault(self.key_of(list(values)), sf_id)
        return out
