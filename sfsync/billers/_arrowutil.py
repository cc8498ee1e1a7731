"""Vectorised helpers the readers share: `_source` strings, key hashing, numeric checks.

These sit on the hot path of reading a million rows a second, hence numpy on Arrow buffers
instead of per-row Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.hashing import combine, hash_strings

_NUMERIC = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_INTEGER = r"^\s*[-+]?\d+\s*$"


def source_array(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``prefix + str(n)`` for each number (``statements_202611.csv:17``).

    Cast then insert the prefix as a slice: one kernel each, ~40 ms a million rows
    (``binary_join_element_wise`` with a scalar takes ~250 ms).
    """
    digits = pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string())
    return pc.binary_replace_slice(digits, 0, 0, prefix)


def key_hash(columns: list[pa.Array | pa.ChunkedArray]) -> np.ndarray:
    """A 64-bit hash per row of the key column(s), for duplicate detection in bounded memory.

    Nulls hash like empty strings; a key's hash does not depend on the other rows of its batch.
    """
    h: np.ndarray | None = None
    for col in columns:
        ch = hash_strings(col)
        h = ch if h is None else combine(h, ch)
    return h if h is not None else np.zeros(0, dtype=np.uint64)


class SeenKeys:
    """The key hashes met so far in one file: 8 bytes a row, in a few sorted runs.

    Runs merge like a binary counter (a new run merges into the previous one while it is at
    least half its size), so inserting n keys costs O(n log n) in all and a lookup searches
    O(log n) runs; one growing sorted array would copy itself on every batch.
    """

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def check(self, h: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Find duplicates in ``h`` (rows where ``valid`` is False never count), then remember ``h``.

        Returns:
            (duplicate mask, index within ``h`` of the first occurrence, or -1 when the first
            occurrence was in an earlier batch).
        """
        n = len(h)
        order = np.argsort(h)  # not stable (5x faster than stable): each group's first row is its smallest index
        hs = h[order]
        first_in_run = np.ones(n, dtype=bool)
        first_in_run[1:] = hs[1:] != hs[:-1]
        starts = np.flatnonzero(first_in_run)
        first_of_group = np.minimum.reduceat(order, starts) if n else order
        first_idx = np.empty(n, dtype=np.int64)
        first_idx[order] = first_of_group[np.cumsum(first_in_run) - 1]
        dup = first_idx != np.arange(n)
        hit = np.zeros(n, dtype=bool)
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run, hs), len(run) - 1)  # sorted queries: cache-friendly
            hit |= run[pos] == hs
        if hit.any():
            before = np.empty(n, dtype=bool)
            before[order] = hit
            dup |= before
            first_idx[before] = -1
        if valid is not None:
            dup &= valid
        new = hs[first_in_run & ~hit]
        if len(new):
            self.runs.append(new)
        while len(self.runs) > 1 and 2 * len(self.runs[-1]) >= len(self.runs[-2]):
            last = self.runs.pop()
            # Two sorted runs: the stable sort (timsort) merges them in linear time.
            self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]), kind="stable")
        return dup, first_idx


def bad_numbers(col: pa.Array | pa.ChunkedArray, kind: str) -> np.ndarray | None:
    """Mask of non-null values that are not numbers (``kind`` decimal|integer), or None if all are."""
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        return None
    target = pa.int64() if kind == "integer" else pa.float64()
    try:
        pc.cast(col, target)
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = pc.match_substring_regex(col, _INTEGER if kind == "integer" else _NUMERIC)
    bad = pc.and_(pc.is_valid(col), pc.invert(pc.fill_null(ok, True)))
    return np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
