"""Duplicate-key detection across batches: the first occurrence is named, whatever the sort does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.billers._arrowutil import SeenKeys

batches = st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=40), min_size=1, max_size=6)


@settings(max_examples=80, deadline=None)
@given(batches)
def test_check_names_each_duplicate_and_its_first_occurrence(batches: list[list[int]]) -> None:
    seen = SeenKeys()
    before: set[int] = set()
    for batch in batches:
        h = np.asarray(batch, dtype=np.uint64)
        dup, first = seen.check(h)
        for i, key in enumerate(batch):
            earlier_here = batch.index(key)
            if key in before:  # met in an earlier batch: a duplicate, its first row not in this one
                assert dup[i] and first[i] == -1
            elif earlier_here < i:
                assert dup[i] and first[i] == earlier_here
            else:
                assert not dup[i] and first[i] == i
        before.update(batch)
    assert len(seen) == len(before)
