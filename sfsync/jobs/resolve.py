"""Resolve references sfsync looks up itself (Account by AccountNumber…), with a per-run cache.

Few values: ``SELECT Id, F FROM S WHERE F IN (…)`` in chunks. Many values: one query for every
record of ``S`` that has ``F`` (Bulk 2.0 when large) — far fewer API calls than thousands of
``IN`` lists. Records the run itself created are remembered without asking the org again.

The cache is two Arrow string arrays per (object, field) — value and Id — and the values'
64-bit hashes sorted, about 55 bytes a record where a Python dict took ~150: a run over
250,000 accounts holds ~14 MB, and a batch's values are looked up by binary search
(:meth:`LookupResolver.lookup`), without building a hash table of every known value per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.hashing import hash_strings
from sfsync.mappers.keys import MAX_KEYS_PER_QUERY, soql_literal

if TYPE_CHECKING:
    from sfsync.salesforce import SalesforceClient

PRELOAD_THRESHOLD = 2_000  # more values than this: read the whole (object, field) once


@dataclass
class _Cache:
    """Known (value → Id) of one (object, field): sealed Arrow arrays plus pairs not yet sealed.

    Sealed pairs are searched by a 64-bit hash of the value (a sorted numpy array, then a
    string comparison of each candidate), so a batch's lookup builds no hash table of every
    known value: memory stays ~55 bytes a known record, whatever the batch.
    """

    values: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # of values, in their order
    sorted_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted position → row
    pending: list[tuple[pa.Array, pa.Array]] = field(default_factory=list)

    def add(self, values: Iterable[str] | pa.Array, ids: Iterable[str] | pa.Array) -> None:
        """Add pairs; a value already known keeps its first Id (the oldest record wins).

        Kept as Arrow arrays at once (no Python string per pair while they wait).
        """
        v = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
        i = ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())
        if len(v):
            self.pending.append((v.cast(pa.string()), i.cast(pa.string())))

    def sealed(self) -> tuple[pa.Array, pa.Array]:
        """The arrays, with pending pairs folded in (first occurrence of a value wins)."""
        if self.pending:
            new_values = pa.concat_arrays([v for v, _ in self.pending])
            values = pa.concat_arrays([self.values, new_values])
            ids = pa.concat_arrays([self.ids, *[i for _, i in self.pending]])
            hashes = np.concatenate([self.hashes, hash_strings(new_values)])
            self.pending = []
            # Keep each value's first row (equal values hash alike; a stable sort keeps row order).
            order = np.argsort(hashes, kind="stable")
            ordered = hashes[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = ordered[1:] != ordered[:-1]
            if not first.all():
                rows = np.sort(order[first])
                keep = pa.array(rows)
                values, ids, hashes = values.take(keep), ids.take(keep), hashes[rows]
                order = np.argsort(hashes, kind="stable")
                ordered = hashes[order]
            self.values, self.ids, self.hashes = values, ids, hashes
            self.sorted_hashes, self.order = ordered, order
        return self.values, self.ids

    def find(self, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, row of each found value) for distinct ``values``, against the sealed pairs."""
        known, _ = self.sealed()
        n = len(values)
        if not len(known) or not n:
            return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        h = hash_strings(values)
        at = np.searchsorted(self.sorted_hashes, h)
        at[at == len(self.sorted_hashes)] = 0
        rows = self.order[at]
        hit = self.sorted_hashes[at] == h
        same = pc.fill_null(pc.equal(values.cast(pa.string()), known.take(pa.array(rows))), False)
        return hit & same.to_numpy(zero_copy_only=False), rows


class LookupResolver:
    """``resolve(sobject, field, values) -> {value: Id}``; values not found are left out."""

    def __init__(self, client: SalesforceClient, preload_threshold: int = PRELOAD_THRESHOLD) -> None:
        self.client = client
        self.preload_threshold = preload_threshold
        self._cache: dict[tuple[str, str], _Cache] = {}
        self._complete: set[tuple[str, str]] = set()  # (object, field) read in full this run
        self.queries = 0

    def __call__(self, sobject: str, field: str, values: set[str]) -> Mapping[str, str]:
        found_values, found_ids = self.lookup(sobject, field, pa.array(sorted(values), pa.string()))
        return dict(zip(found_values.to_pylist(), found_ids.to_pylist(), strict=True))

    def lookup(self, sobject: str, field: str, values: pa.Array) -> tuple[pa.Array, pa.Array]:
        """The (values, Ids) of those of ``values`` (distinct strings) that resolve: the Arrow path."""
        pair = (sobject, field)
        cache = self._cache.setdefault(pair, _Cache())
        hit, _ = cache.find(values)
        missing = values.filter(pa.array(~hit))
        if len(missing) and pair not in self._complete:
            if len(missing) > self.preload_threshold:
                self._preload(sobject, field)
            else:
                self._query(sobject, field, missing.to_pylist())
        found, rows = cache.find(values)
        return values.filter(pa.array(found)), cache.ids.take(pa.array(rows[found]))

    def remember(self, sobject: str, field: str, pairs: Iterable[tuple[str | None, str | None]]) -> None:
        """Add (value, Id) pairs the run learned by writing (e.g. accounts it just created)."""
        kept = [(v, i) for v, i in pairs if v and i]
        if kept:
            values, ids = zip(*kept, strict=True)
            self._cache.setdefault((sobject, field), _Cache()).add(values, ids)

    def remember_arrays(self, sobject: str, field: str, values: pa.Array, ids: pa.Array) -> None:
        """:meth:`remember` for columns (a load's written batch): pairs with an empty side are left out."""
        values, ids = values.cast(pa.string()), ids.cast(pa.string())
        keep = pc.and_(pc.fill_null(pc.not_equal(values, ""), False), pc.fill_null(pc.not_equal(ids, ""), False))
        self._cache.setdefault((sobject, field), _Cache()).add(values.filter(keep), ids.filter(keep))

    def _query(self, sobject: str, field: str, values: list[str]) -> None:
        cache = self._cache.setdefault((sobject, field), _Cache())
        for i in range(0, len(values), MAX_KEYS_PER_QUERY):
            chunk = values[i:i + MAX_KEYS_PER_QUERY]
            in_list = ", ".join(soql_literal(v, None) for v in chunk)
            soql = f"SELECT Id, {field} FROM {sobject} WHERE {field} IN ({in_list}) ORDER BY CreatedDate, Id"
            self.queries += 1
            found = [(str(rec[field]), rec["Id"]) for rec in self.client.query(soql) if rec.get(field) is not None]
            if found:  # several matches: the oldest wins (first added)
                cache.add([v for v, _ in found], [i for _, i in found])

    def _preload(self, sobject: str, field: str) -> None:
        cache = self._cache.setdefault((sobject, field), _Cache())
        soql = f"SELECT Id, {field} FROM {sobject} WHERE {field} != null ORDER BY CreatedDate, Id"
        self.queries += 1
        # Arrow pages: an org's 250,000 Account numbers never become Python strings.
        for table in self.client.query_tables(soql):
            if table.num_rows:
                values, ids = table.column(field).combine_chunks(), table.column("Id").combine_chunks()
                keep = pc.and_(values.is_valid(), ids.is_valid())
                cache.add(values.filter(keep), ids.filter(keep))
                cache.sealed()  # page by page: one page waits unsealed at a time
        self._complete.add((sobject, field))
