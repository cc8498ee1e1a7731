"""Matching echoed bulk results to input rows, and parsing bulk error strings."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.salesforce.csvio import csv_chunks, read_csv, write_csv
from sfsync.salesforce.results import match_on_key, match_positions, split_errors

values = st.sampled_from(["", "a", "b", "a,b", 'q"x', "line\nbreak", "é"])


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(values, values), min_size=1, max_size=40), key=st.sampled_from([None, "k"]), seed=st.integers(0, 10**6))
def test_every_echoed_row_finds_a_distinct_identical_input_row(rows, key, seed):
    sent = pa.table({"k": [r[0] for r in rows], "v": [r[1] for r in rows]})
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    cut = len(order) // 2
    halves = [sent.take(pa.array(order[:cut], type=pa.int64())), sent.take(pa.array(order[cut:], type=pa.int64()))]
    positions = np.concatenate(match_positions(sent, halves, key))
    assert sorted(positions.tolist()) == list(range(len(rows)))  # a bijection
    echoed = pa.concat_tables(halves)
    assert sent.take(pa.array(positions)).to_pylist() == echoed.to_pylist()  # onto identical content


def test_results_that_match_nothing_are_minus_one():
    sent = pa.table({"k": ["a", "b"]})
    (positions,) = match_positions(sent, [pa.table({"k": ["b", "zz"]})], "k")
    assert positions.tolist() == [1, -1]


def test_split_errors():
    codes, messages = split_errors(
        [
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --",
            "INVALID_FIELD:Foreign key external ID: X not found for field F in entity E:--",
            "Duplicate external id specified: 12",
        ]
    )
    assert codes.tolist() == ["REQUIRED_FIELD_MISSING", "INVALID_FIELD", "UNKNOWN_ERROR"]
    assert messages.tolist() == ["Required fields are missing: [Name]", "Foreign key external ID: X not found for field F in entity E", "Duplicate external id specified: 12"]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 300), max_rows=st.integers(1, 120), max_bytes=st.integers(200, 5000), reuse=st.booleans())
def test_csv_chunks_stay_within_limits_and_cover_every_row_once(n, max_rows, max_bytes, reuse):
    table = pa.table({"Name": [f"row {i} " + "x" * (i % 37) for i in range(n)]})
    chunks = []
    # With reuse, an upload is a view of one buffer: checked before the next is written.
    for c in csv_chunks(table, max_rows=max_rows, max_bytes=max_bytes, reuse=reuse):
        assert c.stop - c.start <= max_rows
        assert len(c.data) <= max_bytes or c.stop - c.start == 1
        assert bytes(c.data) == write_csv(table.slice(c.start, c.stop - c.start))
        assert read_csv(bytes(c.data)).column("Name").to_pylist() == table.column("Name").to_pylist()[c.start : c.stop]
        chunks.append(c)
    assert [c.start for c in chunks] == [0] + [c.stop for c in chunks[:-1]] and chunks[-1].stop == n


def test_read_csv_converts_only_the_columns_asked_for_in_header_order():
    data = b'"sf__Id","sf__Created",Ext__c,Note__c\n"a1","true","L1","x, ""y""\nz"\n"a2","false","L2",""\n'
    table = read_csv(data, columns=("Ext__c", "sf__Id", "Absent__c"), threads=False)
    assert table.column_names == ["sf__Id", "Ext__c"]
    assert table.to_pydict() == {"sf__Id": ["a1", "a2"], "Ext__c": ["L1", "L2"]}
    # None of them in the header: every column, as without ``columns``.
    assert read_csv(data, columns=("Absent__c",)).to_pylist() == read_csv(data).to_pylist()
    assert read_csv(data).column("Note__c").to_pylist() == ['x, "y"\nz', ""]
    assert read_csv(b"", columns=("Ext__c",)).num_rows == 0


def test_match_on_key_declines_repeated_or_missing_keys():
    sent = pa.table({"k": ["a", "b", "c"], "v": ["1", "2", "3"]})
    ok, bad = match_on_key(sent, [pa.table({"k": ["c", "a"]}), pa.table({"k": ["b"]})], "k")
    assert ok.tolist() == [2, 0] and bad.tolist() == [1]
    assert match_on_key(pa.table({"k": ["a", "a"], "v": ["1", "2"]}), [pa.table({"k": ["a"]})], "k") is None
    assert match_on_key(sent, [pa.table({"v": ["1"]})], "k") is None  # a result file without the key
    assert [p.tolist() for p in match_on_key(sent, [pa.table({"v": []}), pa.table({})], "k")] == [[], []]


def test_match_on_a_composite_key_uses_its_columns_together():
    """An insert of balances (account + date) is matched on those two columns alone."""
    sent = pa.table({"acct": ["A", "A", "B"], "day": ["1", "2", "1"], "amount": ["5", "5", "5"]})
    ok, bad = match_on_key(sent, [pa.table({"acct": ["B", "A"], "day": ["1", "2"]}),
                                  pa.table({"acct": ["A", "C"], "day": ["1", "1"]})], ["acct", "day"])
    assert ok.tolist() == [2, 1] and bad.tolist() == [0, -1]
    # one column alone repeats: the pair is needed; a repeated pair declines (all columns then)
    assert match_on_key(sent, [pa.table({"acct": ["A"]})], ["acct"]) is None
    twice = pa.table({"acct": ["A", "A"], "day": ["1", "1"], "amount": ["5", "6"]})
    assert match_on_key(twice, [pa.table({"acct": ["A"], "day": ["1"]})], ["acct", "day"]) is None


def test_keys_are_matched_by_hash_and_confirmed_by_their_text(monkeypatch):
    """A hash shared by different keys never matches them: hits are compared as strings."""
    from sfsync.salesforce import results

    def by_length(values):  # a deliberately poor hash: keys of one length collide
        return np.asarray(pa.compute.binary_length(values.cast(pa.string())).to_numpy(zero_copy_only=False), dtype=np.uint64)

    monkeypatch.setattr(results, "hash_strings", by_length)
    sent = pa.table({"k": ["ab", "xyz", "q"]})
    (positions,) = match_on_key(sent, [pa.table({"k": ["cd", "xyz", "q", "ab"]})], "k")
    assert positions.tolist() == [-1, 1, 2, 0]
    # Sent keys sharing a hash: matched exactly by the slower way, repeats still declined.
    sent = pa.table({"k": ["ab", "cd", "efg"]})
    (positions,) = match_on_key(sent, [pa.table({"k": ["cd", "ab", "zz", "efg"]})], "k")
    assert positions.tolist() == [1, 0, -1, 2]
    assert match_on_key(pa.table({"k": ["ab", "ab"]}), [pa.table({"k": ["ab"]})], "k") is None


def test_a_body_of_many_parse_blocks_reads_back_whole_with_values_spanning_block_edges():
    from sfsync.salesforce.csvio import READ_BLOCK

    n = 30_000  # ~3 READ_BLOCKs of CSV: block edges fall inside quoted values with newlines and commas
    sent = pa.table({"sf__Id": [f"a0B{i:015d}" for i in range(n)],
                     "Note__c": [f'line {i},\n"quoted" {"x" * (i % 50)}' for i in range(n)],
                     "Ext__c": [f"acme:{i}" for i in range(n)]})
    body = write_csv(sent)
    assert len(body) > 2 * READ_BLOCK
    for threads in (False, True):
        table = read_csv(body, columns=("sf__Id", "Ext__c"), threads=threads)
        assert table.column("sf__Id").num_chunks > 1
        assert table.to_pydict() == sent.select(["sf__Id", "Ext__c"]).to_pydict()
        assert read_csv(body, threads=threads).column("Note__c").to_pylist() == sent.column("Note__c").to_pylist()
