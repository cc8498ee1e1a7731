"""Per-row results, and matching Salesforce's answers back to the rows that caused them.

Every input row gets exactly one result. Bulk API 2.0 answers in three CSV files, in no
particular order, echoing the original columns; failed rows have no Id. sfsync matches on
those echoed columns, vectorised with Arrow's hash lookups (never a Python loop per row):
on the key column when it is unique in the upload (the external ID for upserts, ``Id`` for
updates and deletes), else on all columns joined, and when identical rows were sent
twice, on (content, occurrence number). Bulk API 1.0 and sObject Collections answer
positionally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.hashing import hash_strings

LOCK_ERROR = "UNABLE_TO_LOCK_ROW"
#: Placed on rows Salesforce did not process (a Failed/Aborted job); such rows may be re-sent.
UNPROCESSED = "UNPROCESSED"
#: Placed on rows for which Salesforce returned nothing at all.
RESULT_MISSING = "RESULT_MISSING"

RESULT_COLUMNS = ["success", "id", "created", "error_code", "message", "retried"]


@dataclass(slots=True)
class RowResult:
    """The outcome of one input row (a plain slotted dataclass: a million are cheap).

    Attributes:
        index: the input frame's index label of the row.
        success: whether Salesforce accepted the row.
        id: the record Id (also for some failed upserts; ``None`` when unknown).
        created: whether the record was created (rather than updated).
        error_code: Salesforce's code (``REQUIRED_FIELD_MISSING``), or sfsync's
            ``UNPROCESSED`` / ``RESULT_MISSING``; ``None`` on success.
        message: Salesforce's message, without the trailing field list.
        retried: how many times the row was re-sent (lock contention, failed jobs).
    """

    index: object
    success: bool
    id: str | None
    created: bool
    error_code: str | None
    message: str | None
    retried: int


class Outcomes:
    """Column arrays of results for ``n`` rows, filled in vectorised by the API paths.

    ``known`` is False until a row has a definitive answer; unknown rows at the end are
    reported as ``RESULT_MISSING``.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.success = np.zeros(n, dtype=bool)
        self.created = np.zeros(n, dtype=bool)
        self.known = np.zeros(n, dtype=bool)
        self.id = np.full(n, None, dtype=object)
        self.error_code = np.full(n, None, dtype=object)
        self.message = np.full(n, None, dtype=object)
        self.retried = np.zeros(n, dtype=np.int32)

    def set(
        self,
        positions: np.ndarray,
        *,
        success: bool | np.ndarray,
        ids: np.ndarray | None = None,
        created: bool | np.ndarray = False,
        error_code: np.ndarray | str | None = None,
        message: np.ndarray | str | None = None,
    ) -> None:
        """Record answers for rows at ``positions`` (equal-length arrays or scalars)."""
        self.success[positions] = success
        self.created[positions] = created
        self.known[positions] = True
        self.id[positions] = ids if ids is not None else None
        self.error_code[positions] = error_code
        self.message[positions] = message

    def merge(self, positions: np.ndarray | slice, other: Outcomes, *, retried: bool = False) -> None:
        """Copy ``other`` (results for the rows ``positions``, an index array or a slice) into this one."""
        self.success[positions] = other.success
        self.created[positions] = other.created
        self.known[positions] = other.known
        self.id[positions] = other.id
        self.error_code[positions] = other.error_code
        self.message[positions] = other.message
        self.retried[positions] += other.retried + (1 if retried else 0)

    def positions_with(self, code: str) -> np.ndarray:
        """Positions whose error code is ``code``."""
        failed = np.flatnonzero(~self.success)  # codes are only ever set on failures
        return failed[self.error_code[failed] == code]

    def finish(self) -> None:
        """Mark rows without any answer as ``RESULT_MISSING`` failures."""
        missing = ~self.known
        if missing.any():
            pos = np.flatnonzero(missing)
            self.set(
                pos,
                success=False,
                error_code=RESULT_MISSING,
                message="Salesforce returned no result for this row; it may or may not have been written",
            )

    def to_frame(self, index: pd.Index) -> pd.DataFrame:
        """A frame with :data:`RESULT_COLUMNS`, indexed like the input.

        The frame wraps this object's arrays without copying them: take it last, when
        nothing will write to this object any more.
        """
        # Object dtype on purpose: pandas would otherwise turn missing Ids into NaN.
        columns = {
            name: pd.Series(getattr(self, name), index=index, dtype=object if name in ("id", "error_code", "message") else None, copy=False)
            for name in RESULT_COLUMNS
        }
        # copy=False: no copy, and no consolidation of the three object columns into one block.
        return pd.DataFrame(columns, index=index, copy=False)


