"""The files biller: streaming reads, exact sources, manifest, bad input, outbox."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsync.billers import BILLER_KINDS, FileBiller, SupportsExport, make_biller
from sfsync.billers.base import REJECT_SCHEMA, Batch
from sfsync.billers.files import FileBillerSettings
from sfsync.billers.sample import generate
from sfsync.errors import UserError
from sfsync.state import StateStore


def biller(path: Path, store: StateStore | None = None, **kw: object) -> FileBiller:
    return FileBiller("ops", FileBillerSettings(path=path, **kw), store)  # type: ignore[arg-type]


def read_all(b: FileBiller, entity: str, **kw: bool) -> list[Batch]:
    return list(b.read(entity, **kw))


def rows(batches: list[Batch]) -> list[dict]:
    return [r for b in batches for r in b.table.to_pylist()]


def rejects(batches: list[Batch]) -> list[dict]:
    return [r for b in batches if b.rejects is not None for r in b.rejects.to_pylist()]


def write(p: Path, text: str | bytes) -> Path:
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_registry_and_abilities(tmp_path: Path) -> None:
    assert BILLER_KINDS["files"] is FileBiller
    b = make_biller("ops", "files", {"path": str(tmp_path), "outbox": str(tmp_path / "out")})
    assert isinstance(b, SupportsExport)
    with pytest.raises(Exception, match="extra"):
        FileBillerSettings.model_validate({"path": str(tmp_path), "bogus": 1})


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_reads_every_entity_of_every_format(tmp_path: Path, fmt: str) -> None:
    counts = generate(tmp_path, 30, 2, seed=4, fmt=fmt)
    b = biller(tmp_path, batch_size=100)
    for entity, n in counts.items():
        batches = read_all(b, entity)
        assert sum(x.num_rows for x in batches) == n, entity
        assert not rejects(batches)
        assert all("_source" in x.table.column_names for x in batches if x.num_rows)
        # exactly one checkpoint per file, on its last batch
        cps = [x.checkpoint for x in batches if x.checkpoint is not None]
        assert len(cps) == len(b.files(entity))
    li = rows(read_all(b, "line_items"))
    if fmt == "csv":
        assert all(isinstance(v, str) for v in (r["amount"] for r in li))
    elif fmt == "parquet":
        assert pa.types.is_decimal(read_all(b, "line_items")[0].table.schema.field("amount").type)


def test_source_is_the_physical_line_even_with_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    write(tmp_path / "line_items_202601.csv",
          'line_item_id,statement_id,amount,description\r\n'
          'L1,S1,1.50,"two\r\nlines"\r\n'
          '\r\n'
          'L2,S1,2.00,"say ""hi"", ok"\r\n'
          'L3,S1,3.00,"a\n\nb\nc"\n'
          'L4,S1,4.00,last-without-newline')
    got = rows(read_all(biller(tmp_path), "line_items"))
    assert [(r["line_item_id"], r["_source"]) for r in got] == [
        ("L1", "line_items_202601.csv:2"), ("L2", "line_items_202601.csv:5"),
        ("L3", "line_items_202601.csv:6"), ("L4", "line_items_202601.csv:10")]
    assert got[0]["description"] == "two\r\nlines" and got[1]["description"] == 'say "hi", ok'


def test_small_chunks_keep_line_numbers_exact(sample_csv: Path) -> None:
    """Chunk boundaries (forced tiny) never shift a line number."""
    big = rows(read_all(biller(sample_csv), "line_items"))
    small = rows(read_all(biller(sample_csv, chunk_bytes=4096, batch_size=77), "line_items"))
    assert [r["_source"] for r in big] == [r["_source"] for r in small]
    assert big == small
    text = (sample_csv / "line_items_202602.csv").read_text("utf-8")
    # every id appears on the physical line its _source names
    lines = text.split("\n")
    for r in big:
        name, line = r["_source"].rsplit(":", 1)
        if name == "line_items_202602.csv":
            assert lines[int(line) - 1].startswith(f'"{r["line_item_id"]}"')


def test_bad_rows_are_rejects_with_file_and_line_and_the_rest_goes_on(tmp_path: Path) -> None:
    write(tmp_path / "line_items_202601.csv",
          "line_item_id,statement_id,amount,quantity\n"
          "L1,S1,1.50,3\n"
          "L2,S1,abc,1\n"        # non-numeric amount
          "L3,S1\n"              # ragged
          "L4,S1,2,1.5\n"        # non-integer quantity
          "L1,S1,9.99,1\n"       # duplicate key
          "L5,S1,-3.25,\n")
    batches = read_all(biller(tmp_path, chunk_bytes=4096), "line_items")
    assert [r["line_item_id"] for r in rows(batches)] == ["L1", "L5"]
    rej = {(r["_source"], r["code"]) for r in rejects(batches)}
    assert rej == {("line_items_202601.csv:3", "NOT_NUMERIC"), ("line_items_202601.csv:4", "RAGGED_ROW"),
                   ("line_items_202601.csv:5", "NOT_NUMERIC"), ("line_items_202601.csv:6", "DUPLICATE_KEY")}
    dup = next(r for r in rejects(batches) if r["code"] == "DUPLICATE_KEY")
    assert "first at line_items_202601.csv:2" in dup["message"]
    assert batches[-1].checkpoint is not None  # the file was read: it can be marked once loaded
    assert batches[0].rejects.schema == REJECT_SCHEMA


def test_duplicate_keys_found_across_batches_of_one_file_not_across_files(tmp_path: Path) -> None:
    body = "".join(f"L{i},S,1\n" for i in range(500))
    write(tmp_path / "line_items_202601.csv", "line_item_id,statement_id,amount\n" + body + "L7,S,2\n")
    write(tmp_path / "line_items_202602.csv", "line_item_id,statement_id,amount\nL7,S,3\n")
    batches = read_all(biller(tmp_path, batch_size=50, chunk_bytes=4096), "line_items")
    rej = rejects(batches)
    assert [(r["_source"], r["code"]) for r in rej] == [("line_items_202601.csv:502", "DUPLICATE_KEY")]
    assert sum(b.num_rows for b in batches) == 501


def test_file_level_errors_do_not_stop_other_files(tmp_path: Path, sample_csv: Path) -> None:
    write(tmp_path / "line_items_202601.csv", "line_item_id,statement_id,amount\nL1,S1,caf\xe9\n".encode("latin-1"))
    write(tmp_path / "line_items_202602.csv", "statement_id,amount\nS1,1\n")          # missing required column
    good = (sample_csv / "line_items_202601.parquet")
    generate(tmp_path / "pq", 10, 1, seed=1, fmt="parquet")
    data = (tmp_path / "pq" / "line_items_202601.parquet").read_bytes()
    write(tmp_path / "line_items_202603.parquet", data[: len(data) // 2])              # truncated
    os.symlink(tmp_path / "nowhere.csv", tmp_path / "line_items_202604.csv")            # unreadable
    write(tmp_path / "line_items_202605.csv", "line_item_id,statement_id,amount\nL9,S9,1.00\n")
    del good
    batches = read_all(biller(tmp_path), "line_items")
    errors = {b.source: (b.rejects.to_pylist()[0]["code"], b.file_error) for b in batches if b.file_error}
    assert errors["line_items_202601.csv"][0] == "FILE_ENCODING" and "line 2" in errors["line_items_202601.csv"][1]
    assert errors["line_items_202602.csv"][0] == "MISSING_COLUMNS" and "line_item_id" in errors["line_items_202602.csv"][1]
    assert errors["line_items_202603.parquet"][0] == "FILE_TRUNCATED"
    assert errors["line_items_202604.csv"][0] == "FILE_UNREADABLE"
    assert all(b.checkpoint is None for b in batches if b.file_error)
    assert [r["line_item_id"] for r in rows(batches)] == ["L9"]


def test_declared_encodings_latin1_and_utf8_bom(tmp_path: Path) -> None:
    write(tmp_path / "accounts.csv", "account_number;name\nBA-1;Société Générale Télécom\n".encode("latin-1"))
    b = biller(tmp_path, csv={"delimiter": ";", "encoding": "latin-1"})
    assert rows(read_all(b, "accounts"))[0]["name"] == "Société Générale Télécom"
    write(tmp_path / "accounts.csv", b"\xef\xbb\xbfaccount_number,name\nBA-1,Zo\xc3\xab\n")
    assert rows(read_all(biller(tmp_path), "accounts"))[0] == {"account_number": "BA-1", "name": "Zoë",
                                                                "_source": "accounts.csv:2"}
    with pytest.raises(Exception, match="unsupported encoding"):
        FileBillerSettings(path=tmp_path, csv={"encoding": "utf-16"})


def test_headerless_csv_with_configured_columns(tmp_path: Path) -> None:
    write(tmp_path / "accounts.csv", "BA-1,Acme\nBA-2,Globex\n")
    b = biller(tmp_path, csv={"header": False, "columns": ["account_number", "name"]})
    assert [r["_source"] for r in rows(read_all(b, "accounts"))] == ["accounts.csv:1", "accounts.csv:2"]


def test_jsonl_bad_lines_are_rejects(tmp_path: Path) -> None:
    write(tmp_path / "disputes_202601.jsonl",
          '{"dispute_id": "D1", "account_number": "BA-1", "amount": 1.5}\n'
          '{"dispute_id": "D2", "account_number": \n'
          '\n'
          '{"dispute_id": "D3", "account_number": "BA-1", "amount": "lots"}\n'
          '{"dispute_id": "D4", "account_number": "BA-2", "amount": "2.50"}\n')
    batches = read_all(biller(tmp_path), "disputes")
    assert [(r["dispute_id"], r["_source"], r["amount"]) for r in rows(batches)] == [
        ("D1", "disputes_202601.jsonl:1", 1.5), ("D4", "disputes_202601.jsonl:5", 2.5)]
    assert [(r["_source"], r["code"]) for r in rejects(batches)] == [
        ("disputes_202601.jsonl:2", "BAD_RECORD"), ("disputes_202601.jsonl:4", "NOT_NUMERIC")]


def test_manifest_skips_identical_files_rereads_changed_ones_marks_only_on_commit(
        tmp_path: Path, store: StateStore) -> None:
    generate(tmp_path, 20, 2, seed=1)
    b = biller(tmp_path, store)
    first = read_all(b, "statements")
    assert len([x for x in first if x.checkpoint]) == 2
    # nothing committed: everything is read again
    assert sum(x.num_rows for x in read_all(b, "statements")) == sum(x.num_rows for x in first)
    assert store.file_status("ops", "statements_202601.csv") is None
    for x in first:
        if x.checkpoint is not None:
            b.commit(x.checkpoint)
    entry = store.file_status("ops", "statements_202601.csv")
    assert entry is not None and entry.status == "processed" and entry.size > 0 and entry.checksum.startswith("xxh3-128:") and len(entry.checksum) == 41
    assert read_all(b, "statements") == []
    # same content re-delivered (touched): still skipped; changed content: read again
    os.utime(tmp_path / "statements_202601.csv")
    assert read_all(b, "statements") == []
    p = tmp_path / "statements_202602.csv"
    p.write_text(p.read_text("utf-8").replace("EUR", "USD", 1), "utf-8")
    again = read_all(b, "statements")
    assert {x.source for x in again} == {"statements_202602.csv"}
    assert sum(x.num_rows for x in read_all(b, "statements", full=True)) == sum(x.num_rows for x in first)


def test_file_that_fails_midway_is_not_marked(tmp_path: Path, store: StateStore) -> None:
    good = "".join(f"L{i},S,1\n" for i in range(2000))
    write(tmp_path / "line_items_202601.csv", ("line_item_id,statement_id,amount\n" + good).encode() + b"L9,S,\xff\n")
    batches = read_all(biller(tmp_path, store, chunk_bytes=4096, batch_size=500), "line_items")
    assert batches[-1].file_error and "FILE_ENCODING" == batches[-1].rejects.to_pylist()[0]["code"]
    assert all(x.checkpoint is None for x in batches)
    assert sum(x.num_rows for x in batches) >= 1500  # rows before the bad chunk still flow


def test_empty_and_header_only_files_are_processed(tmp_path: Path, store: StateStore) -> None:
    write(tmp_path / "usage_202601.csv", "usage_id,account_number\n")
    batches = read_all(biller(tmp_path, store), "usage")
    assert len(batches) == 1 and batches[0].num_rows == 0 and batches[0].checkpoint is not None


_awkward = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(_awkward, _awkward), min_size=1, max_size=8))
def test_csv_round_trip_of_awkward_strings(tmp_path_factory: pytest.TempPathFactory, values: list) -> None:
    d = tmp_path_factory.mktemp("rt")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["account_number", "name"])
    for i, (_a, name) in enumerate(values):
        w.writerow([f"BA-{i}", name])
    (d / "accounts.csv").write_text(buf.getvalue(), "utf-8", newline="")
    got = rows(read_all(biller(d, chunk_bytes=4096), "accounts"))
    want = [(f"BA-{i}", name or None) for i, (_a, name) in enumerate(values)]
    assert [(r["account_number"], r["name"]) for r in got] == want
    # the source line is where the record starts
    lines = buf.getvalue().split("\n")
    for r in got:
        assert lines[int(r["_source"].rsplit(":", 1)[1]) - 1].startswith(r["account_number"])


def test_outbox_writes_atomically_and_never_twice(tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    b = biller(tmp_path, outbox=out)
    recs = [{"sf_id": "a01", "amount": 10.5, "memo": 'x, "y"'}, {"sf_id": "a02", "amount": 3}]
    r1 = b.export("payments", recs)
    assert all(r.ok for r in r1) and r1[0].reference == r1[1].reference
    r2 = b.export("payments", [*recs, {"sf_id": "a03", "amount": 1}])
    assert [r.ok for r in r2] == [True, True, True] and r2[0].reference == r1[0].reference
    files = sorted(p.name for p in out.glob("*.csv"))
    assert len(files) == 2 and not list(out.glob("*.tmp"))
    written = [row["sf_id"] for f in files for row in csv.DictReader(open(out / f, encoding="utf-8"))]
    assert sorted(written) == ["a01", "a02", "a03"]
    # a crash after the rename but before the manifest append: the file's ids are recovered
    (out / ".manifest.jsonl").write_text("".join(
        line + "\n" for line in (out / ".manifest.jsonl").read_text().splitlines()
        if json.loads(line)["sf_id"] != "a03"))
    r3 = b.export("payments", [{"sf_id": "a03", "amount": 1}])
    assert r3[0].ok and len(list(out.glob("*.csv"))) == 2
    with pytest.raises(UserError):
        b.export("refunds", recs)
    with pytest.raises(UserError, match="no outbox"):
        biller(tmp_path).export("payments", recs)


def test_parquet_sources_are_row_numbers(tmp_path: Path) -> None:
    pq.write_table(pa.table({"usage_id": ["U1", "U2"], "account_number": ["A", "B"]}), tmp_path / "usage_202601.parquet")
    assert [r["_source"] for r in rows(read_all(biller(tmp_path), "usage"))] == [
        "usage_202601.parquet:1", "usage_202601.parquet:2"]


def test_words_that_look_like_nulls_stay_text(tmp_path: Path) -> None:
    """A description reading "null", "NA" or "N/A" is the biller's text, not a missing value."""
    from sfsync.billers.files import FileBiller, FileBillerSettings

    d = tmp_path / "drop"
    d.mkdir()
    (d / "accounts.csv").write_text("account_number,name\nBA-1,null\nBA-2,NA\nBA-3,N/A\nBA-4,\n")
    biller = FileBiller("t", FileBillerSettings(path=d, dedup=False), None)
    rows = [r for b in biller.read("accounts") for r in b.table.to_pylist()]
    assert [r["name"] for r in rows] == ["null", "NA", "N/A", None]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.tuples(_awkward, _awkward), min_size=0, max_size=30),
       chunk=st.integers(min_value=1, max_value=300), bom=st.booleans(), final_newline=st.booleans())
