"""The lookup cache: what the run wrote or read once is answered without asking the org again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.jobs.resolve import LookupResolver


class Org:
    """Answers the two queries the resolver makes, from a list of (AccountNumber, Id), oldest first."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.rows = rows
        self.soql: list[str] = []

    def query(self, soql: str) -> Iterator[dict[str, Any]]:
        self.soql.append(soql)
        wanted = soql.split(" IN (", 1)[1].rsplit(")", 2)[0]
        return iter([{"AccountNumber": v, "Id": i} for v, i in self.rows if f"'{v}'" in wanted])

    def query_tables(self, soql: str) -> Iterator[pa.Table]:
        self.soql.append(soql)
        half = len(self.rows) // 2  # two pages
        for part in (self.rows[:half], self.rows[half:]):
            yield pa.table({"AccountNumber": [v for v, _ in part], "Id": [i for _, i in part]})


def test_few_values_are_queried_once_and_the_oldest_match_wins() -> None:
    org = Org([("BA-1", "001A"), ("BA-2", "001B"), ("BA-1", "001Z")])  # BA-1 twice: 001A is older
    r = LookupResolver(org)  # type: ignore[arg-type]
    assert r("Account", "AccountNumber", {"BA-1", "BA-2", "BA-9"}) == {"BA-1": "001A", "BA-2": "001B"}
    assert r("Account", "AccountNumber", {"BA-1", "BA-2"}) == {"BA-1": "001A", "BA-2": "001B"}
    assert len(org.soql) == 1


def test_what_the_run_wrote_is_known_and_kept_first() -> None:
    org = Org([("BA-1", "001OLD")])
    r = LookupResolver(org)  # type: ignore[arg-type]
    r.remember("Account", "AccountNumber", [("BA-1", "001NEW"), ("BA-2", "001B"), (None, "001X"), ("BA-3", None)])
    r.remember("Account", "AccountNumber", [("BA-2", "001LATER")])
    values, ids = r.lookup("Account", "AccountNumber", pa.array(["BA-2", "BA-1", "BA-3"]))
    assert dict(zip(values.to_pylist(), ids.to_pylist(), strict=True)) == {"BA-1": "001NEW", "BA-2": "001B"}
    assert org.soql and "'BA-3'" in org.soql[0] and "'BA-1'" not in org.soql[0]


def test_many_values_read_the_whole_field_once() -> None:
    rows = [(f"BA-{i}", f"001{i:012d}") for i in range(5000)]
    org = Org(rows)
    r = LookupResolver(org, preload_threshold=100)  # type: ignore[arg-type]
    asked = pa.array([f"BA-{i}" for i in range(0, 6000, 3)])
    values, ids = r.lookup("Account", "AccountNumber", asked)
    assert len(values) == len(range(0, 5000, 3)) and ids[0].as_py() == "001000000000000"
    assert len(org.soql) == 1 and "IN (" not in org.soql[0]
    r.lookup("Account", "AccountNumber", pa.array(["BA-5999", "BA-7"]))  # read in full: no more queries
    assert len(org.soql) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([f"BA-{i}" for i in range(15)] + [""]),
                                   st.sampled_from(["001A", "001B", "001C", ""])), max_size=8), max_size=5),
       st.lists(st.sampled_from([f"BA-{i}" for i in range(20)]), unique=True, max_size=20),
       st.booleans())
def test_lookup_answers_like_a_dict_of_first_writes(batches: list[list[tuple[str, str]]], asked: list[str],
                                                     collide: bool) -> None:
    import numpy as np

    from sfsync.jobs import resolve

    expected: dict[str, str] = {}
    r = LookupResolver(Org([]), preload_threshold=1_000)  # type: ignore[arg-type]
    real = resolve.hash_strings
    try:
        if collide:  # two hash values for every string: candidates are checked by value, not hash
            resolve.hash_strings = lambda v: real(v) & np.uint64(1)  # type: ignore[assignment]
        for batch in batches:
            r.remember_arrays("Account", "AccountNumber", pa.array([v for v, _ in batch], pa.string()),
                              pa.array([i for _, i in batch], pa.string()))
            for v, i in batch:
                if v and i:
                    expected.setdefault(v, i)
            values, ids = r.lookup("Account", "AccountNumber", pa.array(asked, pa.string()))
            got = dict(zip(values.to_pylist(), ids.to_pylist(), strict=True))
            if not collide:
                assert got == {k: expected[k] for k in asked if k in expected}
            else:  # colliding values may be dropped from the cache (then asked of the org), never mixed up
                assert all(expected.get(k) == i for k, i in got.items())
    finally:
        resolve.hash_strings = real
