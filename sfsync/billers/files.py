"""The *files* biller: the operator's monthly export dropped in a directory.

One glob pattern per entity (defaults follow docs/sample-data.md: ``line_items_*.*``), CSV,
JSON Lines or Parquet (by extension unless configured). Files are read in name order, in
streaming batches of about ``batch_size`` rows (whole parse chunks when they hold at least half of
it; a file's short tail joins its last batch) with memory bounded by ``chunk_bytes``, whatever the
file size. The manifest in the state store (size + XXH3-128 checksum) makes each file processed once:
an identical re-delivery is skipped, a changed file is read again, and a file is marked
processed only by :meth:`FileBiller.commit` with the checkpoint of its last batch.

As an export sink (``outbox``) it writes ``<stream>_<timestamp>.csv|jsonl`` atomically and
keeps ``.manifest.jsonl`` there so no Salesforce Id is ever written twice (see ``_outbox``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import structlog
from pydantic import Field, field_validator

from sfsync.billers._arrowutil import SeenKeys, bad_numbers, key_hash, source_array
from sfsync.billers._csvread import Chunk, CsvChunks, FileProblem, ascii_compatible
from sfsync.billers._jsonread import JsonlChunks
from sfsync.billers._outbox import Outbox
from sfsync.billers.base import (
    DUPLICATE_KEY,
    FILE_TRUNCATED,
    FILE_UNREADABLE,
    MISSING_COLUMNS,
    NOT_NUMERIC,
    NUMERIC_TYPES,
    SOURCE,
    Batch,
    Biller,
    EntitySpec,
    ExportResult,
    KindSettings,
    concat_rejects,
    error_batch,
    rejects_table,
)
from sfsync.billers.layout import FILES_ENTITIES
from sfsync.errors import ConfigError, UserError
from sfsync.hashing import Digest

log = structlog.get_logger(__name__)

Format = Literal["csv", "jsonl", "parquet"]
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".jsonl": "jsonl",
                                  ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class CsvOptions(KindSettings):
    """How the CSV files are written by the biller."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    columns: list[str] | None = None

    @field_validator("encoding")
    @classmethod
    def _enc(cls, v: str) -> str:
        if not ascii_compatible(v):
            raise ValueError(f"unsupported encoding {v!r}: use an ASCII-compatible one (utf-8, utf-8-sig, latin-1, cp1252)")
        return v


class EntityFiles(KindSettings):
    """Where one entity's files are and what they must hold."""

    pattern: str | None = None
    format: Format | None = None
    required: list[str] | None = None
    key: list[str] | None = None
    columns: dict[str, str] | None = None


class FileBillerSettings(KindSettings):
    """Settings of a ``kind: files`` biller."""

    path: Path
    format: Format | None = None
    entities: dict[str, EntityFiles] = Field(default_factory=dict)
    csv: CsvOptions = Field(default_factory=lambda: CsvOptions())
    batch_size: int = Field(50_000, ge=1)
    chunk_bytes: int = Field(8 << 20, ge=4096)
    dedup: bool = True
    outbox: Path | None = None
    export_format: Literal["csv", "jsonl"] = "csv"


@dataclass(frozen=True)
class FileCheckpoint:
    """Commit it to mark the file processed."""

    name: str
    size: int
    checksum: str


def file_checksum(path: Path, block: int = 8 << 20) -> str:
    """The manifest checksum of a file (:class:`sfsync.hashing.Digest`), read in blocks."""
    h = Digest()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


