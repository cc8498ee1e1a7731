"""Streaming JSON Lines reading with exact line numbers and per-line rejects.

Chunks are cut at newlines (JSON Lines never holds a raw newline inside a value) and parsed
by ``pyarrow.json``; a chunk that fails (a bad line, a type clash) is reparsed line by line
with the stdlib so that only the bad lines are rejected.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from sfsync.billers._csvread import BOM, Chunk, FileProblem
from sfsync.billers.base import BAD_RECORD, FILE_ENCODING, NOT_NUMERIC
from sfsync.hashing import Digest

ARROW_TYPES = {"decimal": pa.float64(), "integer": pa.int64(), "string": pa.string(), "date": pa.string(),
               "datetime": pa.string(), "boolean": pa.bool_()}


def explicit_schema(columns: dict[str, str] | None) -> pa.Schema | None:
    """Arrow types for the declared flat columns, so every chunk gets the same types."""
    if not columns:
        return None
    return pa.schema([(c, ARROW_TYPES[k]) for c, k in columns.items() if "." not in c and k in ARROW_TYPES])


class JsonlChunks:
    """Iterate a JSON Lines file as :class:`Chunk` objects (see ``_csvread.CsvChunks``)."""

    def __init__(self, f: BinaryIO, *, columns: dict[str, str] | None = None, chunk_bytes: int = 8 << 20) -> None:
        self.f = f
        self.chunk_bytes = chunk_bytes
        self.schema = explicit_schema(columns)
        self.numeric = {c for c, k in (columns or {}).items() if k in ("decimal", "integer")}
        self.sha = Digest()
        self.size = 0

    def checksum(self) -> str:
        """Checksum of the bytes read so far (:class:`sfsync.hashing.Digest`)."""
        return self.sha.hexdigest()

    def __iter__(self) -> Iterator[Chunk]:
        buf = b""
        line = 1
        first = True
        while True:
            raw = self.f.read(self.chunk_bytes)
            self.sha.update(raw)
            self.size += len(raw)
            if first and raw.startswith(BOM):
                raw = raw[len(BOM):]
            first = False
            buf += raw
            if raw:
                end = buf.rfind(b"\n") + 1
                if end == 0:
                    continue
            else:
                end = len(buf)
            if end == 0:
                return
            chunk, buf = buf[:end], buf[end:]
            n_nl = chunk.count(b"\n")
            yield self._parse(chunk, line, n_nl)
            line += n_nl
            if not raw and not buf:
                return

    def _parse(self, chunk: bytes, start: int, n_nl: int) -> Chunk:
        records = n_nl + (0 if chunk.endswith(b"\n") else 1)
        opts = pajson.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="infer",
                                   newlines_in_values=False)
        try:
            t = pajson.read_json(io.BytesIO(chunk), read_options=pajson.ReadOptions(block_size=max(len(chunk), 1 << 20)),
                                 parse_options=opts)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._slow(chunk, start)
        if t.num_rows != records:
            return self._slow(chunk, start)  # blank lines: number the rest exactly
        return Chunk(t, np.arange(start, start + t.num_rows, dtype=np.int64))

    def _slow(self, chunk: bytes, start: int) -> Chunk:
        good: list[bytes] = []
        lines: list[int] = []
        rejects: list[tuple[int, str, str]] = []
        for i, raw in enumerate(chunk.split(b"\n")):
            if not raw.strip():
                continue
            line = start + i
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError:
                raise FileProblem(FILE_ENCODING, f"line {line}: not valid UTF-8 (JSON Lines must be UTF-8)") from None
            except ValueError as exc:
                rejects.append((line, BAD_RECORD, f"not valid JSON: {exc}"))
                continue
            if not isinstance(obj, dict):
                rejects.append((line, BAD_RECORD, f"expected a JSON object, found {type(obj).__name__}"))
                continue
            bad = [c for c in self.numeric if not _numeric(obj.get(c))]
            if bad:
                rejects.append((line, NOT_NUMERIC, f"{bad[0]}: not a number: {str(obj.get(bad[0]))[:60]!r}"))
                continue
            for c in self.numeric:
                if isinstance(obj.get(c), str):
                    obj[c] = float(obj[c]) if obj[c].strip() else None
            good.append(json.dumps(obj).encode("utf-8"))
            lines.append(line)
        if not good:
            cols = self.schema.empty_table() if self.schema is not None else pa.table({})
            return Chunk(cols, np.zeros(0, dtype=np.int64), rejects)
        opts = pajson.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="infer")
        data = b"\n".join(good)
        try:
            t = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=len(data) + 1),
                                 parse_options=opts)
        except pa.ArrowInvalid as exc:
            # A clash between lines (one says object, the next says string): one file-level error.
            last = start + chunk.count(b"\n")
            raise FileProblem(BAD_RECORD, f"lines {start}-{last}: inconsistent types: {exc}") from None
        return Chunk(t, np.asarray(lines, dtype=np.int64), rejects)


def _numeric(v: Any) -> bool:
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return True
    if isinstance(v, str):
        try:
            float(v) if v.strip() else None
            return True
        except ValueError:
            return False
    return False
