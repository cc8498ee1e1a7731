"""Record state as columnar segments: what sfsync last sent, per (biller, sObject), in sorted runs.

A load records a state (key, Salesforce Id, payload hash) for every row it sends: a million
rows a month for line items alone. A row per state in a SQL table costs 2–5 µs per row to
write and 1.5–2.5 µs to probe (B-tree pages touched in random key order). Here a write is
one *segment*: the batch's states sorted by a 64-bit hash of the key, as two Arrow blobs
(hashes; keys and Ids) in one row of ``state_segments``. A probe searches the segments of one
(biller, sObject) held in memory as sorted numpy arrays (:class:`ScopeIndex`): about 20 bytes
a state, a binary search per key.

Every state carries a version, the id of the segment it was first written in (ids only grow),
and the highest version of a key wins. That makes any set of segments mergeable in any order
(compaction, and segments another process committed late) without losing which write came last.
A deleted key is a *tombstone*: a state with a null hash.

Key hashes are :func:`sfsync.hashing.hash_strings`. Two keys with the same hash share one
slot: for an object upserted by external ID the worst case is a row sent again (its payload
hash will not match the other key's), never a row skipped; :class:`ScopeIndex` built
``with_ids`` also compares a second, independent hash of the keys, so an Id goes to the wrong
key with odds of about 2⁻¹²⁸.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.hashing import hash_strings

#: The columns of a segment. ``ver`` is present only in merged segments (elsewhere: the segment id).
SCHEMA = pa.schema([
    ("khash", pa.uint64()),
    ("hash", pa.int64()),  # null: the key was deleted (a tombstone)
    ("key", pa.string()),
    ("sf_id", pa.string()),
])
INDEX_COLUMNS = ["khash", "hash", "ver"]  # the hashes blob (``ver`` as read back)
DATA_COLUMNS = ["key", "sf_id"]  # the data blob
RUN_CAP = 1 << 20  # states per in-memory run (20 bytes each)
RUN_CAP_WITH_IDS = 1 << 18  # ... when key checks and Ids are held too (~50 bytes each)
_CHECK_SEED = 0x5EED_C4EC


def key_hashes(keys: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """The 64-bit hash of each key (uint64), by which segments are sorted and searched."""
    arr = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(keys, pa.string())
    return hash_strings(arr)


def check_hashes(keys: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """A second 64-bit hash of each key, independent of :func:`key_hashes` (another seed)."""
    arr = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(keys, pa.string())
    return hash_strings(arr, seed=_CHECK_SEED)



def build(keys: pa.Array | pa.ChunkedArray | Sequence[str], sf_ids: pa.Array | Sequence[str | None] | np.ndarray,
          hashes: np.ndarray | Sequence[int | None], khashes: np.ndarray | None = None) -> pa.Table:
    """A segment's table: one state per distinct key (the last given wins), sorted by key hash.

    ``hashes`` may hold None (a tombstone) when given as a sequence; ``khashes`` are the keys'
    :func:`key_hashes` when the caller has them (a load's window computed them for its scan).
    """
    key_arr = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(keys, pa.string())
    if isinstance(key_arr, pa.ChunkedArray):
        key_arr = key_arr.combine_chunks()
    key_arr = key_arr.cast(pa.string())
    n = len(key_arr)
    kh = key_hashes(key_arr) if khashes is None else np.asarray(khashes, dtype=np.uint64)
    if len(kh) != n:
        raise ValueError(f"{len(kh)} key hashes for {n} keys")
    # Sort by key hash, then keep the last given of equal keys: the order given is the order written.
    order = np.argsort(kh)  # not stable (5x faster): the largest index of each group is the last given
    kh = kh[order]
    last = np.ones(n, dtype=bool)
    if n > 1:
        last[:-1] = kh[1:] != kh[:-1]
    first = np.ones(n, dtype=bool)
    first[1:] = last[:-1]
    take = np.maximum.reduceat(order, np.flatnonzero(first)) if n else order
    if isinstance(sf_ids, pa.Array):
        id_arr = sf_ids.cast(pa.string())
    else:
        id_arr = pa.array(np.asarray(sf_ids, dtype=object) if not isinstance(sf_ids, np.ndarray) else sf_ids,
                          pa.string(), from_pandas=True)
    hash_arr = (pa.array(np.asarray(hashes, dtype=np.int64), pa.int64()) if isinstance(hashes, np.ndarray)
                else pa.array(list(hashes), pa.int64()))
    idx = pa.array(take)
    return pa.table([pa.array(kh[last]), hash_arr.take(idx), key_arr.take(idx), id_arr.take(idx)], schema=SCHEMA)


def encode(table: pa.Table) -> tuple[bytes, bytes]:
    """A segment's two blobs: the index (key hash, payload hash[, version]) and the data (key, Id).

    The index is an uncompressed Arrow IPC file (hashes do not compress): a probe maps it
    without copying. The data is LZ4-compressed, read only when Ids or keys are wanted.
    """
    index = table.select([c for c in INDEX_COLUMNS if c in table.column_names])
    return _ipc(index, None), _ipc(table.select(DATA_COLUMNS), "lz4")


def _ipc(table: pa.Table, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(index: bytes, data: bytes | None, segment_id: int) -> pa.Table:
    """A segment's table back from its blobs, versioned (``key``/``sf_id`` only when ``data`` is given).

    The index columns are zero-copy views of ``index``.
    """
    table = versioned(read_blob(index), segment_id).select(INDEX_COLUMNS)
    if data is not None:
        extra = read_blob(data)
        for name in DATA_COLUMNS:
            table = table.append_column(name, extra.column(name))
    return table


def read_blob(blob: bytes) -> pa.Table:
    """One of a segment's blobs as a table: the index (``khash``, ``hash``, ``ver`` once merged; zero-copy
    views of ``blob``) or the data (``key``, ``sf_id``)."""
    return pa.ipc.open_file(pa.py_buffer(blob)).read_all()


def versioned(table: pa.Table, segment_id: int) -> pa.Table:
    """The table with a ``ver`` column (the segment id for states written fresh)."""
    if "ver" in table.column_names:
        return table
    return table.append_column("ver", pa.array(np.full(table.num_rows, segment_id, dtype=np.int64)))


def latest(kh: np.ndarray, ver: np.ndarray) -> np.ndarray:
    """Indices of the winning state per key hash (the highest version), in key-hash order."""
    # Not a stable sort (5x faster, no merge buffer): ties of equal key hashes are settled by version below.
    order = np.argsort(kh)
    if len(order) < 2:
        return order
    ks = kh[order]
    same_next = ks[1:] == ks[:-1]
    if not same_next.any():
        return order
    # Groups of equal key hashes are contiguous once sorted: order each group by version, keep its last.
    grouped = np.zeros(len(ks), dtype=bool)
    grouped[1:] |= same_next
    grouped[:-1] |= same_next
    at = np.flatnonzero(grouped)
    at = at[np.lexsort((ver[order[at]], ks[at]))]
    last = np.ones(len(at), dtype=bool)
    last[:-1] = ks[at[1:]] != ks[at[:-1]]
    keep = ~grouped
    keep[at[last]] = True
    return order[keep]


def merge(tables: Sequence[pa.Table]) -> pa.Table:
    """Versioned segment tables into one: per key hash the highest version, sorted by key hash.

    Tombstones stay (a merge of some segments cannot know whether an older one holds the key).
    """
    if not tables:
        return versioned(SCHEMA.empty_table(), 0)
    table = pa.concat_tables(tables).combine_chunks()
    return table.take(pa.array(latest(table.column("khash").to_numpy(), table.column("ver").to_numpy())))


def live(table: pa.Table) -> pa.Table:
    """The states of a merged table that are not tombstones."""
    return table.filter(pc.is_valid(table.column("hash")))


@dataclass
class Run:
    """One sorted run of states in memory: numpy key hashes, payload hashes and versions.

    ``check`` (a second, independent 64-bit hash of each key) and ``ids`` (Arrow strings) are
    kept only by an index built ``with_ids``: an Id is handed out only when both hashes match.
    """

    khash: np.ndarray  # uint64, sorted, distinct
    hash: np.ndarray  # int64
    dead: np.ndarray | None  # bool: tombstones (None: none)
    ver: np.ndarray  # int32 (int64 once segment ids outgrow it)
    check: np.ndarray | None = None  # uint64
    ids: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.khash)

    @classmethod
    def of(cls, table: pa.Table, with_ids: bool) -> Run:
        """A run from a versioned, key-hash-sorted segment table (numpy views of its buffers)."""
        h = table.column("hash").combine_chunks()
        dead = None
        if h.null_count:
            dead = h.is_null().to_numpy(zero_copy_only=False)
            h = pc.fill_null(h, 0)
        return cls(
            khash=table.column("khash").combine_chunks().to_numpy(),
            hash=h.to_numpy(),
            dead=dead,
            ver=_narrow(table.column("ver").combine_chunks().to_numpy()),
            check=check_hashes(table.column("key")) if with_ids else None,
            ids=table.column("sf_id").combine_chunks() if with_ids else None,
        )

    @classmethod
    def merged(cls, runs: Sequence[Run]) -> Run:
        """One run of the latest state per key hash of ``runs``, built column by column."""
        if len(runs) == 1:
            return runs[0]
        kh = np.concatenate([r.khash for r in runs])
        ver = np.concatenate([r.ver for r in runs])
        idx = latest(kh, ver)
        kh = kh[idx]
        ver = ver[idx]
        h = np.concatenate([r.hash for r in runs])[idx]
        dead = None
        if any(r.dead is not None for r in runs):
            dead = np.concatenate([r.dead if r.dead is not None else np.zeros(len(r), bool) for r in runs])[idx]
        check = ids = None
        if all(r.check is not None and r.ids is not None for r in runs):
            check = np.concatenate([r.check for r in runs])[idx]
            ids = pa.concat_arrays([r.ids for r in runs]).take(pa.array(idx))
        return cls(kh, h, dead, ver, check, ids)


def _narrow(ver: np.ndarray) -> np.ndarray:
    """Versions as int32 while segment ids fit (4 bytes a state held in memory, not 8)."""
    return ver.astype(np.int32) if len(ver) == 0 or int(ver.max()) < 2**31 else ver


@dataclass(frozen=True)
class Probe:
    """What the store holds for each key of a batch, aligned with the batch."""

    present: np.ndarray  # bool
    hash: np.ndarray  # int64 (0 where absent)
    sf_ids: np.ndarray | None  # object: the Salesforce Id (None where absent); only when asked for

    @classmethod
    def empty(cls, n: int, with_ids: bool = False) -> Probe:
        """Nothing stored for any of ``n`` keys."""
        return cls(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64),
                   np.full(n, None, dtype=object) if with_ids else None)

    def updated(self, rows: np.ndarray, fresh: Probe) -> Probe:
        """A copy with ``rows`` answered by ``fresh`` (aligned with ``rows``)."""
        present, hashes = self.present.copy(), self.hash.copy()
        present[rows], hashes[rows] = fresh.present, fresh.hash
        ids = None
        if self.sf_ids is not None:
            ids = self.sf_ids.copy()
            ids[rows] = fresh.sf_ids if fresh.sf_ids is not None else None
        return Probe(present, hashes, ids)

    def slice(self, start: int, stop: int) -> Probe:
        """The part for rows ``start:stop`` (a batch of a window)."""
        return Probe(self.present[start:stop], self.hash[start:stop],
                     None if self.sf_ids is None else self.sf_ids[start:stop])


class ScopeIndex:
    """The states of one (biller, sObject) in memory, for probing batch after batch.

    Runs are kept in a binary-counter shape (each at least twice the size of the next) up to a
    cap, so a load that adds a run per batch merges O(log n) times and probes a few runs.

    Args:
        with_ids: keep keys and Salesforce Ids too (objects matched by Id, single-key lookups).
    """

    def __init__(self, with_ids: bool) -> None:
        self.with_ids = with_ids
        self.runs: list[Run] = []
        self.segments: set[int] = set()  # ids of the segments folded in
        # No run grows past this: a merge's transient copy stays small whatever the object's size,
        # and a probe costs about the same across a few runs as in one (versions decide, not order).
        self.cap = RUN_CAP_WITH_IDS if with_ids else RUN_CAP

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def add(self, table: pa.Table, segment_id: int) -> None:
        """Fold in one segment (its table as decoded)."""
        self.load([(table, segment_id)])

    def load(self, tables: Iterable[tuple[pa.Table, int]]) -> None:
        """Fold in segments (tables as decoded, with their ids), as runs of up to ``cap`` states.

        ``tables`` may fetch each segment as it is asked for: segments are copied, one at a
        time, into arrays sized once per run, so memory
        peaks near the index plus one run's merge, not at every segment's blob plus copies.
        """
        group: list[Run] = []
        size = 0
        for t, seg_id in tables:
            self.segments.add(seg_id)
            if not t.num_rows:
                continue
            run = Run.of(versioned(t, seg_id), self.with_ids)
            if group and size + len(run) > self.cap:
                self._push(self._fold(group, size))
                group, size = [], 0
            group.append(run)
            size += len(run)
            del run, t
        if group:
            self._push(self._fold(group, size))

    def _fold(self, group: list[Run], size: int) -> Run:
        """One run from several (the latest state per key hash)."""
        if len(group) == 1 or self.with_ids:
            return Run.merged(group)
        kh = np.empty(size, dtype=np.uint64)
        h = np.empty(size, dtype=np.int64)
        ver = np.empty(size, dtype=np.result_type(*[r.ver.dtype for r in group]))  # int32 while ids fit
        dead: np.ndarray | None = None
        at = 0
        while group:  # copy each into place and let it go (its blob with it)
            run = group.pop(0)
            end = at + len(run)
            kh[at:end], h[at:end], ver[at:end] = run.khash, run.hash, run.ver
            if run.dead is not None:
                dead = np.zeros(size, dtype=bool) if dead is None else dead
                dead[at:end] = run.dead
            at = end
        # Sort the arrays themselves, one at a time (each old one freed as its sorted copy is made):
        # the transient peak is one array and the order, not every column twice.
        order = np.argsort(kh)
        kh = kh[order]
        h = h[order]
        ver = ver[order]
        dead = None if dead is None else dead[order]
        del order
        if len(kh) > 1 and bool((kh[1:] == kh[:-1]).any()):  # a key in several segments: keep its latest
            idx = latest(kh, ver)
            kh, h, ver, dead = kh[idx], h[idx], ver[idx], None if dead is None else dead[idx]
        return Run(kh, h, dead, _narrow(ver))

    def _push(self, run: Run) -> None:
        self.runs.append(run)
        while (len(self.runs) > 1 and 2 * len(self.runs[-1]) >= len(self.runs[-2])
               and len(self.runs[-1]) + len(self.runs[-2]) <= self.cap):
            newer = self.runs.pop()
            older = self.runs.pop()
            self.runs.append(Run.merged([older, newer]))

    def probe(self, keys: pa.Array | pa.ChunkedArray | Sequence[str]) -> Probe:
        """The latest state of each key (tombstones count as absent)."""
        arr = keys if isinstance(keys, (pa.Array, pa.ChunkedArray)) else pa.array(keys, pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        n = len(arr)
        if not self.runs or n == 0:
            return Probe.empty(n, self.with_ids)
        # Search in key-hash order: each binary search starts near where the last one ended.
        hashed = key_hashes(arr)
        order = np.argsort(hashed)
        kh = hashed[order]
        best_ver = np.full(n, -1, dtype=np.int64)
        best_hash = np.zeros(n, dtype=np.int64)
        best_dead = np.zeros(n, dtype=bool)
        best_run = np.full(n, -1, dtype=np.int64)
        best_pos = np.zeros(n, dtype=np.int64)
        checks: np.ndarray | None = None
        for r, run in enumerate(self.runs):
            pos = np.searchsorted(run.khash, kh)
            pos[pos == len(run)] = 0
            hit = run.khash[pos] == kh
            if run.check is not None:
                # Two keys with one hash must not share an Id: a second hash must match too.
                if checks is None:
                    checks = check_hashes(arr)[order]
                hit &= run.check[pos] == checks
            ver = run.ver[pos]
            win = hit & (ver > best_ver)
            best_ver[win] = ver[win]
            best_hash[win] = run.hash[pos[win]]
            best_dead[win] = run.dead[pos[win]] if run.dead is not None else False
            best_run[win] = r
            best_pos[win] = pos[win]
        found = (best_ver >= 0) & ~best_dead
        present = np.empty(n, dtype=bool)
        present[order] = found
        stored = np.zeros(n, dtype=np.int64)
        stored[order] = np.where(found, best_hash, 0)
        ids = None
        if self.with_ids:
            ids = np.full(n, None, dtype=object)
            for r, run in enumerate(self.runs):
                at = np.flatnonzero(found & (best_run == r))
                if len(at) and run.ids is not None:
                    ids[order[at]] = run.ids.take(pa.array(best_pos[at])).to_numpy(zero_copy_only=False)
        return Probe(present, stored, ids)


class Scan:
    """The latest state of a window of keys, found in one pass over a scope's segments.

    Nothing of the scope stays in memory: each segment's index (key hashes, payload hashes,
    versions) is searched as it is read, and only the window's winners are kept — about 40
    bytes per window key, whatever the size of the scope. A load probes a window of rows
    (a file, or :data:`sfsync.jobs.window.WINDOW_ROWS`) this way instead of holding an
    index of every state (see :class:`ScopeIndex` for the probe-many-times case).
    """

    def __init__(self, khash: np.ndarray) -> None:
        self.uniq, inverse = np.unique(khash, return_inverse=True)
        self.inverse = inverse.astype(np.int32) if len(inverse) < 2**31 else inverse
        del inverse
        n = len(self.uniq)
        self.ver = np.full(n, -1, dtype=np.int64)
        self.hash = np.zeros(n, dtype=np.int64)
        self.dead = np.zeros(n, dtype=bool)
        self.seg = np.full(n, -1, dtype=np.int64)
        self.pos = np.zeros(n, dtype=np.int64)
        # A filter on the top bits of the key hash (8 slots per key: ~1 in 8 states of other keys
        # pass): most of a segment's states are dismissed by one lookup instead of a binary search.
        bits = max(10, int(n).bit_length() + 3)
        self._shift = np.uint64(64 - bits)
        self._filter = np.zeros(1 << bits, dtype=bool)
        self._filter[self.uniq >> self._shift] = True

    def add(self, table: pa.Table, segment_id: int) -> None:
        """Search one segment (its index columns, sorted by key hash) for the window's keys.

        States without a ``ver`` column carry ``segment_id`` as their version.
        """
        n = len(self.uniq)
        skh = table.column("khash").combine_chunks().to_numpy()
        if not n or not len(skh):
            return
        theirs = np.flatnonzero(self._filter[skh >> self._shift])
        at = np.searchsorted(self.uniq, skh[theirs])
        at[at == n] = 0
        hit = self.uniq[at] == skh[theirs]
        mine, theirs = at[hit], theirs[hit]
        if not len(mine):
            return
        ver = (table.column("ver").combine_chunks().to_numpy()[theirs] if "ver" in table.column_names
               else np.full(len(theirs), segment_id, dtype=np.int64))  # a segment as written: its id
        win = ver > self.ver[mine]
        mine, theirs = mine[win], theirs[win]
        if not len(mine):
            return
        h = table.column("hash").combine_chunks().take(pa.array(theirs))
        self.ver[mine] = ver[win]
        self.dead[mine] = h.is_null().to_numpy(zero_copy_only=False) if h.null_count else False
        self.hash[mine] = pc.fill_null(h, 0).to_numpy() if h.null_count else h.to_numpy()
        self.seg[mine] = segment_id
        self.pos[mine] = theirs

    def found(self) -> np.ndarray:
        """Per distinct key hash: a live state was found."""
        return (self.ver >= 0) & ~self.dead

    def probe(self) -> Probe:
        """The result aligned with the window's keys (Ids not filled in: see :meth:`winners`)."""
        found = self.found()
        return Probe(found[self.inverse], np.where(found, self.hash, 0)[self.inverse], None)

    def winners(self) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
        """(segment id, distinct-key indices, positions in that segment) of the live states found."""
        found = self.found()
        idx = np.flatnonzero(found)
        segs = self.seg[idx]
        order = np.argsort(segs, kind="stable")
        idx, segs = idx[order], segs[order]
        bounds = np.flatnonzero(np.diff(segs)) + 1
        for part in np.split(np.arange(len(idx)), bounds):
            if len(part):
                yield int(segs[part[0]]), idx[part], self.pos[idx[part]]
