"""Nested paths into Arrow tables: ``billingAccount.id``, ``appliedTax[0].taxRate``,
``appliedTax[].taxAmount.value`` and their per-row aggregates.

TMF678 records arrive as struct and list columns. A path is resolved with Arrow kernels on
whole columns: struct fields are child arrays, ``[i]`` takes one element per row, ``[]`` keeps
the list so that later steps apply to every element, and an aggregate folds it back to one
value per row. A flat column whose name is the whole dotted text (``billingAccount.id`` from a
flattened JSON, ``Account__r.Name`` from a Salesforce query) wins over the nested reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.mappers.rows import as_array, is_numeric, is_string


@dataclass(frozen=True)
class Segment:
    """One step of a path: a name, then optionally ``[i]`` (index), ``[]`` (each) or
    ``[member=value]`` (the elements whose member equals value; a list, like ``[]``)."""

    name: str
    index: int | None = None
    each: bool = False
    where: tuple[str, str] | None = None

    def __str__(self) -> str:
        if self.where:
            return f"{self.name}[{self.where[0]}={self.where[1]}]"
        if self.each:
            return f"{self.name}[]"
        return self.name if self.index is None else f"{self.name}[{self.index}]"


@dataclass(frozen=True)
class Path:
    """A parsed path; ``text`` is what the mapping wrote."""

    segments: tuple[Segment, ...]
    text: str

    @property
    def root(self) -> str:
        """The top-level column the path starts from."""
        return self.segments[0].name

    @property
    def is_list(self) -> bool:
        """True when the path yields a list per row (it has ``[]``) and needs an aggregate."""
        return any(s.each for s in self.segments)


class MissingColumn(KeyError):
    """The batch has no column the path starts from."""


def resolve(table: pa.Table, path: Path) -> pa.Array:
    """Evaluate a path over a table.

    Returns:
        An Array of the batch's length: values, or a ListArray when the path has ``[]``.
        A missing struct child yields nulls (JSON records may omit optional members).

    Raises:
        MissingColumn: The top-level column is absent.
    """
    n = table.num_rows
    if path.text in table.column_names:
        return as_array(table.column(path.text), n)
    if path.root not in table.column_names:
        raise MissingColumn(path.root)
    arr: pa.Array = as_array(table.column(path.root), n)
    in_list = False
    for i, seg in enumerate(path.segments):
        if i > 0:
            arr = _field(arr, seg.name, in_list, n)
        if seg.index is not None:
            pick = partial(_element, index=seg.index, in_list=False)
            arr = _map_list(arr, pick) if in_list else pick(arr)
        elif seg.each:
            if in_list:
                raise MissingColumn(f"{path.text}: only one [] or [filter] per path")
            if not pa.types.is_list(arr.type) and not pa.types.is_large_list(arr.type):
                arr = pa.nulls(n, pa.list_(pa.null())) if arr.type == pa.null() else _wrap_scalar_list(arr)
            if seg.where is not None:
                arr = _filter_list(arr, *seg.where)
            in_list = True
    return arr


def _filter_list(arr: pa.Array, member: str, value: str) -> pa.Array:
    """Keep the elements of each row's list whose ``member`` (as text) equals ``value``."""
    if arr.type == pa.null() or not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return arr
    values = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    field = _field(values, member, False, len(values))
    text = field if is_string(field.type) else field.cast(pa.string())
    keep = pc.fill_null(pc.equal(text, value), False).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[keep], minlength=len(arr))[: len(arr)]
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    mask = pc.is_null(arr) if arr.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(keep)), mask=mask)


def _wrap_scalar_list(arr: pa.Array) -> pa.Array:
    # A scalar where a list was expected (a JSON member that is sometimes an object, sometimes
    # a list): treat it as a one-element list rather than failing the batch.
    offsets = pa.array(np.arange(len(arr) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, arr)


def _field(arr: pa.Array, name: str, in_list: bool, n: int) -> pa.Array:
    if in_list:
        return _map_list(arr, lambda v: _field(v, name, False, len(v)))
    if not pa.types.is_struct(arr.type) or arr.type.get_field_index(name) < 0:
        return pa.nulls(n)
    child = pc.struct_field(arr, [arr.type.get_field_index(name)])
    return as_array(child, n)


def _map_list(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply ``fn`` to the values of a list array, keeping the row structure."""
    if arr.type == pa.null() or not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return pa.nulls(len(arr), pa.list_(pa.null()))
    values = pc.list_flatten(arr)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mapped = fn(values)
    mask = pc.is_null(arr) if arr.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets), mapped, mask=mask)


def _element(arr: pa.Array, index: int, in_list: bool) -> pa.Array:
    n = len(arr)
    if arr.type == pa.null() or not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        return pa.nulls(n)
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    valid = lengths > index
    if arr.null_count:
        valid &= arr.is_valid().to_numpy(zero_copy_only=False)
    take = np.where(valid, offsets[:-1] + index, 0)
    if not len(arr.values):
        return pa.nulls(n, arr.type.value_type)
    picked = arr.values.take(pa.array(take, type=pa.int64()))
    return pc.if_else(pa.array(valid), picked, pa.scalar(None, picked.type))


def _parents(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    return pc.list_flatten(arr), pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)


def aggregate(arr: pa.Array, how: str, separator: str = ";") -> pa.Array:
    """Fold a list per row into one value per row.

    ``sum`` and ``count`` of an empty list are 0 (no taxes means zero tax); a null list stays
    null for every aggregate except ``count`` (0). Null elements are ignored.

    Args:
        arr: A ListArray (or anything else: returned as is, as if already one value per row).
        how: ``sum``, ``count``, ``first``, ``join``, ``min`` or ``max``.
        separator: Separator for ``join``.
    """
    n = len(arr)
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        if arr.type == pa.null() and how in ("sum", "count"):
            return pa.repeat(pa.scalar(0.0 if how == "sum" else 0), n)
        return arr
    list_null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    if how == "count":
        return pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int64())
    if how == "first":
        return _element(arr, 0, False)
    values, parents = _parents(arr)
    if how == "join":
        strs = pc.fill_null(values.cast(pa.string()) if not is_string(values.type) else values, "")
        rebuilt = _map_list(arr, lambda _v: strs)
        return pc.binary_join(rebuilt, separator)
    if how == "sum":
        if is_string(values.type):
            values = _parse_numbers(values)
        elif not is_numeric(values.type):
            return pa.nulls(n, pa.float64())
        weights = pc.fill_null(values.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        sums = np.bincount(parents, weights=weights, minlength=n)[:n] if len(parents) else np.zeros(n)
        return pa.array(sums, mask=list_null)
    if how in ("min", "max"):
        grouped = pa.table({"p": pa.array(parents, pa.int64()), "v": values}).group_by("p").aggregate([("v", how)])
        out = np.full(n, -1, dtype=np.int64)
        out[grouped.column("p").to_numpy()] = np.arange(grouped.num_rows)
        found = out >= 0
        res = grouped.column(f"v_{how}").combine_chunks().take(pa.array(np.where(found, out, 0)))
        return pc.if_else(pa.array(found), res, pa.scalar(None, res.type)) if grouped.num_rows else pa.nulls(n)
    raise ValueError(f"unknown aggregate {how!r}")


def _parse_numbers(values: pa.Array) -> pa.Array:
    # Elements that are not numbers are ignored by the aggregate (they count as null).
    ok = pc.match_substring_regex(values, r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")
    return pc.if_else(ok, values, pa.scalar(None, values.type)).cast(pa.float64())
