"""Segments of record state: whatever the merges, a key's latest write is what a probe finds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.state.segments import Scan, ScopeIndex, build, merge, versioned
from sfsync.state.segments import key_hashes as segments_key_hashes

writes = st.lists(  # segments, each a list of (key, hash or None for a delete)
    st.lists(st.tuples(st.sampled_from([f"k{i}" for i in range(12)]), st.one_of(st.none(), st.integers(-5, 5))),
             min_size=1, max_size=8),
    min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(writes, st.data())
def test_probe_finds_the_latest_write_whatever_was_merged(segments: list[list[tuple[str, int | None]]],
                                                          data: st.DataObject) -> None:
    expected: dict[str, int | None] = {}
    tables = []
    for seg_id, seg in enumerate(segments, start=1):
        keys = [k for k, _ in seg]
        tables.append(versioned(build(keys, [f"id-{k}" for k in keys], [h for _, h in seg]), seg_id))
        expected.update(dict(seg))
    # Merge some of them (any subset, in any order), as compaction or another worker might.
    picked = data.draw(st.lists(st.integers(0, len(tables) - 1), unique=True, max_size=len(tables)))
    rest = [t for i, t in enumerate(tables) if i not in picked]
    stored = ([merge([tables[i] for i in picked])] if picked else []) + rest
    index = ScopeIndex(with_ids=data.draw(st.booleans()))
    index.cap = data.draw(st.sampled_from([2, 5, 1 << 20]))  # runs this small: versions decide across runs
    order = data.draw(st.permutations(stored))
    if data.draw(st.booleans()):  # all at once, as a store folds in what it finds
        index.load([(t, 1000 + n) for n, t in enumerate(order)])
    else:  # one by one, as a load's own writes arrive
        for n, table in enumerate(order):
            index.add(table, 1000 + n)
    asked = [f"k{i}" for i in range(12)]
    p = index.probe(asked)
    for k, present, h in zip(asked, p.present.tolist(), p.hash.tolist(), strict=True):
        want = expected.get(k)
        assert present == (want is not None), k
        assert h == (want if want is not None else 0), k
    if p.sf_ids is not None:
        assert [i for i in p.sf_ids if i is not None] == [f"id-{k}" for k in asked if expected.get(k) is not None]
    # One pass over the same segments (a load's window scan) finds the same, whatever their order;
    # keys asked twice (and keys never written) included.
    twice = asked + data.draw(st.lists(st.sampled_from(asked + ["nope"]), max_size=6))
    scan = Scan(segments_key_hashes(twice))
    for n, table in enumerate(order):
        scan.add(table, 1000 + n)
    s = scan.probe()
    assert s.present.tolist() == [expected.get(k) is not None for k in twice]
    assert s.hash.tolist() == [expected.get(k) or 0 for k in twice]
    by_id = {1000 + n: t for n, t in enumerate(order)}
    for seg_id, at, pos in scan.winners():
        keys = by_id[seg_id].column("key").take(pos).to_pylist()
        assert sorted(keys) == sorted({twice[i] for i in range(len(twice)) if scan.inverse[i] in set(at.tolist())})


def test_one_write_of_a_key_twice_keeps_the_last() -> None:
    table = build(["a", "b", "a"], ["1", "2", "3"], np.array([1, 2, 3], dtype=np.int64))
    assert dict(zip(table.column("key").to_pylist(), table.column("hash").to_pylist(), strict=True)) == {"a": 3, "b": 2}


def test_build_with_the_callers_key_hashes_is_the_same_segment() -> None:
    import pytest

    keys = ["acme:LI-3", "acme:LI-1", "acme:LI-2", "acme:LI-1"]
    ids, hashes = ["a3", "a1", "a2", "b1"], np.array([3, 1, 2, 11], dtype=np.int64)
    given_ = build(keys, ids, hashes, segments_key_hashes(keys))
    assert given_.equals(build(keys, ids, hashes))
    assert given_.column("sf_id").to_pylist().count("b1") == 1  # the last of a repeated key wins, as without
    with pytest.raises(ValueError, match="3 key hashes for 4 keys"):
        build(keys, ids, hashes, segments_key_hashes(keys[:3]))
