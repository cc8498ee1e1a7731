"""Hashing strings in bulk: a value's hash is its own, whatever batch it comes in."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from sfsync.hashing import combine, hash_strings


@given(st.lists(st.text(max_size=90), min_size=1, max_size=30), st.text(max_size=90))
def test_a_strings_hash_does_not_depend_on_its_batch(batch: list[str], value: str) -> None:
    alone = hash_strings(pa.array([value]))[0]
    assert hash_strings(pa.array([*batch, value]))[-1] == alone
    assert hash_strings(pa.array([value, *batch]).slice(0, 1))[0] == alone


def test_distinct_values_hash_apart_and_null_is_empty() -> None:
    values = ["", "a", "a\x00", "ab", "é", "files:LI-000000001", "files:LI-000000002", "x" * 64, None]
    h = hash_strings(pa.array(values)).tolist()
    assert len(set(h[:-1])) == len(values) - 1 and h[-1] == h[0]
    many = hash_strings(pa.array([f"LI-{i}" for i in range(200_000)]))
    assert len(set(many.tolist())) == 200_000


def test_combine_is_ordered() -> None:
    a, b = hash_strings(pa.array(["x"])), hash_strings(pa.array(["y"]))
    assert combine(a, b)[0] != combine(b, a)[0]
