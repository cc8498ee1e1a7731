"""Deliberate misbehaviour, the way real orgs misbehave, deterministic with a seed.

A faults document (YAML or JSON file, or ``PUT /__emulator/faults``) sets any of::

    seed: 42                          # makes every random choice repeatable
    lock_error_rate: 0.05             # UNABLE_TO_LOCK_ROW per record with this probability
    lock_contention:                  # parallel batches touching children of the same master
      enabled: true
      probability: 1.0                # chance a contended row fails (1.0 = always)
    session_expire_after_calls: 50    # every session dies after N authenticated calls
    http_503_burst: {start_at_call: 10, count: 3}   # calls K..K+N-1 answer 503
    daily_request_limit: 100          # DailyApiRequests Max; REQUEST_LIMIT_EXCEEDED after it
    bulk_job_in_progress_polls: 3     # a bulk job reports InProgress for N status polls
    bulk_job_fail:                    # the matching job ends Failed with this message
      object: vlocity_cmt__StatementLineItem__c   # optional filters
      operation: upsert
      message: "InvalidBatch : simulated failure"
      times: 1                        # how many jobs fail (default 1)

The bulk modules consult :meth:`Faults.should_lock`, :meth:`Faults.lock_error`,
:meth:`Faults.in_progress_polls` and :meth:`Faults.job_failure`; the HTTP layer consults
:meth:`Faults.http_503` and the session-expiry knob through the org.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_KNOWN = frozenset({
    "seed", "lock_error_rate", "lock_contention", "session_expire_after_calls", "http_503_burst",
    "daily_request_limit", "bulk_job_in_progress_polls", "bulk_job_fail", "concurrent_upsert",
})


@dataclass
class Faults:
    """The live fault settings of an org (all off by default)."""

    seed: int = 0
    lock_error_rate: float = 0.0
    lock_contention: dict[str, Any] = field(default_factory=dict)
    session_expire_after_calls: int | None = None
    http_503_burst: dict[str, Any] = field(default_factory=dict)
    daily_request_limit: int | None = None
    bulk_job_in_progress_polls: int = 0
    bulk_job_fail: dict[str, Any] = field(default_factory=dict)
    concurrent_upsert: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._jobs_failed = 0
        self._races = 0

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Faults:
        """Build from a faults document; ValueError names any unknown key."""
        faults = cls()
        faults.update(data or {}, replace=True)
        return faults

    @classmethod
    def load(cls, path: Path) -> Faults:
        """Read a YAML or JSON faults file."""
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{path}: a faults file is a mapping of knob: value")
        return cls.from_dict(data)

    def update(self, data: dict[str, Any], *, replace: bool = False) -> None:
        """Change knobs live. With ``replace`` every knob not given goes back to off."""
        unknown = set(data) - _KNOWN
        if unknown:
            raise ValueError(f"unknown fault knob(s): {', '.join(sorted(unknown))}")
        with self._lock:
            if replace:
                fresh = Faults()
                for name in _KNOWN:
                    setattr(self, name, getattr(fresh, name))
            for name, value in data.items():
                setattr(self, name, value if value is not None else getattr(Faults(), name))
            self.lock_error_rate = float(self.lock_error_rate or 0.0)
            self.bulk_job_in_progress_polls = int(self.bulk_job_in_progress_polls or 0)
            self._rng = random.Random(self.seed)
            self._jobs_failed = 0

    def to_dict(self) -> dict[str, Any]:
        """The current knobs, as accepted by :meth:`update`."""
        return {name: getattr(self, name) for name in sorted(_KNOWN)}

    # -- questions the org and the API modules ask -----------------------------------------
    def lock_error(self) -> bool:
        """Whether this record should fail with UNABLE_TO_LOCK_ROW (``lock_error_rate``)."""
        if not self.lock_error_rate:
            return False
        with self._lock:
            return self._rng.random() < self.lock_error_rate

    def should_lock(self, parent_id: str, concurrent: bool) -> bool:
        """Whether a row whose master record is ``parent_id`` loses the parent's lock.

        Args:
            parent_id: Id of the master-detail parent the row writes under.
            concurrent: True when another batch processed at the same time (Parallel mode)
                touches children of the same parent. Serial processing passes False and
                never fails, which is the documented remedy.
        """
        if not concurrent or not self.lock_contention.get("enabled"):
            return False
        probability = float(self.lock_contention.get("probability", 1.0))
        if probability >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < probability

    def upsert_raced(self, sobject: str) -> bool:
        """Whether another writer creates this upsert's new External ID first (``concurrent_upsert``).

        Two upserts of one new External ID at the same moment (a webhook refresh during a load):
        Salesforce creates the record for one and answers the other DUPLICATE_VALUE. Knob:
        ``{object, rate (default 1.0), times (default: no limit)}``.
        """
        rule = self.concurrent_upsert
        if not rule or (rule.get("object") and str(rule["object"]).lower() != sobject.lower()):
            return False
        with self._lock:
            if rule.get("times") is not None and self._races >= int(rule["times"]):
                return False
            if self._rng.random() >= float(rule.get("rate", 1.0)):
                return False
            self._races += 1
            return True

    @property
    def upserts_raced(self) -> int:
        """How many upsert rows ``concurrent_upsert`` has answered DUPLICATE_VALUE so far."""
        return self._races

    def http_503(self, call_number: int) -> bool:
        """Whether API call number ``call_number`` (1-based, all kinds) answers 503."""
        burst = self.http_503_burst
        if not burst:
            return False
        start = int(burst.get("start_at_call", 1))
        return start <= call_number < start + int(burst.get("count", 1))

    def in_progress_polls(self) -> int:
        """How many status polls a bulk job should report InProgress before it finishes."""
        return self.bulk_job_in_progress_polls

    def job_failure(self, sobject: str, operation: str) -> str | None:
        """The ``errorMessage`` a new bulk job should fail with, or None to run normally.

        Each call that returns a message uses up one of ``bulk_job_fail.times``.
        """
        rule = self.bulk_job_fail
        if not rule:
            return None
        if rule.get("object") and str(rule["object"]).lower() != sobject.lower():
            return None
        if rule.get("operation") and str(rule["operation"]).lower() != operation.lower():
            return None
        with self._lock:
            if self._jobs_failed >= int(rule.get("times", 1)):
                return None
            self._jobs_failed += 1
        return str(rule.get("message") or "InvalidBatch : Failed by the emulator's bulk_job_fail fault")