def frame_to_results(frame: pd.DataFrame) -> list[RowResult]:
    """Turn a result frame into :class:`RowResult` objects (no per-row logic)."""
    columns = [frame.index.tolist()] + [frame[c].tolist() for c in RESULT_COLUMNS]
    return list(map(RowResult, *columns))


def split_errors(errors: pa.Array | pa.ChunkedArray | np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Split bulk error strings ``CODE:message:fields --`` into codes and messages.

    ``"REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"`` gives
    ``("REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]")``. A string
    without a leading code keeps the whole text as message, with code ``UNKNOWN_ERROR``.
    """
    if isinstance(errors, pa.ChunkedArray):
        errors = errors.combine_chunks()
    arr = errors.cast(pa.large_string()) if isinstance(errors, pa.Array) else pa.array(errors, type=pa.large_string())
    arr = pc.fill_null(arr, "")
    parts = pc.extract_regex(arr, r"^(?P<code>[A-Z][A-Z0-9_]*):(?P<rest>[\s\S]*)$")
    valid = pc.is_valid(parts)
    code = pc.if_else(valid, pc.struct_field(parts, "code"), pa.scalar("UNKNOWN_ERROR"))
    rest = pc.if_else(valid, pc.struct_field(parts, "rest"), arr)
    # Drop the trailing ":<fields> --" Salesforce appends to bulk errors.
    rest = pc.replace_substring_regex(rest, r":[^:]*--\s*$", "")
    return code.to_numpy(zero_copy_only=False), rest.to_numpy(zero_copy_only=False)


def _as_keys(table: pa.Table, columns: list[str]) -> pa.Array:
    """One string per row: the column itself, or the columns joined by a control char."""
    arrays = []
    for name in columns:
        col = table.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        arrays.append(pc.fill_null(col.cast(pa.large_string()), ""))
    if len(arrays) == 1:
        return arrays[0]
    return pc.binary_join_element_wise(*arrays, pa.scalar("\x1f", pa.large_string()))


def _with_occurrence(keys: pa.Array) -> pa.Array:
    """Append each value's occurrence number so duplicate rows stay distinguishable."""
    series = pd.Series(keys.to_numpy(zero_copy_only=False), dtype=object)
    occurrence = series.groupby(series, sort=False).cumcount().astype(str)
    return pa.array((series + "\x1e" + occurrence).to_numpy(), type=pa.large_string())


def _lookup(sent_keys: pa.Array, echoed_keys: pa.Array) -> np.ndarray | None:
    """Positions in ``sent_keys`` of each echoed key (-1: none); None if sent keys repeat.

    By 64-bit hashes (8 bytes a row, sorted), each hit confirmed by comparing the strings:
    a hash table of every key would cost ~80 bytes a row on top. Sent keys whose hashes
    meet (a repeated key, or in the rarest case two keys with one hash) go to
    :func:`_lookup_exact`, which tells the two apart.
    """
    n = len(sent_keys)
    hs = hash_strings(sent_keys)
    order = np.argsort(hs)
    ordered = hs[order]
    if n > 1 and (ordered[1:] == ordered[:-1]).any():
        return _lookup_exact(sent_keys, echoed_keys)
    he = hash_strings(echoed_keys)
    positions = np.full(len(he), -1, dtype=np.int64)
    if not n or not len(he):
        return positions
    at = np.minimum(np.searchsorted(ordered, he), n - 1)
    hit = np.flatnonzero(ordered[at] == he)
    if len(hit):
        rows = order[at[hit]]
        same = pc.equal(echoed_keys.take(pa.array(hit)), sent_keys.take(pa.array(rows)))
        confirmed = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        positions[hit[confirmed]] = rows[confirmed]
    return positions


def _lookup_exact(sent_keys: pa.Array, echoed_keys: pa.Array) -> np.ndarray | None:
    """:func:`_lookup` by one dictionary encoding of both sides together.

    The memo table numbers values in order of first appearance, so distinct sent keys get
    exactly their own positions and an echoed key gets the position of the sent key it
    equals (or a number ≥ n).
    """
    n = len(sent_keys)
    encoded = pc.dictionary_encode(pa.chunked_array([sent_keys, echoed_keys], type=pa.large_string()))
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks]).astype(np.int64)
    if n and codes[n - 1] != n - 1:
        return None
    positions = codes[n:]
    positions[positions >= n] = -1
    return positions


