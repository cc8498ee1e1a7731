"""What Bulk 1.0 and Bulk 2.0 share: job ids, per-org job stores, header resolution, DML
in internal batches with the parent-lock fault rule, compact per-row outcomes.

The HTTP dialects live in :mod:`.bulk2` and :mod:`.bulk1`; this module knows nothing of
them. Jobs are processed when a client first asks about them after they are ready
(a status poll or a results request), not by a background thread: the result is the
same for clients, which always poll, and tests stay deterministic (which batches run
"at the same time" is decided by what was queued, not by scheduler timing).
"""

from __future__ import annotations

import gc
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.bulk_csv import format_errors
from sfsync.emulator.errors import DmlResult, SfApiError, SfError

JOB_PREFIX = "750"
BATCH_PREFIX = "751"
RESULT_PREFIX = "752"

INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")


class HeaderError(ValueError):
    """A CSV/record field name the object does not have; ``str()`` is the batch message."""


# ------------------------------------------------------------------------------ stores


#: What finished Bulk jobs may keep (uploads, results, query rows) before the oldest are deleted.
DEFAULT_RETENTION_MB = 256
#: Estimated bytes a row's outcome (its Id and flags) or a query result row keeps.
OUTCOME_ROW_BYTES = 80
QUERY_ROW_BYTES = 200


