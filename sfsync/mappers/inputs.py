"""Read a sample input file for ``sfsync mapping preview`` (not the billers' streaming readers).

Preview needs the first rows of a CSV, JSON Lines or parquet file as a table with a
``_source`` column, offline and without a biller configuration. CSV columns stay strings
(as the files biller delivers them); JSON keeps its nesting.
"""

from __future__ import annotations

import csv
import io
import json
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa


def read_input(path: str | Path, limit: int | None = None) -> pa.Table:
    """The first ``limit`` records of a .csv, .jsonl/.json or .parquet file, plus ``_source``.

    Raises:
        ValueError: Unknown file extension.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _csv(p, limit)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(p, limit)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        if limit is not None:
            table = table.slice(0, limit)
        return table.append_column("_source", pa.array([f"{p.name}:{i + 1}" for i in range(table.num_rows)]))
    raise ValueError(f"{p}: unknown input type {suffix!r} (expected .csv, .jsonl or .parquet)")


def _csv(p: Path, limit: int | None) -> pa.Table:
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = list(islice(reader, limit)) if limit is not None else list(reader)
    cols: dict[str, list[Any]] = {h: [] for h in header}
    for row in rows:
        for h, value in zip(header, row + [""] * (len(header) - len(row)), strict=False):
            cols[h].append(value if value != "" else None)
    # Line numbers assume one record per line, which the sample layouts guarantee.
    cols["_source"] = [f"{p.name}:{i + 2}" for i in range(len(rows))]
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in cols.items()})


def _stringify(value: Any, in_list: bool = False) -> Any:
    # JSON lists whose members change type from one record to the next (a characteristic value
    # that is a number here and a string there) cannot become one Arrow column: make those text.
    if isinstance(value, dict):
        return {k: _stringify(v, in_list) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v, True) for v in value]
    if in_list and value is not None and not isinstance(value, str):
        return json.dumps(value)
    return value


def _jsonl(p: Path, limit: int | None) -> pa.Table:
    records = []
    with p.open(encoding="utf-8-sig") as f:
        text = f.read()
    if p.suffix.lower() == ".json" and text.lstrip().startswith("["):
        items = json.loads(text)
        records = items[:limit] if limit is not None else items
    else:
        for line in islice(io.StringIO(text), limit):
            if line.strip():
                records.append(json.loads(line))
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        table = pa.Table.from_pylist([_stringify(r) for r in records])
    return table.append_column("_source", pa.array([f"{p.name}:{i + 1}" for i in range(table.num_rows)]))