def _split(positions: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    out = []
    start = 0
    for length in lengths:
        out.append(positions[start : start + length])
        start += length
    return out


def match_on_key(sent: pa.Table, echoed: list[pa.Table], key: str | Sequence[str]) -> list[np.ndarray] | None:
    """:func:`match_positions` on ``key`` alone (a column, or the columns of a composite key),
    or None when that cannot be used.

    None when ``key`` repeats in ``sent`` or a non-empty result table lacks it: the
    caller then matches on every echoed column. Result tables need carry no other
    column, so a caller can convert only the key columns of large result files.
    """
    keys = [key] if isinstance(key, str) else list(key)
    lengths = [t.num_rows for t in echoed]
    if sum(lengths) == 0:
        return [np.empty(0, dtype=np.int64) for _ in echoed]
    present = [t for t in echoed if t.num_rows]
    if not keys or any(k not in sent.column_names or any(k not in t.column_names for t in present) for k in keys):
        return None
    positions = _lookup(_as_keys(sent, keys), pa.concat_arrays([_as_keys(t, keys) for t in present]))
    return None if positions is None else _split(positions, lengths)


def match_positions(sent: pa.Table, echoed: list[pa.Table], key: str | None) -> list[np.ndarray]:
    """For each echoed result table, the position in ``sent`` of each of its rows.

    Args:
        sent: the rows uploaded (string columns).
        echoed: the result tables, which carry the sent columns as strings.
        key: the column to match on when its values are distinct in ``sent`` (the
            external ID, or ``Id``); otherwise all columns the results echo are used.

    Returns:
        One int64 array per table in ``echoed``; ``-1`` where a result matches no row.
    """
    if key is not None:
        found = match_on_key(sent, echoed, key)
        if found is not None:
            return found
    lengths = [t.num_rows for t in echoed]
    if not echoed or sum(lengths) == 0:
        return [np.empty(0, dtype=np.int64) for _ in echoed]
    present = [t for t in echoed if t.num_rows]
    common = [c for c in sent.column_names if all(c in t.column_names for t in present)]
    positions = _lookup(_as_keys(sent, common), pa.concat_arrays([_as_keys(t, common) for t in present]))
    if positions is None:
        # Identical rows sent twice: number the occurrences on both sides. Results are
        # concatenated before numbering so the numbering spans the three result files.
        sent_keys = _with_occurrence(_as_keys(sent, common))
        echoed_keys = _with_occurrence(pa.concat_arrays([_as_keys(t, common) for t in present]))
        found = pc.index_in(echoed_keys, value_set=sent_keys)
        positions = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return _split(positions, lengths)
