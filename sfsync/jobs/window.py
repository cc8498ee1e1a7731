"""A load's window: mapped batches that wait for one scan of the state store, on disk.

Probing the store batch by batch needs every stored state of the object in memory (an index
that grows with the object: 20 bytes a line item, 50 with Ids). A window instead collects the
mapped, hashed batches as they are read (up to :data:`WINDOW_ROWS` rows, across files; see
:func:`window_full`), asks the store about all their keys in one pass over its segments
(:meth:`StateStore.scan_states`), then hands the batches back one at a time with their part of
the answer. What waits goes to an Arrow IPC file in a temporary directory (uncompressed: written and mapped back at memory speed), so a
load holds one batch, the window's keys and the answer — whatever the size of the object.

A batch's checkpoint (a file's last batch, a cursor) travels with it and is committed only
after its rows are recorded, exactly as without a window.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sfsync.state.lock import pid_alive
from sfsync.state.segments import check_hashes, key_hashes

if TYPE_CHECKING:
    from sfsync.mappers import MappedBatch

PREFIX = "sfsync-window-"  # + pid: a directory whose process is gone is swept by the next load
WINDOW_ROWS = 250_000  # rows per scan of the store: each scan reads every segment of the object once
KEEP_IN_MEMORY_ROWS = 60_000  # a window this small (one batch, a refresh) is not written out


@dataclass
class Item:
    """One batch of the window: its mapped rows (in memory or spilled) and what commits it."""

    source: str | None
    checkpoint: object | None
    num_rows: int  # rows the biller read (progress)
    mapped: MappedBatch | None = None  # None: nothing to send (all rejected, or an empty batch)
    hashes: np.ndarray | None = None
    path: Path | None = None  # where the rows wait, once spilled


class Window:
    """Batches of one mapping waiting for their scan; :meth:`drain` them after :meth:`key_hashes`."""

    def __init__(self, with_ids: bool = False) -> None:
        self.items: list[Item] = []
        self.rows = 0  # mapped rows waiting
        self.with_ids = with_ids
        self._khash: list[np.ndarray] = []
        self._check: list[np.ndarray] = []
        self._dir: Path | None = None
        self._in_memory = 0
        self._spilled = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Item) -> None:
        """Queue one batch (``item.mapped`` None when it has nothing to send)."""
        self.items.append(item)
        if item.mapped is None:
            return
        self.rows += len(item.mapped)
        keys = item.mapped.rows.column("_key")
        self._khash.append(key_hashes(keys))  # 8 bytes a row wait, not the key's text
        if self.with_ids:
            self._check.append(check_hashes(keys))
        self._in_memory += len(item.mapped)
        if self._in_memory > KEEP_IN_MEMORY_ROWS:
            for waiting in self.items:
                self._spill(waiting)
            self._in_memory = 0

    def key_hashes(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The key hashes (and, ``with_ids``, check hashes) of every waiting row, in order."""
        khash = np.concatenate(self._khash) if self._khash else np.zeros(0, dtype=np.uint64)
        check = (np.concatenate(self._check) if self._check else np.zeros(0, dtype=np.uint64)) if self.with_ids else None
        return khash, check

    def drain(self) -> Iterator[Item]:
        """The batches in order, rows back in memory one at a time; the window is empty after."""
        try:
            while self.items:
                item = self.items.pop(0)
                if item.path is not None and item.mapped is not None:
                    with pa.memory_map(str(item.path)) as src:
                        rows = pa.ipc.open_file(src).read_all()
                    item.mapped = replace(item.mapped, rows=rows)
                    item.path.unlink(missing_ok=True)
                    item.path = None
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Forget what waits and remove the spill directory."""
        self.items.clear()
        self._khash.clear()
        self._check.clear()
        self.rows = self._in_memory = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _spill(self, item: Item) -> None:
        if item.mapped is None or item.path is not None:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self._spilled += 1
        path = self._dir / f"{self._spilled:06d}.arrow"
        rows = item.mapped.rows
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
        item.path = path
        item.mapped = replace(item.mapped, rows=rows.schema.empty_table())


def window_full(rows: int, at_checkpoint: bool) -> bool:
    """Whether a window of ``rows`` waiting rows is scanned and sent now.

    At :data:`WINDOW_ROWS`, or from half of it at a checkpoint (a file's last batch): there the
    biller holds nothing while the window drains, where mid-file it holds its read buffer and
    the next parsed chunk, and the file's checkpoint commits a window sooner.
    """
    return rows >= WINDOW_ROWS or (at_checkpoint and rows >= WINDOW_ROWS // 2)


def sweep_stale(root: Path | None = None) -> int:
    """Remove spill directories left by loads that died (``kill -9``); return how many."""
    base = Path(root or tempfile.gettempdir())
    removed = 0
    for d in base.glob(f"{PREFIX}*-*"):
        pid = d.name[len(PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed



def repeated(khash: np.ndarray) -> np.ndarray:
    """Mask of the rows whose key hash occurred earlier in ``khash`` (a key met again in a window)."""
    later = np.zeros(len(khash), dtype=bool)
    if len(khash) > 1:
        order = np.argsort(khash, kind="stable")
        ordered = khash[order]
        later[order[1:][ordered[1:] == ordered[:-1]]] = True
    return later
