"""Resolve references sfsync looks up itself (Account by AccountNumber…), with a per-run cache.

Few values: ``SELECT Id, F FROM S WHERE F IN (…)`` in chunks. Many values: one query for every
record of ``S`` that has ``F`` (Bulk 2.0 when large) — far fewer API calls than thousands of
``IN`` lists. Records the run itself created are remembered without asking the org again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from sfsync.mappers.keys import MAX_KEYS_PER_QUERY, soql_literal

if TYPE_CHECKING:
    from sfsync.salesforce import SalesforceClient

PRELOAD_THRESHOLD = 2_000  # more values than this: read the whole (object, field) once


class LookupResolver:
    """``resolve(sobject, field, values) -> {value: Id}``; values not found are left out."""

    def __init__(self, client: SalesforceClient, preload_threshold: int = PRELOAD_THRESHOLD) -> None:
        self.client = client
        self.preload_threshold = preload_threshold
        self._cache: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        self._complete: set[tuple[str, str]] = set()  # (object, field) read in full this run
        self.queries = 0

    def __call__(self, sobject: str, field: str, values: set[str]) -> Mapping[str, str]:
        pair = (sobject, field)
        cache = self._cache[pair]
        missing = {v for v in values if v not in cache}
        if missing and pair not in self._complete:
            if len(missing) > self.preload_threshold:
                self._preload(sobject, field)
            else:
                self._query(sobject, field, sorted(missing))
        return {v: cache[v] for v in values if v in cache}

    def remember(self, sobject: str, field: str, pairs: Iterable[tuple[str | None, str | None]]) -> None:
        """Add (value, Id) pairs the run learned by writing (e.g. accounts it just created)."""
        cache = self._cache[(sobject, field)]
        for value, sf_id in pairs:
            if value and sf_id:
                cache.setdefault(value, sf_id)

    def _query(self, sobject: str, field: str, values: list[str]) -> None:
        cache = self._cache[(sobject, field)]
        for i in range(0, len(values), MAX_KEYS_PER_QUERY):
            chunk = values[i:i + MAX_KEYS_PER_QUERY]
            in_list = ", ".join(soql_literal(v, None) for v in chunk)
            soql = f"SELECT Id, {field} FROM {sobject} WHERE {field} IN ({in_list}) ORDER BY CreatedDate, Id"
            self.queries += 1
            for rec in self.client.query(soql):
                value = rec.get(field)
                if value is not None:
                    cache.setdefault(str(value), rec["Id"])  # several matches: the oldest wins

    def _preload(self, sobject: str, field: str) -> None:
        cache = self._cache[(sobject, field)]
        soql = f"SELECT Id, {field} FROM {sobject} WHERE {field} != null ORDER BY CreatedDate, Id"
        self.queries += 1
        for frame in self.client.query_frames(soql):
            if not len(frame):
                continue
            for value, sf_id in zip(frame[field].astype(str), frame["Id"], strict=True):
                cache.setdefault(value, sf_id)
        self._complete.add((sobject, field))
