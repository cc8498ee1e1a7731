"""Record state: what sfsync last sent per (biller, sObject, key), kept as columnar segments.

The part of :class:`~sfsync.state.store.StateStore` behind every load's diff (see
``segments.py`` for the format). A write is one ``state_segments`` row per batch; a probe
searches the segments of one (biller, sObject) held in memory, folded in as they appear (this
process's own writes included) and rebuilt when another process merged them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, and_, delete, insert, select

from sfsync.state import models as m
from sfsync.state import segments
from sfsync.state.segments import Probe, ScopeIndex

# Merging is for the many tiny segments refreshes and small monthly changes leave behind; a
# bulk load's own batch-sized segments are fine as they are (an index folds them in one pass).
SMALL_SEGMENT_ROWS = 10_000  # segments below this size are merged ...
COMPACT_AT = 32  # ... once a scope has more of them than this
MERGED_ROWS = 100_000  # states per merged segment at most (bounds a merge's memory: ~20 MB)


def utcnow() -> datetime:
    """Timezone-aware now in UTC (every timestamp in the store is UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class RecordState:
    """What sfsync last sent for one (biller, sObject, key)."""

    key: str
    sf_id: str | None
    hash: int



class _SegmentGone(LookupError):
    """A segment listed a moment ago was merged away by another process."""


class RecordStates:
    """Record-state methods of the state store (a mixin: needs ``engine``)."""

    engine: Engine
    _indexes: dict[tuple[str, str], ScopeIndex]

    def probe_states(self, biller: str, sobject: str, keys: pa.Array | pa.ChunkedArray | Sequence[str], *,
                     with_ids: bool = False) -> Probe:
        """What was last sent for each key (aligned with ``keys``); Salesforce Ids only ``with_ids``."""
        return self._index(biller, sobject, with_ids).probe(keys)

    def scan_states(self, biller: str, sobject: str, keys: pa.Array | pa.ChunkedArray | Sequence[str] | None = None, *,
                    with_ids: bool = False, hashes: tuple[np.ndarray, np.ndarray | None] | None = None) -> Probe:
        """What was last sent for each key, in one pass over the stored segments (nothing kept).

        Same answer as :meth:`probe_states`, for a load's window of rows: memory follows the
        window, not the scope (a million line items' states are never held at once). Salesforce
        Ids are read only from the segments that hold a found key.

        Args:
            keys: the keys asked about; or, instead,
            hashes: their :func:`~sfsync.state.segments.key_hashes` and (``with_ids``)
                :func:`~sfsync.state.segments.check_hashes`, as a window keeps them.
        """
        if hashes is None:
            arr = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(list(keys or []), pa.string())
            hashes = (segments.key_hashes(arr), segments.check_hashes(arr) if with_ids else None)
        khash, check = hashes
        n = len(khash)
        if not n:
            return Probe.empty(0, with_ids)
        for _ in range(3):  # a segment merged away by another process mid-scan: scan again
            scan = segments.Scan(khash)
            try:
                for seg_id, _rows in self._segment_ids(biller, sobject):
                    scan.add(self._index_of(seg_id), seg_id)
                probe = scan.probe()
                if not with_ids:
                    return probe
                if check is None:
                    raise ValueError("scan_states(with_ids=True) needs the keys' check hashes")
                return self._with_ids(scan, probe, check)
            except _SegmentGone:
                continue
        raise RuntimeError(f"state of {biller}/{sobject} kept changing under a scan")  # pragma: no cover

    def _with_ids(self, scan: segments.Scan, probe: Probe, check: np.ndarray) -> Probe:
        # Two keys with one hash must not share an Id: a second, independent hash must match too.
        uniq_ids = np.full(len(scan.uniq), None, dtype=object)
        uniq_check = np.zeros(len(scan.uniq), dtype=np.uint64)
        for seg_id, at, pos in scan.winners():
            data = self._data(seg_id)
            took = pa.array(pos)
            uniq_ids[at] = data.column("sf_id").take(took).to_numpy(zero_copy_only=False)
            uniq_check[at] = segments.check_hashes(data.column("key").take(took))
        same = uniq_check[scan.inverse] == check
        present = probe.present & same
        ids = uniq_ids[scan.inverse]
        ids[~present] = None
        return Probe(present, np.where(present, probe.hash, 0), ids)

    def get_states(self, biller: str, sobject: str, keys: Iterable[str]) -> dict[str, RecordState]:
        """The stored state of the given keys (absent keys are simply missing from the result)."""
        wanted = list(dict.fromkeys(keys))
        p = self.scan_states(biller, sobject, wanted, with_ids=True)
        ids = p.sf_ids if p.sf_ids is not None else [None] * len(wanted)
        return {k: RecordState(k, i, int(h)) for k, i, h, hit in zip(wanted, ids, p.hash.tolist(), p.present, strict=True)
                if hit}

    def has_states(self, biller: str, sobject: str) -> bool:
        """Whether anything was ever recorded for this (biller, sObject) (a cheap first-load test)."""
        t = m.state_segments
        with self.engine.connect() as c:
            return c.execute(select(t.c.id).where(t.c.biller == biller, t.c.sobject == sobject).limit(1)).first() is not None

    def iter_states(self, biller: str, sobject: str) -> Iterator[RecordState]:
        """Every stored state of one (biller, sObject)."""
        table = self._merged(biller, sobject)
        for k, sf_id, h in zip(table.column("key").to_pylist(), table.column("sf_id").to_pylist(),
                               table.column("hash").to_pylist(), strict=True):
            yield RecordState(k, sf_id, h)

    def put_states(self, biller: str, sobject: str, rows: Iterable[tuple[str, str | None, int]],
                   run_id: int) -> int:
        """Record (key, sf_id, hash) rows as one segment; return how many were given.

        Of one key given twice the last wins, as it would row by row.
        """
        listed = list(rows)
        if not listed:
            return 0
        keys, ids, hashes = zip(*listed, strict=True)
        return self.put_state_arrays(biller, sobject, list(keys), list(ids), np.asarray(hashes, dtype=np.int64), run_id)

    def put_state_arrays(self, biller: str, sobject: str, keys: pa.Array | pa.ChunkedArray | Sequence[str],
                         sf_ids: pa.Array | Sequence[str | None] | np.ndarray, hashes: np.ndarray, run_id: int,
                         key_hashes: np.ndarray | None = None) -> int:
        """Record states given as columns (the bulk path of a load): one segment, one INSERT.

        ``key_hashes``: :func:`segments.key_hashes` of ``keys`` when the caller has them already.
        """
        if len(keys) == 0:
            return 0
        table = segments.build(keys, sf_ids, hashes, key_hashes)
        self._append(biller, sobject, table, run_id)
        return len(keys)

    def forget_states(self, biller: str, sobject: str | None = None) -> int:
        """Drop record state (``--full`` resync or a purge); return how many states were removed."""
        t = m.state_segments
        cond = [t.c.biller == biller] + ([t.c.sobject == sobject] if sobject else [])
        scopes = self._scopes(biller, sobject)
        n = sum(self._merged(b, s).num_rows for b, s in scopes)
        with self.engine.begin() as c:
            c.execute(delete(t).where(and_(*cond)))
        for scope in scopes:
            self._indexes.pop(scope, None)
        return n

    def count_states(self, biller: str | None = None, sobject: str | None = None) -> int:
        """How many record states are stored (for one biller / sObject when given)."""
        return sum(self._merged(b, s).num_rows for b, s in self._scopes(biller, sobject))

    def delete_keys(self, biller: str, sobject: str, keys: Sequence[str]) -> None:
        """Forget specific record states (after a delete in Salesforce): tombstones, one segment."""
        if keys:
            self._append(biller, sobject, segments.build(list(keys), [None] * len(keys), [None] * len(keys)), None)

    def release_states(self, biller: str, sobject: str) -> None:
        """Drop the in-memory index of one (biller, sObject) (a load moves on to the next object)."""
        self._indexes.pop((biller, sobject), None)

    def tidy_states(self, biller: str, sobject: str) -> int:
        """Merge the scope's small segments once there are many (after a load); return segments removed."""
        small = sum(1 for _, rows in self._segment_ids(biller, sobject) if rows < SMALL_SEGMENT_ROWS)
        return self.compact_states(biller, sobject) if small > COMPACT_AT else 0

    def compact_states(self, biller: str, sobject: str, *, small: int | None = None) -> int:
        """Merge the scope's small segments into fewer; return segments removed.

        Segments under ``small`` rows are merged in groups of up to :data:`MERGED_ROWS` states.
        Versions travel with the states, so which segments are merged does not matter, and an
        index this process holds stays right: the merged segment stands for the ones it replaced.
        """
        small = SMALL_SEGMENT_ROWS if small is None else small
        t = m.state_segments
        with self.engine.connect() as c:
            found = c.execute(select(t.c.id, t.c.rows).where(t.c.biller == biller, t.c.sobject == sobject,
                                                             t.c.rows < small).order_by(t.c.id)).all()
        groups: list[list[int]] = []
        size = MERGED_ROWS
        for seg_id, rows in found:
            if size + rows > MERGED_ROWS:
                groups.append([])
                size = 0
            groups[-1].append(seg_id)
            size += rows
        removed = 0
        idx = self._indexes.get((biller, sobject))
        for group in groups:
            if len(group) < 2:
                continue
            merged = segments.merge([self._decoded(i) for i in group])
            rows, (hashes, data) = merged.num_rows, segments.encode(merged)
            del merged
            with self.engine.begin() as c:
                new_id = int(c.execute(insert(t).values(biller=biller, sobject=sobject, rows=rows, merged=True,
                                                        run_id=None, created_at=utcnow(), hashes=hashes, data=data)
                                       ).inserted_primary_key[0])  # type: ignore[index]
                gone = c.execute(delete(t).where(t.c.id.in_(group))).rowcount or 0
            removed += gone
            if idx is not None and gone == len(group) and set(group) <= idx.segments:
                idx.segments.difference_update(group)
                idx.segments.add(new_id)
        return removed

    def _append(self, biller: str, sobject: str, table: pa.Table, run_id: int | None) -> None:
        t = m.state_segments
        hashes, data = segments.encode(table)
        with self.engine.begin() as c:
            seg_id = int(c.execute(insert(t).values(biller=biller, sobject=sobject, rows=table.num_rows, merged=False,
                                                    run_id=run_id, created_at=utcnow(), hashes=hashes, data=data)
                                   ).inserted_primary_key[0])  # type: ignore[index]
        idx = self._indexes.get((biller, sobject))
        if idx is not None:
            idx.add(table if idx.with_ids else table.select(["khash", "hash"]), seg_id)

    def _segment_ids(self, biller: str, sobject: str) -> list[tuple[int, int]]:
        t = m.state_segments
        with self.engine.connect() as c:
            return [(int(i), int(r)) for i, r in c.execute(
                select(t.c.id, t.c.rows).where(t.c.biller == biller, t.c.sobject == sobject).order_by(t.c.id))]

    def _blobs(self, seg_id: int, *names: str) -> tuple[bytes, ...]:
        """Some blobs of one segment (``hashes``, ``data``); :class:`_SegmentGone` if it was merged away."""
        t = m.state_segments
        with self.engine.connect() as c:
            row = c.execute(select(*[t.c[n] for n in names]).where(t.c.id == seg_id)).first()
        if row is None:
            raise _SegmentGone(seg_id)
        return tuple(row)

    def _decoded(self, seg_id: int, with_data: bool = True) -> pa.Table:
        """One segment's states with their versions (keys and Ids only ``with_data``)."""
        if with_data:
            index, data = self._blobs(seg_id, "hashes", "data")
            return segments.decode(index, data, seg_id)
        return segments.decode(self._blobs(seg_id, "hashes")[0], None, seg_id)

    def _index_of(self, seg_id: int) -> pa.Table:
        """One segment's index columns as stored (no ``ver`` column unless merged)."""
        return segments.read_blob(self._blobs(seg_id, "hashes")[0])

    def _data(self, seg_id: int) -> pa.Table:
        """One segment's keys and Ids (its data blob), in the segment's (key-hash) order."""
        return segments.read_blob(self._blobs(seg_id, "data")[0])

    def _index(self, biller: str, sobject: str, with_ids: bool) -> ScopeIndex:
        scope = (biller, sobject)
        present = self._segment_ids(biller, sobject)
        idx = self._indexes.get(scope)
        if idx is None and sum(1 for _, rows in present if rows < SMALL_SEGMENT_ROWS) > COMPACT_AT:
            self.compact_states(biller, sobject)  # e.g. many refreshes since the last load
            present = self._segment_ids(biller, sobject)
        ids = {i for i, _ in present}
        if idx is None or (with_ids and not idx.with_ids) or not idx.segments <= ids:
            idx = self._indexes[scope] = ScopeIndex(with_ids)
        todo = [(seg_id, rows) for seg_id, rows in present if seg_id not in idx.segments]
        idx.load((self._decoded(seg_id, idx.with_ids), seg_id) for seg_id, _ in todo)
        return idx

    def _merged(self, biller: str, sobject: str) -> pa.Table:
        """Every live state of one scope, resolved (key, sf_id, hash)."""
        tables = [self._decoded(i) for i, _ in self._segment_ids(biller, sobject)]
        return segments.live(segments.merge(tables)).select(["key", "sf_id", "hash"])

    def _scopes(self, biller: str | None, sobject: str | None) -> list[tuple[str, str]]:
        t = m.state_segments
        q = select(t.c.biller, t.c.sobject).distinct()
        if biller:
            q = q.where(t.c.biller == biller)
        if sobject:
            q = q.where(t.c.sobject == sobject)
        with self.engine.connect() as c:
            return [(b, s) for b, s in c.execute(q)]

    def owners(self, sobject: str, sf_ids: Iterable[str]) -> dict[str, set[str]]:
        """Which billers loaded these Salesforce records: ``sf_id -> {biller, ...}`` (from record state)."""
        wanted = pa.array(list(dict.fromkeys(sf_ids)), pa.string())
        out: dict[str, set[str]] = {}
        if not len(wanted):
            return out
        for biller, _ in self._scopes(None, sobject):
            ids = self._merged(biller, sobject).column("sf_id")
            for sf_id in ids.filter(pc.fill_null(pc.is_in(ids, wanted), False)).to_pylist():
                out.setdefault(sf_id, set()).add(biller)
        return out


