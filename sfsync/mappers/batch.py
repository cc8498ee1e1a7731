"""What a compiled mapping returns for one batch: :class:`MappedBatch`.

``rows`` is a ``pyarrow.Table`` of **strings**, each cell exactly what goes into a Bulk CSV
(dates ``YYYY-MM-DD``, datetimes ``YYYY-MM-DDTHH:MM:SS.000Z`` UTC, numbers at the field's
scale, ``true``/``false``; null = empty cell). Columns, in order:

* the target fields (relationship columns flat: ``vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c``),
  ``RecordTypeId`` when the mapping sets a record type;
* ``_lookup.<Field>`` — the value sfsync must resolve for each sfsync-resolved lookup
  (e.g. the AccountNumber behind ``vlocity_cmt__AccountId__c``);
* ``_source`` (file:line or biller record id) and ``_key`` (the match key, biller-prefixed).

``rejects`` is a pandas DataFrame with ``_source``, ``_key``, ``code``, ``message``: one row
per rejected source row. ``skipped`` counts rows dropped on purpose (skip conditions, rows
older than the trim date); ``skipped_by`` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: ``resolve(sobject, field, values) -> {value: Id}``. A resolver may also offer
#: ``lookup(sobject, field, values: pa.Array) -> (values found, their Ids)``, the Arrow path
#: :meth:`MappedBatch.resolve` prefers (``sfsync.jobs.resolve.LookupResolver`` does).
Resolver = Callable[[str, str, set[str]], Mapping[str, str]]
REJECT_COLUMNS = ["_source", "_key", "code", "message"]


@dataclass(frozen=True)
class LookupField:
    """A reference sfsync resolves: ``field`` gets the Id of the ``sobject`` whose ``match_field`` = value."""

    field: str
    sobject: str
    match_field: str
    deferred: bool = False

    @property
    def column(self) -> str:
        """Name of the column holding the values to resolve."""
        return f"_lookup.{self.field}"


def empty_rejects() -> pd.DataFrame:
    """A rejects frame with no rows and the standard columns."""
    return pd.DataFrame({c: pd.Series([], dtype="string") for c in REJECT_COLUMNS})


def rejects_frame(sources: list[Any], keys: list[Any], codes: list[str], messages: list[str]) -> pd.DataFrame:
    """Build a rejects frame (string columns)."""
    frame = pd.DataFrame({"_source": sources, "_key": keys, "code": codes, "message": messages})
    return frame.astype("string")


@dataclass
class MappedBatch:
    """Salesforce-ready rows of one batch, its rejects and how many rows were skipped."""

    rows: pa.Table
    rejects: pd.DataFrame = field(default_factory=empty_rejects)
    skipped: int = 0
    skipped_by: dict[str, int] = field(default_factory=dict)
    mapping: str = ""
    sobject: str = ""
    lookups: tuple[LookupField, ...] = ()
    key_fields: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.rows.num_rows

    @property
    def fields(self) -> list[str]:
        """The Salesforce (or biller) field columns, without the ``_`` bookkeeping columns."""
        return [c for c in self.rows.column_names if not c.startswith("_")]

    def lookup_requests(self) -> list[tuple[str, str, set[str]]]:
        """What must be resolved before loading: ``(sobject, match_field, values)`` per pending lookup."""
        out = []
        for lk in self.lookups:
            if lk.deferred or lk.column not in self.rows.column_names:
                continue
            values = set(pc.unique(self.rows.column(lk.column).drop_null()).to_pylist())
            out.append((lk.sobject, lk.match_field, values))
        return out

    def resolve(self, resolve: Resolver) -> MappedBatch:
        """Fill the (non-deferred) lookup fields with Ids; unresolved rows move to the rejects.

        Args:
            resolve: ``resolve(sobject, field, values) -> {value: id}``; values it does not
                return are "not found".
        """
        pending = [lk for lk in self.lookups if not lk.deferred and lk.column in self.rows.column_names]
        return self._resolve(pending, resolve)

    def deferred_updates(self, resolve: Resolver) -> MappedBatch:
        """The "after" step for self-references (Account.ParentId): update rows once parents exist.

        Returns:
            A batch with ``_source``, ``_key``, the composite key columns and each deferred
            field (resolved Ids); rows whose deferred value is empty are left out.
        """
        part = self.deferred_part()
        return part._resolve([lk for lk in part.lookups if lk.deferred and lk.column in part.rows.column_names], resolve)

    def deferred_part(self) -> MappedBatch:
        """Just what :meth:`deferred_updates` needs (what a load keeps until its object is done).

        The rows with a deferred value, with ``_source``, ``_key``, the key columns and the
        deferred fields only: a load over 250,000 accounts keeps a few columns of the accounts
        that have a parent, not every mapped batch.
        """
        deferred = [lk for lk in self.lookups if lk.deferred and lk.column in self.rows.column_names]
        if not deferred:
            return replace(self, rows=self.rows.slice(0, 0), rejects=empty_rejects(), skipped=0, skipped_by={})
        any_value = np.zeros(self.rows.num_rows, dtype=bool)
        for lk in deferred:
            any_value |= self.rows.column(lk.column).is_valid().to_numpy(zero_copy_only=False)
        subset = self.rows.filter(pa.array(any_value))
        keep = ["_source", "_key", *[k for k in self.key_fields if k in subset.column_names]]
        keep += [c for lk in deferred for c in (lk.field, lk.column)]
        return replace(self, rows=subset.select(list(dict.fromkeys(keep))), rejects=empty_rejects(),
                       skipped=0, skipped_by={})

    def _resolve(self, pending: list[LookupField], resolve: Resolver) -> MappedBatch:
        if not pending:
            return self
        rows = self.rows
        n = rows.num_rows
        bad = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        for lk in pending:
            col = rows.column(lk.column).combine_chunks()
            distinct = pc.unique(col.drop_null()).cast(pa.string())
            lookup = getattr(resolve, "lookup", None)
            if lookup is not None and len(distinct):  # the Arrow path: no Python object per value
                keys, ids = lookup(lk.sobject, lk.match_field, distinct)
            else:
                found = dict(resolve(lk.sobject, lk.match_field, set(distinct.to_pylist()))) if len(distinct) else {}
                keys = pa.array(list(found.keys()), type=pa.string())
                ids = pa.array(list(found.values()), type=pa.string())
            idx = pc.index_in(col, value_set=keys)
            resolved = ids.take(idx) if len(keys) else pa.nulls(n, pa.string())
            missing = pc.and_(col.is_valid(), idx.is_null()).to_numpy(zero_copy_only=False)
            for row in np.flatnonzero(missing).tolist():
                msg = f"{lk.field}: no {lk.sobject} with {lk.match_field} = {col[row].as_py()!r}"
                reasons[row] = f"{reasons[row]}; {msg}" if row in reasons else msg
            bad |= missing
            rows = rows.set_column(rows.column_names.index(lk.field), lk.field, resolved)
        rejects = self.rejects
        if bad.any():
            where = np.flatnonzero(bad)
            sources = rows.column("_source").take(pa.array(where)).to_pylist()
            keys_ = rows.column("_key").take(pa.array(where)).to_pylist()
            extra = rejects_frame(sources, keys_, ["LOOKUP_NOT_FOUND"] * len(where), [reasons[i] for i in where.tolist()])
            rejects = pd.concat([rejects, extra], ignore_index=True) if len(rejects) else extra
            rows = rows.filter(pa.array(~bad))
        return replace(self, rows=rows, rejects=rejects)

    def key_pairs(self) -> list[list[tuple[str, str | None]]]:
        """Composite keys as ``[(field, value), ...]`` per row — for a SOQL fallback match."""
        if not self.key_fields:
            return []
        cols = [self.rows.column(k).to_pylist() for k in self.key_fields]
        return [list(zip(self.key_fields, vals, strict=True)) for vals in zip(*cols, strict=True)]

    def to_csv_frame(self) -> pd.DataFrame:
        """The Salesforce columns only, as a pandas frame of strings (NA = empty cell)."""
        return self.rows.select(self.fields).to_pandas(types_mapper=pd.ArrowDtype)

    def to_pandas(self) -> pd.DataFrame:
        """All columns (including ``_source``/``_key``/``_lookup.*``) as a pyarrow-backed frame."""
        return self.rows.to_pandas(types_mapper=pd.ArrowDtype)

    def to_records(self) -> list[dict[str, Any]]:
        """Rows as nested dicts for JSON bodies: ``totalAmount.value`` → ``{"totalAmount": {"value": …}}``.

        Values are typed by the export field types (number → float, integer → int,
        boolean → bool); nulls are left out. Bookkeeping columns are not included.
        """
        names = self.fields
        columns = [self.rows.column(c).to_pylist() for c in names]
        convert = [_converter(self.types.get(c, "string")) for c in names]
        out = []
        for values in zip(*columns, strict=True):
            rec: dict[str, Any] = {}
            for name, value, conv in zip(names, values, convert, strict=True):
                if value is None:
                    continue
                node = rec
                *parents, leaf = name.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = conv(value)
            out.append(rec)
        return out


def _converter(kind: str) -> Callable[[str], Any]:
    if kind in ("number", "double", "currency", "percent"):
        return float
    if kind in ("integer", "int"):
        return int
    if kind == "boolean":
        return lambda v: v == "true"
    return str
