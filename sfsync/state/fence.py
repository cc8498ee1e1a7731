"""Insert fences: inserts of one object without an External ID never overlap between processes.

An object upserted by External ID is safe against a concurrent writer: the org refuses the
second insert of a key (DUPLICATE_VALUE) and sfsync upserts again. An object without one
(AccountBalance: account + date; Account: its number) has no such arbiter: sfsync matches the
composite key itself (state store, then SOQL) and inserts what it did not find. Two processes
doing that at once — a monthly load and a webhook refresh of one account — would both insert.

So a write that may insert such records holds the object's fence: a named run lock
(:class:`~sfsync.state.lock.RunLock`: a PostgreSQL advisory lock, or a row on SQLite; a dead
holder is replaced), and a *generation* per object that each fenced write which inserted
bumps. A writer remembers the generation its matcher cache was built at; finding another
there, it drops the cache and asks the org again. Inside the fence, the org's answer cannot
change before the insert: nothing is inserted twice.
"""

from __future__ import annotations

import time
from types import TracebackType

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from sfsync.errors import LockHeld, TransientError
from sfsync.state import models as m
from sfsync.state.lock import RunLock
from sfsync.state.store import StateStore

#: How long a write waits for another process's fenced insert (a load's slice of a Bulk job can
#: take minutes on a busy org) before it stops with a transient error (the run is resumable).
WAIT_SECONDS = 600.0
POLL_SECONDS = 0.05


class InsertFence:
    """``with InsertFence(store, sobject) as fence:`` — this process alone inserts ``sobject`` records.

    ``fence.generation`` is the object's generation on entry; call :meth:`inserted` once records
    were created, and it is bumped on exit (also when the block raises: an insert may have
    happened). After the block, ``fence.generation`` is the generation this process left.

    Raises:
        TransientError: another process held the fence for longer than ``wait_seconds``.
    """

    def __init__(self, store: StateStore, sobject: str, *, wait_seconds: float = WAIT_SECONDS,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.sobject = sobject
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.generation = 0
        self.waited = 0.0
        self._lock = RunLock(store, f"insert:{sobject}")
        self._inserted = False

    def inserted(self) -> None:
        """Records were created inside the fence: other writers' caches are stale once it is left."""
        self._inserted = True

    def __enter__(self) -> InsertFence:
        start = time.monotonic()
        while True:
            try:
                self._lock.acquire()
                break
            except LockHeld as exc:
                if time.monotonic() - start >= self.wait_seconds:
                    raise TransientError(f"{self.sobject}: another sfsync process is inserting its records and "
                                         f"still was after {self.wait_seconds:.0f} s ({exc}); run again") from None
                time.sleep(self.poll_seconds)
        self.waited = time.monotonic() - start
        try:
            self.generation = self._read()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._inserted or et is not None:
                t = m.insert_fences
                with self.store.engine.begin() as c:
                    c.execute(update(t).where(t.c.name == self.sobject).values(generation=t.c.generation + 1))
                self.generation += 1
        finally:
            self._lock.release()

    def _read(self) -> int:
        t = m.insert_fences
        with self.store.engine.begin() as c:
            gen = c.execute(select(t.c.generation).where(t.c.name == self.sobject)).scalar()
            if gen is not None:
                return int(gen)
        try:
            with self.store.engine.begin() as c:
                c.execute(insert(t).values(name=self.sobject, generation=0))
        except IntegrityError:  # pragma: no cover - only a holder of the fence inserts the row
            pass
        return 0


def generation(store: StateStore, sobject: str) -> int:
    """The object's generation now (0 before any fenced insert), without taking the fence."""
    t = m.insert_fences
    with store.engine.connect() as c:
        gen = c.execute(select(t.c.generation).where(t.c.name == sobject)).scalar()
    return int(gen or 0)
