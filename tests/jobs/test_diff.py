"""Diffing mapped rows against the state store."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from sfsync.jobs.diff import diff, payload_hash
from sfsync.state.segments import Probe, ScopeIndex, build


def probe(keys: list[str], states: tuple[list[str], list[str | None], list[int]]) -> Probe:
    """What a store holding ``states`` (keys, Ids, hashes) answers for ``keys``."""
    index = ScopeIndex(with_ids=True)
    if states[0]:
        index.add(build(*states[:2], np.asarray(states[2], dtype=np.int64)), 1)
    return index.probe(keys)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"A": ["x", "y", None], "B": ["1.00", "2.00", "3.00"], "_source": ["f:2", "f:3", "f:4"]})


def test_hash_ignores_bookkeeping_columns_and_column_order() -> None:
    f = frame()
    h1 = payload_hash(f, ["A", "B"])
    f2 = f[["B", "A"]].assign(_source=["g:1", "g:2", "g:3"])
    assert (payload_hash(f2, ["B", "A"]) == h1).all()


def test_hash_changes_with_values_and_with_column_names() -> None:
    f = frame()
    h = payload_hash(f, ["A", "B"])
    g = f.copy()
    g.loc[1, "B"] = "2.01"
    hg = payload_hash(g, ["A", "B"])
    assert h[0] == hg[0] and h[1] != hg[1]
    renamed = f.rename(columns={"B": "C"})
    assert (payload_hash(renamed, ["A", "C"]) != h).all()


def test_null_and_empty_string_are_the_same_payload() -> None:
    a = pd.DataFrame({"A": [None]})
    b = pd.DataFrame({"A": [""]})
    assert payload_hash(a, ["A"])[0] == payload_hash(b, ["A"])[0]


def test_diff_splits_new_changed_unchanged() -> None:
    f = frame()
    keys = ["k1", "k2", "k3"]
    h = payload_hash(f, ["A", "B"])
    states = (["k2", "k1", "other"], ["a0X2", "a0X1", "a0X9"], [int(h[1]) + 1, int(h[0]), 7])
    d = diff(h, probe(keys, states))
    assert list(d.unchanged) == [True, False, False]
    assert list(d.changed) == [False, True, False]
    assert list(d.new) == [False, False, True]
    assert list(d.send) == [False, True, True]
    assert d.known_ids.tolist()[:2] == ["a0X1", "a0X2"]
    full = diff(h, probe(keys, states), full=True)
    assert list(full.send) == [True, True, True]
    nothing = diff(h, Probe.empty(3))
    assert list(nothing.new) == [True, True, True] and nothing.known_ids.tolist() == [None, None, None]


def test_diff_keeps_64_bit_hashes_exact() -> None:
    # Two hashes one apart near 2**63 are equal as floats: the comparison must stay integer.
    big = np.array([2**63 - 1, -(2**63)], dtype=np.int64)
    d = diff(big, probe(["a", "b"], (["a", "b"], [None, None], [2**63 - 2, -(2**63)])))
    assert list(d.changed) == [True, False] and list(d.unchanged) == [False, True]


@given(st.lists(st.text(max_size=20), min_size=1, max_size=50))
def test_identical_rows_hash_identically(values: list[str]) -> None:
    f = pd.DataFrame({"A": values})
    assert (payload_hash(f, ["A"]) == payload_hash(f.copy(), ["A"])).all()