def test_csv_chunks_match_the_stdlib_reader_across_any_chunk_boundary(values: list, chunk: int, bom: bool,
                                                                      final_newline: bool) -> None:
    """Tiny chunks put record boundaries (and records longer than the buffer) everywhere: the
    rows, their values and their first lines are exactly what the stdlib csv module reads."""
    from sfsync.billers._csvread import CsvChunks

    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows([["a", "b"], *([f"k{i}{a}", b] for i, (a, b) in enumerate(values))])
    text = buf.getvalue() if final_newline or not values else buf.getvalue()[:-1]
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    reader = CsvChunks(io.BytesIO(data), chunk_bytes=chunk)
    got = [(row, int(line)) for ch in reader for row, line in zip(ch.table.to_pylist(), ch.lines, strict=True)]
    want = []
    stdlib = csv.reader(io.StringIO(text, newline=""))
    next(stdlib)
    start = stdlib.line_num + 1
    for rec in stdlib:
        want.append(({"a": rec[0] or None, "b": rec[1] or None}, start))
        start = stdlib.line_num + 1
    assert reader.columns == ["a", "b"]
    assert got == want
    assert reader.size == len(data)


def test_batches_hold_at_least_half_a_batch_and_the_tail_joins_the_last(tmp_path: Path) -> None:
    """Each batch is one Bulk job downstream: no batch of a few rows at the end of every file."""
    body = "".join(f"L{i:04d},S,1\n" for i in range(1150))
    write(tmp_path / "line_items_202601.csv", "line_item_id,statement_id,amount\n" + body)
    batches = read_all(biller(tmp_path, batch_size=300, chunk_bytes=4096), "line_items")
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == 1150 and all(150 <= n < 450 for n in sizes), sizes
    assert [b.checkpoint is not None for b in batches] == [False] * (len(batches) - 1) + [True]
    assert [r["line_item_id"] for r in rows(batches)] == [f"L{i:04d}" for i in range(1150)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5])
def test_a_bom_split_across_tiny_reads_leaves_the_header_intact(chunk: int) -> None:
    from sfsync.billers._csvread import CsvChunks

    reader = CsvChunks(io.BytesIO(b"\xef\xbb\xbfa\nx\ny\n"), chunk_bytes=chunk)
    got = [(row["a"], int(line)) for ch in reader for row, line in zip(ch.table.to_pylist(), ch.lines, strict=True)]
    assert reader.columns == ["a"] and got == [("x", 2), ("y", 3)]
