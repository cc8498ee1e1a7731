"""Small vectorized helpers shared by the evaluator, the coercers and the compiler.

Row failures are values: every check produces a :class:`RowError` — a boolean mask over the
batch, a code and a message template — and the compiler folds them into the rejects frame.
Messages are only formatted for the rows that failed, so a clean batch costs no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class RowError:
    """Rows of a batch that failed one check.

    Attributes:
        mask: ``True`` for each failing row (numpy bool array, batch length).
        code: Reject code, e.g. ``INVALID_NUMBER``.
        message: Template formatted per failing row; ``{value}`` is the row's value (repr).
        values: The values to show (batch length), or None when the message needs none.
        plain: Insert the values as they are (they are whole messages), not quoted.
    """

    mask: np.ndarray
    code: str
    message: str
    values: pa.Array | None = None
    plain: bool = False

    def messages(self, rows: np.ndarray) -> list[str]:
        """Messages for the given row positions (which must all be failing rows)."""
        if self.values is None:
            return [self.message] * len(rows)
        shown = self.values.take(pa.array(rows, type=pa.int64())).to_pylist()
        if self.plain:
            return [self.message.format(value="" if v is None else v) for v in shown]
        return [self.message.format(value=_show(v)) for v in shown]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return repr(value) if not isinstance(value, float) else format(value, "g")


def as_array(value: pa.Array | pa.ChunkedArray | pa.Scalar, n: int) -> pa.Array:
    """Any arrow value as a plain Array of length ``n`` (scalars broadcast, chunks combined)."""
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks() if value.num_chunks != 1 else value.chunk(0)
    if isinstance(value, pa.Scalar):
        if value.type == pa.null():
            return pa.nulls(n)
        return pa.repeat(value, n)
    return value


def to_mask(cond: pa.Array | pa.Scalar, n: int) -> np.ndarray:
    """A boolean arrow value as a numpy mask; null counts as False."""
    if isinstance(cond, pa.Scalar):
        return np.full(n, bool(cond.as_py()), dtype=bool)
    arr = as_array(cond, n)
    if arr.null_count:
        arr = pc.fill_null(arr, False)
    return arr.to_numpy(zero_copy_only=False)


def blank_to_null(arr: pa.Array) -> pa.Array:
    """Empty strings become null (CSV: empty means null).

    Only the empty string: a byte-length test is nearly free, a whitespace regex over every
    column is not. Numbers and dates are trimmed by their coercers, so ``"  "`` is null there.
    """
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        return arr
    blank = pc.equal(pc.binary_length(arr), 0)
    if not pc.any(blank).as_py():
        return arr
    return pc.if_else(blank, pa.scalar(None, arr.type), arr)


def is_string(t: pa.DataType) -> bool:
    """True for string and large_string types."""
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def is_numeric(t: pa.DataType) -> bool:
    """True for integer, floating and decimal types."""
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def combine_errors(errors: list[RowError], n: int) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """Fold row errors into one rejected mask and, per rejected row, ``(code, message)``.

    The first error of a row gives its code; the messages of all its errors are joined, so a
    user sees every problem of a row at once.
    """
    rejected = np.zeros(n, dtype=bool)
    for err in errors:
        rejected |= err.mask
    detail: dict[int, tuple[str, str]] = {}
    if not rejected.any():
        return rejected, detail
    for err in errors:
        rows = np.flatnonzero(err.mask)
        if not len(rows):
            continue
        for row, msg in zip(rows.tolist(), err.messages(rows), strict=True):
            if row in detail:
                code, prev = detail[row]
                detail[row] = (code, f"{prev}; {msg}")
            else:
                detail[row] = (err.code, msg)
    return rejected, detail
