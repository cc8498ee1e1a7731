"""The state store: sfsync's memory. SQL lives only here."""

from sfsync.state.lock import RunLock, lock_name
from sfsync.state.record_states import RecordState
from sfsync.state.store import FileEntry, LedgerEntry, Reject, Run, StateStore

__all__ = ["FileEntry", "LedgerEntry", "RecordState", "Reject", "Run", "RunLock", "StateStore", "lock_name"]
