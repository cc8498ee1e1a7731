"""CSV in and out of the Bulk APIs, through Arrow (no Python work per row)."""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

# Leave headroom under byte limits: Salesforce counts some limits after its own encoding.
_SAFETY = 0.95


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table of string columns (nulls stay null → empty in CSV)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns = []
    for col in table.columns:
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = col.cast(pa.string())
        columns.append(col)
    return pa.table(columns, names=[str(c) for c in frame.columns])


_WRITE = pacsv.WriteOptions(include_header=True, quoting_style="needed")


def write_csv(table: pa.Table) -> bytes:
    """CSV bytes with a header row, LF line endings, strings quoted where needed."""
    sink = pa.BufferOutputStream()  # native: no Python call per block written, as a BytesIO costs
    pacsv.write_csv(table, sink, _WRITE)
    return sink.getvalue().to_pybytes()


class UploadBuffer:
    """One buffer that a job's CSV uploads are written into, one after the other.

    Each upload is a view of the buffer, valid until the next one is written: fine for a job
    whose batches are posted one at a time. Written in place, an upload costs no growing
    output stream and no copy into ``bytes``; each would be fresh memory (a page fault per
    4 KiB: some 100,000 of them for a million line items).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def write(self, table: pa.Table) -> memoryview | None:
        """``table`` as CSV in the buffer (grown up to ``limit``), or None if it is larger."""
        while True:
            if self._buf:
                sink = pa.FixedSizeBufferWriter(pa.py_buffer(self._buf))
                try:
                    pacsv.write_csv(table, sink, _WRITE)
                    return memoryview(self._buf)[:sink.tell()]
                except OSError:  # "Write out of bounds": it does not fit
                    pass
            if len(self._buf) >= self.limit:
                return None
            # A new buffer, never a resize: views of the old one may still be around.
            self._buf = bytearray(min(self.limit, max(2 * len(self._buf), table.nbytes * 3 // 2 + (64 << 10))))


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of a table, written as one CSV upload."""

    start: int
    stop: int
    data: bytes | memoryview


def csv_chunks(table: pa.Table, *, max_rows: int | None, max_bytes: int, reuse: bool = False) -> Iterator[Chunk]:
    """Split ``table`` into CSV uploads within ``max_rows`` rows and ``max_bytes`` bytes.

    A slice that comes out too large is split in proportion to its size and written
    again, so the common case writes every row exactly once. With ``reuse``, every upload
    is written into one :class:`UploadBuffer`: the caller must be done with an upload
    before it asks for the next.
    """
    limit = int(max_bytes * _SAFETY)
    buffer = UploadBuffer(limit) if reuse else None
    step = max_rows or max(table.num_rows, 1)
    pending = [(start, min(start + step, table.num_rows)) for start in range(0, table.num_rows, step)]
    pending.reverse()
    while pending:
        start, stop = pending.pop()
        part = table.slice(start, stop - start)
        view = buffer.write(part) if buffer is not None else None
        if view is not None:
            yield Chunk(start, stop, view)
            continue
        data = write_csv(part)
        if len(data) <= limit or stop - start == 1:
            yield Chunk(start, stop, data)
            continue
        parts = -(-len(data) // limit) + 1
        size = max(1, -(-(stop - start) // parts))
        for s in reversed(range(start, stop, size)):
            pending.append((s, min(s + size, stop)))


#: Bytes parsed at a time. The parser holds every field of a block, converted or not: with
#: 16 MiB blocks, parsing the results of a 50,000-row Bulk 2.0 job (7 MB, three columns
#: converted) peaked at 20 MB of Arrow memory and took 29 ms; with 1 MiB blocks, 9 MB and 12 ms
#: (the blocks stay in the CPU's cache).
READ_BLOCK = 1 << 20


def read_csv(data: bytes | bytearray, *, nullable: bool = False, columns: Collection[str] | None = None, threads: bool = True) -> pa.Table:
    """Parse CSV whose every column is a string.

    Args:
        data: CSV bytes with a header row (an empty body gives an empty table).
        nullable: when True, empty fields become null (query results); otherwise they
            stay ``""`` so echoed columns compare equal to what was sent.
        columns: convert only these columns (those of them the header has, in header
            order); the others are parsed past but never built. ``None``, or none of
            them in the header: all columns.
        threads: parse blocks (:data:`READ_BLOCK`) on Arrow's thread pool. A body of a
            few blocks gains little from it but the threads' own overhead.
    """
    if not data or data.isspace():  # isspace stops at the first byte of a real body
        return pa.table({})
    header = _header(data)
    if columns is not None:
        wanted = set(columns)
        header = [name for name in header if name in wanted] or header
    convert = pacsv.ConvertOptions(
        column_types={name: pa.large_string() for name in header},
        strings_can_be_null=nullable,
        quoted_strings_can_be_null=nullable,
        null_values=[""],  # the text "null" or "NA" in a record is data, never a missing value
        include_columns=header if columns is not None else [],
    )
    return pacsv.read_csv(
        pa.BufferReader(data),  # reads the bytes in place (io.BytesIO would copy them out)
        read_options=pacsv.ReadOptions(block_size=READ_BLOCK, use_threads=threads),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=convert,
    )


def _header(data: bytes | bytearray) -> list[str]:
    """Column names of a CSV body: Salesforce writes the header on one line."""
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).rstrip(b"\r").decode("utf-8-sig")
    return next(csv.reader([first]))