class FileBiller(Biller):
    """Reads entity files from a directory; writes exports to an outbox directory."""

    kind = "files"
    settings = FileBillerSettings
    config: FileBillerSettings

    def __init__(self, name: str, settings: FileBillerSettings, store: Any = None) -> None:
        super().__init__(name, settings, store)
        self._outbox = Outbox(settings.outbox, settings.export_format) if settings.outbox else None

    # -- entities ---------------------------------------------------------------------------
    def entities(self) -> dict[str, EntitySpec]:
        """The files layout's entities, overridden/extended by the ``entities`` setting."""
        out = dict(FILES_ENTITIES)
        for name, o in self.config.entities.items():
            base = out.get(name, EntitySpec(name))
            out[name] = EntitySpec(name, o.columns if o.columns is not None else base.columns,
                                   tuple(o.key) if o.key is not None else base.key,
                                   tuple(o.required) if o.required is not None else base.required)
        return out

    def _pattern(self, entity: str) -> str:
        o = self.config.entities.get(entity)
        if o and o.pattern:
            return o.pattern
        return "accounts.*" if entity == "accounts" else f"{entity}_*.*"

    def _format(self, entity: str, path: Path) -> Format:
        o = self.config.entities.get(entity)
        fmt = (o.format if o else None) or self.config.format or _EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise FileProblem(FILE_UNREADABLE, f"cannot tell the format of {path.name!r} from its extension; "
                                               "set the biller's format")
        return fmt

    def files(self, entity: str) -> list[Path]:
        """The entity's files in the directory, in name order (YYYYMM sorts by month)."""
        self._spec(entity)
        root = self.config.path
        if not root.is_dir():
            raise ConfigError(f"biller {self.name!r}: directory {str(root)!r} does not exist", key="path")
        return sorted(p for p in root.glob(self._pattern(entity))
                      if (p.is_file() or p.is_symlink()) and not p.name.startswith(".") and not p.name.endswith(".tmp"))

    # -- reading ----------------------------------------------------------------------------
    def read(self, entity: str, *, full: bool = False) -> Iterator[Batch]:
        """Yield batches of every file of ``entity`` not yet processed (all with ``full``)."""
        spec = self._spec(entity)
        for path in self.files(entity):
            name = path.relative_to(self.config.path).as_posix()
            try:
                size = path.stat().st_size
                known = self.store.file_status(self.name, name) if self.store is not None else None
                if not full and known is not None and known.status == "processed" and known.size == size \
                        and known.checksum == file_checksum(path):
                    log.info("file.skip", biller=self.name, file=name, reason="already processed")
                    continue
            except OSError as exc:
                yield error_batch(entity, name, FILE_UNREADABLE, f"{name}: cannot read: {exc.strerror or exc}")
                continue
            yield from self._read_file(entity, spec, path, name)

    def _read_file(self, entity: str, spec: EntitySpec, path: Path, name: str) -> Iterator[Batch]:
        pending: Batch | None = None
        buffered: list[pa.Table] = []
        rows = 0
        rejects: list[pa.Table | None] = []
        seen = SeenKeys() if (self.config.dedup and spec.key) else None
        reader: CsvChunks | JsonlChunks | _ParquetChunks | None = None
        try:
            fmt = self._format(entity, path)
            with open(path, "rb") as f:
                if fmt == "csv":
                    o = self.config.csv
                    reader = CsvChunks(f, delimiter=o.delimiter, quotechar=o.quotechar, encoding=o.encoding,
                                       header=o.header, column_names=o.columns or list(spec.columns or {}),
                                       chunk_bytes=self.config.chunk_bytes)
                    self._check_columns(spec, reader.columns, name)
                elif fmt == "jsonl":
                    reader = JsonlChunks(f, columns=spec.columns, chunk_bytes=self.config.chunk_bytes)
                else:
                    reader = _ParquetChunks(path, self.config.batch_size)
                    self._check_columns(spec, reader.columns, name)
                for chunk in reader:
                    if fmt == "jsonl":
                        self._check_columns(spec, chunk.table.column_names, name, partial=True)
                    table, rej = self._clean(spec, chunk, name, seen)
                    rejects.append(rej)
                    buffered.append(table)
                    rows += table.num_rows
                    # A chunk of at least half a batch is a batch on its own (or is cut into
                    # some): each column stays one piece, which the mapping reads without a copy.
                    size = self.config.batch_size
                    while rows >= size or (len(buffered) == 1 and rows >= max(1, size // 2)):
                        whole = pa.concat_tables(buffered, promote_options="permissive")
                        head, tail = whole.slice(0, size), whole.slice(size)
                        if pending is not None:
                            yield pending
                        pending = Batch(entity, head, None, concat_rejects(rejects), source=name)
                        buffered, rows, rejects = ([tail] if tail.num_rows else []), tail.num_rows, []
                size, checksum = reader.size, reader.checksum()
        except FileProblem as exc:
            yield from self._flush(pending, entity, buffered, rejects, name)
            yield error_batch(entity, name, exc.code, f"{name}: {exc}")
            return
        except (OSError, pa.ArrowException, UnicodeError, ValueError) as exc:
            yield from self._flush(pending, entity, buffered, rejects, name)
            code = FILE_TRUNCATED if "footer" in str(exc).lower() or "magic" in str(exc).lower() else FILE_UNREADABLE
            yield error_batch(entity, name, code, f"{name}: cannot read: {exc}")
            return
        finally:
            if isinstance(reader, CsvChunks):
                reader.close()
        cp = FileCheckpoint(name, size, checksum)
        if buffered and rows and pending is not None and rows < self.config.batch_size // 2:
            # The file's short tail joins its last batch: one batch (one Bulk job) less per file.
            whole = pa.concat_tables([pending.table, *buffered], promote_options="permissive")
            pending = Batch(entity, whole, None, concat_rejects([pending.rejects, *rejects]), source=name)
        elif buffered and (rows or pending is None):
            if pending is not None:
                yield pending
            whole = pa.concat_tables(buffered, promote_options="permissive")
            pending = Batch(entity, whole, None, concat_rejects(rejects), source=name)
        elif pending is not None and rejects:
            pending.rejects = concat_rejects([pending.rejects, *rejects])
        if pending is None:
            pending = Batch(entity, pa.table({SOURCE: pa.array([], pa.string())}), None, concat_rejects(rejects),
                            source=name)
        pending.checkpoint = cp
        yield pending

    def _flush(self, pending: Batch | None, entity: str, buffered: list[pa.Table], rejects: list[pa.Table | None],
               name: str) -> Iterator[Batch]:
        """Rows read before a file-level error still go on (without a checkpoint)."""
        if pending is not None:
            yield pending
        if buffered and sum(t.num_rows for t in buffered):
            yield Batch(entity, pa.concat_tables(buffered, promote_options="permissive"), None,
                        concat_rejects(rejects), source=name)

    @staticmethod
    def _check_columns(spec: EntitySpec, columns: list[str], name: str, partial: bool = False) -> None:
        missing = [c for c in spec.required if c not in columns]
        if missing and not (partial and not columns):
            raise FileProblem(MISSING_COLUMNS, f"missing required column(s) {', '.join(missing)} "
                                               f"(the file has: {', '.join(columns) or 'none'})")

    def _clean(self, spec: EntitySpec, chunk: Chunk, name: str, seen: SeenKeys | None) -> tuple[pa.Table, pa.Table | None]:
        """Add ``_source``; move non-numeric values and duplicate keys to rejects."""
        t = chunk.table
        sources = source_array(f"{name}:", chunk.lines)
        t = t.append_column(SOURCE, sources)
        rej: list[pa.Table | None] = []
        if chunk.rejects:
            rej.append(rejects_table([f"{name}:{ln}" for ln, _, _ in chunk.rejects], [c for _, c, _ in chunk.rejects],
                                     [m for _, _, m in chunk.rejects]))
        drop = np.zeros(t.num_rows, dtype=bool)
        for col, kind in (spec.columns or {}).items():
            if kind in NUMERIC_TYPES and col in t.column_names:
                bad = bad_numbers(t[col], kind)
                if bad is not None and bad.any():
                    idx = np.flatnonzero(bad & ~drop)
                    vals = t[col].take(pa.array(idx)).to_pylist()
                    rej.append(rejects_table(sources.take(pa.array(idx)).to_pylist(), NOT_NUMERIC,
                                             [f"{col}: not a number: {str(v)[:60]!r}" for v in vals]))
                    drop |= bad
        if seen is not None and all(k in t.column_names for k in spec.key) and t.num_rows:
            keys = [t[k] for k in spec.key]
            valid = np.ones(t.num_rows, dtype=bool)
            for k in keys:
                valid &= np.asarray(pc.is_valid(k).to_numpy(zero_copy_only=False), dtype=bool)
            dup, first = seen.check(key_hash(keys), valid & ~drop)
            dup &= ~drop
            if dup.any():
                idx = np.flatnonzero(dup)
                label = "+".join(spec.key)
                vals = [" | ".join(str(t[k][int(i)].as_py()) for k in spec.key) for i in idx]
                where = [f" (first at {sources[int(first[i])].as_py()})" if first[i] >= 0 else " (earlier in this file)"
                         for i in idx]
                rej.append(rejects_table(sources.take(pa.array(idx)).to_pylist(), DUPLICATE_KEY,
                                         [f"duplicate {label} {v!r}{w}" for v, w in zip(vals, where, strict=True)]))
                drop |= dup
        if drop.any():
            t = t.filter(pa.array(~drop))
        return t, concat_rejects(rej)

    def commit(self, checkpoint: object) -> None:
        """Mark the file of ``checkpoint`` processed in the store's manifest."""
        if not isinstance(checkpoint, FileCheckpoint):
            raise TypeError(f"not a files checkpoint: {checkpoint!r}")
        if self.store is not None:
            self.store.mark_file(self.name, checkpoint.name, checkpoint.size, checkpoint.checksum)

    # -- export sink ------------------------------------------------------------------------
    def export(self, stream: str, records: list[dict[str, Any]]) -> list[ExportResult]:
        """Write records to ``<outbox>/<stream>_<timestamp>.<ext>``; a Salesforce Id is written once."""
        if self._outbox is None:
            raise UserError(f"biller {self.name!r} has no outbox: set billers[].outbox to export to it")
        return self._outbox.write(stream, records)


class _ParquetChunks:
    """Parquet row groups as chunks; ``_source`` line = row number (1-based)."""

    def __init__(self, path: Path, batch_size: int) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._checksum = file_checksum(path)
        try:
            self.pf = pq.ParquetFile(path)
        except pa.ArrowInvalid as exc:
            raise FileProblem(FILE_TRUNCATED, f"not a complete Parquet file ({exc})") from None
        self.columns = self.pf.schema_arrow.names
        self.batch_size = batch_size

    def checksum(self) -> str:
        return self._checksum

    def __iter__(self) -> Iterator[Chunk]:
        row = 1
        for rb in self.pf.iter_batches(batch_size=self.batch_size):
            t = pa.Table.from_batches([rb])
            yield Chunk(t, np.arange(row, row + t.num_rows, dtype=np.int64))
            row += t.num_rows
