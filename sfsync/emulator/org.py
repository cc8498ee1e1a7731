"""The emulated org: schema + records + counters + limits + faults, thread-safe.

Everything else in :mod:`sfsync.emulator` (REST, Bulk 1.0/2.0, SOQL, admin) works on an
:class:`Org`. Public surface:

* ``Org(state_dir=None, schema_overlay=None, faults=None)``
* ``org.dml(sobject, operation, rows, external_id_field=None, *, all_or_none=False, api="rest",
  parent_lock=None) -> list[DmlResult]``
* ``org.get(sobject, id)``, ``org.by_id(id)``, ``org.records(sobject, include_deleted=False)``,
  ``org.find_by(sobject, field, value)``
* ``org.record_call(kind)`` (counts an API call, spends the daily budget, may raise
  REQUEST_LIMIT_EXCEEDED), ``org.counters``, ``org.limits()``, ``org.note_bulk_batch()``,
  ``org.note_bulk_query_job()``
* ``org.reset()``, ``org.flush()``, ``org.close()``; ``org.lock`` (an RLock) for compound reads.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sfsync.emulator.bulk_engine import retention_bytes_from_env
from sfsync.emulator.dml import BULK_APIS, run_dml
from sfsync.emulator.errors import DmlResult, SfApiError
from sfsync.emulator.faults import Faults
from sfsync.emulator.ids import normalize_id
from sfsync.emulator.record import Record, make_record
from sfsync.emulator.schema import Schema
from sfsync.emulator.store import RecordStore, index_key

log = logging.getLogger(__name__)

DEFAULT_DAILY_API_REQUESTS = 5_000_000  # generous: benchmarks must not run out by default
DAILY_BULK_API_BATCHES = 15_000
DAILY_BULK_V2_QUERY_JOBS = 10_000
_STATE_FILE = "org.pickle"
_STATE_VERSION = 2  # 2: records are Record objects; 1 (still read): plain dicts
ADMIN_USERNAME = "admin@sfsync.emulator"


class Org(RecordStore):
    """A Salesforce org in memory, optionally persisted under ``state_dir``.

    Args:
        state_dir: Directory for ``org.pickle`` (data, counters, sessions, credentials).
            When given, the org loads it at start and :meth:`flush` writes it back.
        schema_overlay: A YAML overlay adding fields/objects (see docs/emulator.md).
        faults: Fault knobs; all off when None.
        clock: Source of "now" (aware datetime); tests may pin it.
    """

    def __init__(self, state_dir: Path | None = None, schema_overlay: Path | None = None,
                 faults: Faults | None = None, clock: Callable[[], datetime] | None = None,
                 bulk_retention_mb: float | None = None) -> None:
        super().__init__(Schema.load_default(schema_overlay), clock)
        # Data finished Bulk jobs keep before the oldest are deleted (None: the environment's
        # SFSYNC_EMULATOR_BULK_RETENTION_MB, else 256 MB; see bulk_engine.BulkStore).
        self.bulk_retention_bytes = (retention_bytes_from_env() if bulk_retention_mb is None
                                     else max(0, int(bulk_retention_mb * (1 << 20))))
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.faults = faults or Faults()
        self.counters: Counter[str] = Counter()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, str] = {}
        # PEM certificates trusted for the OAuth JWT bearer flow (the server adds its own).
        self.jwt_certificates: list[bytes] = []
        self._dirty = False
        if self.state_dir is not None and (self.state_dir / _STATE_FILE).exists():
            self._load(self.state_dir / _STATE_FILE)
        else:
            self._seed()
        if not self.credentials:
            self.credentials = _new_credentials()
        if self.state_dir is not None and (self.state_dir / "tls" / "jwt-cert.pem").exists():
            # The connected app's certificate made by an earlier server start (see tls.py).
            self.jwt_certificates.append((self.state_dir / "tls" / "jwt-cert.pem").read_bytes())

    # -- DML -------------------------------------------------------------------------------
    def dml(self, sobject: str, operation: str, rows: Sequence[Mapping[str, Any]],
            external_id_field: str | None = None, *, all_or_none: bool = False, api: str = "rest",
            parent_lock: Callable[[str], bool] | None = None) -> list[DmlResult]:
        """Insert, update, upsert, delete, hardDelete or undelete records.

        Args:
            sobject: Object API name (case-insensitive); unknown → SfApiError 404 NOT_FOUND.
            operation: insert | update | upsert | delete | hardDelete | undelete.
            rows: One mapping per record: field name → value. Values are CSV strings or JSON
                values. Flat relationship columns (``Rel__r.ExtField__c``, ``Account.AccountNumber``)
                resolve by external ID / idLookup. With ``api`` "bulk1"/"bulk2" a blank cell
                leaves the field unchanged and ``#N/A`` sets null (Salesforce's bulk rules);
                with "rest", None and "" set null. Delete-like operations read ``Id``.
            external_id_field: The upsert key (``Id`` allowed).
            all_or_none: When any row fails, nothing is written and the other rows fail with
                ALL_OR_NONE_OPERATION_ROLLED_BACK.
            api: Which API the rows came through (counters: bulk rows count as ingested).
            parent_lock: Called with the master-detail parent Id of each row; returning True
                fails the row with UNABLE_TO_LOCK_ROW (the Bulk modules combine this with
                ``org.faults.should_lock``).

        Returns:
            One :class:`DmlResult` per row, in input order. Row problems are values; only
            request-level problems (unknown object, bad upsert field) raise SfApiError.
        """
        with self.lock:
            # Big loads allocate millions of acyclic records; the cyclic GC re-scanning them
            # costs a third of the time, so it is paused for the call, and what a large call
            # stored is moved out of the GC's way afterwards (records never form cycles).
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                results = run_dml(self, sobject, operation, rows, external_id_field, all_or_none, api, parent_lock)
            finally:
                if gc_was_enabled:
                    gc.enable()
            if gc_was_enabled and len(rows) >= 1000:
                # Free the young cyclic garbage, then move what survives (mostly the records
                # just stored) to the permanent generation so later full collections do not
                # re-scan millions of records. The cost: cyclic garbage already in the oldest
                # generation is frozen with them, a bounded leak for a test/demo server.
                gc.collect(1)
                gc.freeze()
            self._dirty = True
            return results

    def _note_rows(self, api: str, n: int) -> None:
        self.counters["dml_rows"] += n
        if api in BULK_APIS:
            self.counters["records_ingested"] += n

    # -- reads -----------------------------------------------------------------------------
    def get(self, sobject: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        """A copy of one record with every field of its object (None for blanks), or None.

        Raises SfApiError 404 for an unknown object.
        """
        obj = self.schema.get(sobject)
        rid = normalize_id(record_id)
        with self.lock:
            rec = self._data[obj.name].get(rid) if rid else None
            if rec is None or (rec.get("IsDeleted") and not include_deleted):
                return None
            return {name: rec.get(name) for name in obj.fields}

    def records(self, sobject: str, include_deleted: bool = False) -> list[Record]:
        """A snapshot list of the stored records of ``sobject`` (live, read-only mappings).

        Stored records hold only non-null fields; read them with ``.get``. Formula fields are
        present with their current value. Unknown object → SfApiError 404.
        """
        obj = self.schema.get(sobject)
        with self.lock:
            store = self._data[obj.name]
            if include_deleted or not self._deleted_count[obj.name]:
                return list(store.values())
            return [r for r in store.values() if not r["IsDeleted"]]

    def find_by(self, sobject: str, field: str, value: object, *, include_deleted: bool = False) -> list[Record]:
        """Records whose ``field`` equals ``value`` (index lookup when the field is indexed).

        Text matching follows the field's case sensitivity, as external-ID matching does.
        """
        obj = self.schema.get(sobject)
        fd = self.schema.field(obj.name, field)
        with self.lock:
            multi = self._multi_index(obj.name, fd.name)
            if fd.name == "Id":
                rec = self.by_id(str(value))
                found = [rec] if rec is not None and self._obj_of(rec["Id"]) == obj.name else []
            elif fd.name in self._uidx[obj.name] or multi is not None:
                key = index_key(value, fd.case_sensitive)
                store = self._data[obj.name]
                if multi is None:
                    rid = self._uidx[obj.name][fd.name].get(key)
                    ids: tuple[str, ...] = (rid,) if rid else ()
                else:
                    ids = multi.ids(key)
                found = [store[i] for i in sorted(ids)]
            else:
                found = [r for r in self._data[obj.name].values() if r.get(fd.name) == value]
            if not include_deleted:
                found = [r for r in found if not r["IsDeleted"]]
            return found

    def now(self) -> datetime:
        """The org's current time (aware, UTC unless the clock says otherwise): SOQL's TODAY."""
        return self.clock()

    @property
    def admin_user_id(self) -> str:
        """Id of the org's one User (owner/creator of everything)."""
        return self._user_id

    def record_type_ids(self, sobject: str) -> dict[str, str]:
        """DeveloperName → RecordType Id for ``sobject``'s record types."""
        name = self.schema.get(sobject).name
        with self.lock:
            return {r["DeveloperName"]: r["Id"] for r in self._data["RecordType"].values()
                    if r.get("SobjectType") == name and not r["IsDeleted"]}

    def describe(self, sobject: str) -> dict[str, Any]:
        """Describe body for ``sobject`` with this org's record type Ids."""
        return self.schema.describe(sobject, self.record_type_ids(sobject))

    # -- calls, counters, limits -----------------------------------------------------------
    @property
    def daily_api_max(self) -> int:
        """DailyApiRequests Max (the ``daily_request_limit`` fault overrides the default)."""
        return int(self.faults.daily_request_limit or DEFAULT_DAILY_API_REQUESTS)

    def record_call(self, kind: str | None) -> int:
        """Count one API call of ``kind`` (rest, bulk1, bulk2, soap...) and spend the budget.

        ``kind`` None spends the budget without bumping a per-kind counter (for modules that
        count their own calls in ``org.counters``).

        Returns:
            The 1-based number of this call among all counted calls (for fault schedules).

        Raises:
            SfApiError: 403 REQUEST_LIMIT_EXCEEDED when the daily budget is used up.
        """
        with self.lock:
            if self.counters["api_requests"] >= self.daily_api_max:
                self.counters["rejected_limit"] += 1
                raise SfApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            if kind:
                self.counters[kind] += 1
            self.counters["api_requests"] += 1
            self._dirty = True
            return self.counters["api_requests"]

    def note_bulk_batch(self, n: int = 1) -> None:
        """Spend ``n`` of DailyBulkApiBatches (shared by Bulk 1.0 batches and Bulk 2.0 chunks)."""
        with self.lock:
            self.counters["bulk_batches"] += n

    def note_bulk_query_job(self) -> None:
        """Spend one of DailyBulkV2QueryJobs."""
        with self.lock:
            self.counters["bulk2_query_jobs"] += 1

    def api_usage(self) -> str:
        """The ``Sforce-Limit-Info`` header value, e.g. ``api-usage=12/5000000``."""
        return f"api-usage={self.counters['api_requests']}/{self.daily_api_max}"

    def limits(self) -> dict[str, dict[str, int]]:
        """The ``limits/`` body: Max/Remaining that really decrease with use."""
        with self.lock:
            api_max = self.daily_api_max
            records = sum(len(s) for s in self._data.values())
            storage_mb = records * 2 // 1024  # Salesforce counts ~2 KB per record
            return {
                "DailyApiRequests": {"Max": api_max, "Remaining": max(0, api_max - self.counters["api_requests"])},
                "DailyBulkApiBatches": {"Max": DAILY_BULK_API_BATCHES,
                                        "Remaining": max(0, DAILY_BULK_API_BATCHES - self.counters["bulk_batches"])},
                "DailyBulkV2QueryJobs": {"Max": DAILY_BULK_V2_QUERY_JOBS,
                                         "Remaining": max(0, DAILY_BULK_V2_QUERY_JOBS - self.counters["bulk2_query_jobs"])},
                "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
                "DataStorageMB": {"Max": 200_000, "Remaining": max(0, 200_000 - storage_mb)},
                "FileStorageMB": {"Max": 200_000, "Remaining": 200_000},
                "HourlyODataCallout": {"Max": 20000, "Remaining": 20000},
            }

    # -- lifecycle -------------------------------------------------------------------------
    def _seed(self) -> None:
        """Data every org has at birth: the admin User and the record types."""
        with self.lock:
            user_vals = {"Username": ADMIN_USERNAME, "LastName": "Admin", "FirstName": "Emulator",
                         "Name": "Emulator Admin", "Email": "admin@example.invalid", "Alias": "eadmin", "IsActive": True}
            now = self._now()
            self._user_id = self._apply_insert(self.schema.get("User"), user_vals, now)
            rt = self.schema.get("RecordType")
            for obj in self.schema.objects.values():
                for dev, label in obj.record_types:
                    self._apply_insert(rt, {"Name": label, "DeveloperName": dev, "SobjectType": obj.name,
                                            "IsActive": True, "NamespacePrefix": "vlocity_cmt" if dev.startswith(
                                                "vlocity_cmt__") else None}, now)

    def reset(self) -> None:
        """Forget every record, counter and session; re-seed the admin User and record types."""
        with self.lock:
            self._clear()
            self.counters.clear()
            # Sessions that never expire (connection.json's token) outlive a reset.
            self.sessions = {k: v for k, v in self.sessions.items() if not v.get("expires", True)}
            self._seed()
            self._dirty = True

    def flush(self) -> None:
        """Write the state file (atomically) when a state_dir is set and something changed."""
        if self.state_dir is None:
            return
        with self.lock:
            if not self._dirty:
                return
            self.state_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "version": _STATE_VERSION, "data": self._data, "deleted_count": self._deleted_count,
                "cascaded": self._cascaded, "seq": self._seq,
                "autonumber": self._autonumber, "user_id": self._user_id, "counters": dict(self.counters),
                "sessions": self.sessions, "credentials": self.credentials,
            }
            tmp = self.state_dir / (_STATE_FILE + ".tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.state_dir / _STATE_FILE)
            self._dirty = False

    def close(self) -> None:
        """Flush the state; the org stays usable (closing is only about durability)."""
        self.flush()

    def _load(self, path: Path) -> None:
        with open(path, "rb") as fh:
            state = pickle.load(fh)  # our own file in our own state dir
        if state.get("version") not in (1, _STATE_VERSION):
            raise ValueError(f"{path}: unsupported emulator state version {state.get('version')}")
        with self.lock:
            self._clear()
            for name, records in state["data"].items():
                if name in self._data:  # objects dropped from the schema are dropped from the state
                    self._data[name] = records if state["version"] == _STATE_VERSION else {
                        rid: make_record(rec) for rid, rec in records.items()}
            for name, n in state["deleted_count"].items():
                if name in self._deleted_count:
                    self._deleted_count[name] = n
            self._cascaded = state["cascaded"]
            self._seq = state["seq"]
            self._autonumber = state["autonumber"]
            self._user_id = state["user_id"]
            self.counters = Counter(state["counters"])
            self.sessions = state["sessions"]
            self.credentials = state["credentials"]
            for name, store in self._data.items():
                for rec in store.values():
                    if not rec.get("IsDeleted"):
                        self._index(name, rec, True)
            # Record types added by a newer schema or overlay since the state was written.
            have = {(r.get("SobjectType"), r.get("DeveloperName")) for r in self._data["RecordType"].values()}
            rt = self.schema.get("RecordType")
            for obj in self.schema.objects.values():
                for dev, label in obj.record_types:
                    if (obj.name, dev) not in have:
                        self._apply_insert(rt, {"Name": label, "DeveloperName": dev, "SobjectType": obj.name}, self._now())


def _new_credentials() -> dict[str, str]:
    return {
        "username": ADMIN_USERNAME,
        "password": "emulator-" + secrets.token_hex(4),
        "security_token": secrets.token_hex(8).upper(),
        "client_id": "3MVG9sfsyncEmulator" + secrets.token_hex(8),
        "client_secret": secrets.token_hex(16),
    }