def retention_bytes_from_env() -> int:
    """``SFSYNC_EMULATOR_BULK_RETENTION_MB`` (default :data:`DEFAULT_RETENTION_MB`), in bytes."""
    raw = os.environ.get("SFSYNC_EMULATOR_BULK_RETENTION_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_RETENTION_MB
    except ValueError:
        raise ValueError(f"SFSYNC_EMULATOR_BULK_RETENTION_MB: not a number of megabytes: {raw!r}") from None
    return max(0, int(mb * (1 << 20)))


@dataclass
class BulkStore:
    """The Bulk jobs of one org (both APIs), guarded by one lock.

    Salesforce deletes Bulk jobs (and their results) seven days after they finish; an
    emulator that kept every finished job would hold each upload and its results for as long
    as it runs (about 1 GB per million rows loaded). Finished jobs are kept up to
    ``retention_bytes`` of their data instead: beyond it the oldest are deleted, and asking
    about one answers like a deleted job (404 ``NOT_FOUND`` / ``InvalidJob``).

    Attributes:
        jobs: Job objects by id (Bulk 1.0 and 2.0 share the 750 id space, as in Salesforce).
        lock: Taken for any change of job state; processing takes the job's own lock.
        retention_bytes: Data of finished jobs kept before the oldest are deleted.
        expired: How many finished jobs were deleted to stay within ``retention_bytes``.
    """

    jobs: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    retention_bytes: int = DEFAULT_RETENTION_MB << 20
    expired: int = 0
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _finished: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _finished_bytes: int = 0

    def new_id(self, prefix: str) -> str:
        """A fresh 18-character id with ``prefix`` (750 job, 751 batch, 752 result)."""
        with self.lock:
            return ids.make_id(prefix, next(self._seq))

    def finished(self, job_id: str, nbytes: int) -> int:
        """Note that a job is done and keeps ``nbytes``; delete the oldest done jobs beyond the budget.

        The job just finished is always kept (a client is about to read its results).

        Returns:
            How many jobs were deleted.
        """
        gone = 0
        with self.lock:
            if job_id not in self.jobs:
                return 0
            self._finished_bytes += nbytes - self._finished.pop(job_id, 0)
            self._finished[job_id] = nbytes
            while self._finished_bytes > self.retention_bytes and len(self._finished) > 1:
                old, size = self._finished.popitem(last=False)
                self._finished_bytes -= size
                if self.jobs.pop(old, None) is not None:
                    gone += 1
            self.expired += gone
        return gone

    def forget(self, job_id: str) -> None:
        """Delete a job (a client's DELETE)."""
        with self.lock:
            self.jobs.pop(job_id, None)
            self._finished_bytes -= self._finished.pop(job_id, 0)

    @property
    def retained_bytes(self) -> int:
        """The data finished jobs keep now (estimated)."""
        return self._finished_bytes


_stores: weakref.WeakKeyDictionary[Any, BulkStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def store_for(org: Any) -> BulkStore:
    """The job store of ``org``, created on first use (finished jobs kept up to ``org.bulk_retention_bytes``)."""
    with _stores_lock:
        store = _stores.get(org)
        if store is None:
            retention = getattr(org, "bulk_retention_bytes", None)
            store = _stores[org] = BulkStore(retention_bytes=DEFAULT_RETENTION_MB << 20 if retention is None else retention)
        return store


def job_finished(org: Any, job_id: str, nbytes: int) -> None:
    """Hand a finished job's data size to the store (which may delete older jobs; counted)."""
    gone = store_for(org).finished(job_id, nbytes)
    if gone:
        org.counters["bulk_jobs_expired"] += gone


def reset_store(org: Any) -> None:
    """Forget every Bulk job of ``org`` (used when the org is reset)."""
    with _stores_lock:
        _stores.pop(org, None)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def sf_datetime(moment: datetime) -> str:
    """``2026-11-25T10:00:00.000+0000``: Bulk 2.0 and Bulk 1.0 JSON timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def sf_datetime_z(moment: datetime) -> str:
    """``2026-11-25T10:00:00.000Z``: Bulk 1.0 XML timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------- schema checks


def object_name(org: Any, sobject: str) -> str | None:
    """The canonical name of ``sobject``, or None when the org has no such object."""
    obj = org.schema.find(sobject)
    return obj.name if obj is not None else None


def external_id_name(org: Any, sobject: str, field_name: str) -> str | None:
    """The canonical name of an upsert key field, or None when it cannot be one.

    Salesforce accepts ``Id`` and any external-ID or idLookup field.
    """
    fd = org.schema.find(sobject).field(field_name)
    if fd is None or not (fd.external_id or fd.id_lookup):
        return None
    return str(fd.name)


def resolve_header(org: Any, sobject: str, header: Sequence[str]) -> list[str]:
    """Map column names to the org's canonical names, refusing unknown ones as Salesforce does.

    Plain fields must exist on the object; ``Rel__r.Field`` columns need a relationship of
    that name and a field on the target that is an external ID or idLookup field.

    Raises:
        HeaderError: The whole batch fails with this message.
    """
    obj = org.schema.find(sobject)
    out: list[str] = []
    seen: set[str] = set()
    for raw in header:
        name = raw.strip()
        if "." in name:
            rel_name, _, target_field = name.partition(".")
            rel = obj.relationship(rel_name.split(":", 1)[0])
            target = org.schema.find(rel.reference_to[0]) if rel is not None else None
            tfd = target.field(target_field) if target is not None else None
            if rel is None or tfd is None or not (tfd.external_id or tfd.id_lookup):
                raise HeaderError(f"InvalidBatch : Field name not found : {name}")
            canonical = f"{rel.relationship_name}.{tfd.name}"
        else:
            fd = obj.field(name)
            if fd is None:
                raise HeaderError(f"InvalidBatch : Field name not found : {name}")
            canonical = str(fd.name)
        if canonical.lower() in seen:
            raise HeaderError(f"InvalidBatch : Duplicate field name : {name}")
        seen.add(canonical.lower())
        out.append(canonical)
    return out


def csv_records(names: Sequence[str], rows: Sequence[Sequence[str]]) -> list[dict[str, object]]:
    """Turn CSV rows into org records (``{column: cell}``), cells untouched.

    Bulk CSV semantics (an empty cell leaves a field unchanged, ``#N/A`` sets it null)
    are applied by the org for the bulk APIs; every record keeps the same keys so the
    org plans the columns once per batch.
    """
    return [dict(zip(names, row, strict=False)) for row in rows]  # rectangular: checked on upload


# -------------------------------------------------------------------------- outcomes


class Outcomes:
    """Per-row results of an ingest, in input order, stored compactly.

    A million-row job keeps one id string and one flag byte per row; error text only
    for failed rows.
    """

    PROCESSED = 1
    SUCCESS = 2
    CREATED = 4

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.flags = bytearray()
        self.errors: dict[int, list[SfError]] = {}
        self.failed = 0

    def __len__(self) -> int:
        return len(self.flags)

    @property
    def processed(self) -> int:
        """Rows Salesforce counts as processed (successes and failures)."""
        return len(self.flags) - self.flags.count(0)

    def add(self, results: Sequence[DmlResult]) -> None:
        """Append the results of one internal batch."""
        base = len(self.flags)
        ids_append = self.ids.append
        flags = self.flags
        for offset, res in enumerate(results):
            ids_append(res.id)
            if res.success:
                flags.append(7 if res.created else 3)
            else:
                flags.append(1)
                self.failed += 1
                self.errors[base + offset] = list(res.errors)

    def add_unprocessed(self, count: int) -> None:
        """Append ``count`` rows that were never processed (job aborted or failed)."""
        self.ids.extend([None] * count)
        self.flags.extend(bytes(count))

    def error_text(self, index: int) -> str:
        """The Bulk results error text of row ``index`` (empty when it succeeded)."""
        return format_errors(self.errors.get(index, ()))

    def error_tuples(self, index: int) -> list[tuple[str, str, list[str]]]:
        """The errors of row ``index`` as (statusCode, message, fields)."""
        return [(e.status_code, e.message, list(e.fields)) for e in self.errors.get(index, ())]


# ------------------------------------------------------------------- faults and DML


def note_batches(org: Any, amount: int) -> None:
    """Spend ``amount`` of DailyBulkApiBatches (Bulk 1.0 batches and Bulk 2.0 internal batches)."""
    if amount > 0:
        org.note_bulk_batch(amount)


def _wave_lock(org: Any, holders: dict[str, int], group: int) -> Callable[[str], bool]:
    """The parent-lock check for one batch of a wave of batches running at the same time.

    The first batch to write under a master record holds its lock for the whole wave;
    a later batch of the same wave writing under that master contends, and the org's
    ``lock_contention`` fault decides whether the row fails with UNABLE_TO_LOCK_ROW.
    """
    should_lock = org.faults.should_lock

    def check(parent_id: str) -> bool:
        owner = holders.setdefault(parent_id, group)
        return owner != group and bool(should_lock(parent_id, True))

    return check


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large job runs.

    A million-row job creates millions of small acyclic dicts and strings; each
    generation-2 collection walks every live object, which made ingest slow down as the
    org grew. Reference counting still frees everything; the collector resumes after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_waves(
    org: Any,
    sobject: str,
    operation: str,
    external_id: str | None,
    api: str,
    batches: Iterable[list[dict[str, object]]],
    parallel: int,
    sink: Callable[[int, list[DmlResult]], None],
) -> None:
    """Run batches of records through ``org.dml``, ``parallel`` of them at a time.

    Args:
        org: The org.
        sobject: Canonical object name.
        operation: insert, update, upsert, delete or hardDelete.
        external_id: The upsert key field.
        api: ``bulk1`` or ``bulk2`` (the org applies Bulk CSV semantics and counts rows).
        batches: The batches, in order (may be a lazy iterator).
        parallel: How many batches run at the same time (1 = serial: no lock contention).
        sink: Called with (batch index, results) after each batch, in order.
    """
    contention = parallel > 1 and bool(org.faults.lock_contention.get("enabled"))
    iterator = iter(batches)
    index = 0
    with gc_paused():
        while True:
            wave = list(islice(iterator, parallel if contention else 1))
            if not wave:
                return
            holders: dict[str, int] = {}
            for position, records in enumerate(wave):
                lock = _wave_lock(org, holders, position) if contention and len(wave) > 1 else None
                sink(index, dml(org, sobject, operation, records, external_id, api, lock))
                index += 1


def dml(
    org: Any,
    sobject: str,
    operation: str,
    records: list[dict[str, object]],
    external_id: str | None,
    api: str,
    parent_lock: Callable[[str], bool] | None = None,
) -> list[DmlResult]:
    """One ``org.dml`` call; a request-level refusal becomes the same error on every row.

    Salesforce reports, e.g., an upsert key the object lacks on each row of the batch
    rather than failing the whole HTTP call, because the batch was already accepted.
    """
    if not records:
        return []
    try:
        if parent_lock is None:
            return list(org.dml(sobject, operation, records, external_id, api=api))
        return list(org.dml(sobject, operation, records, external_id, api=api, parent_lock=parent_lock))
    except SfApiError as exc:
        err = SfError(exc.code, exc.message, list(exc.fields or []))
        return [DmlResult(None, False, False, [err]) for _ in records]
