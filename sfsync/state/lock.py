"""Run locks: two runs of the same job for the same biller never overlap.

On PostgreSQL the lock is a session advisory lock held on a dedicated connection for the
run's duration (the server frees it when the process dies, even on another machine), plus a
row in ``run_locks`` saying who holds it. On SQLite (one machine) the row is the lock: a
holder whose process is gone, or whose heartbeat is older than ``stale_after``, is replaced.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sfsync.errors import LockHeld
from sfsync.state import models as m
from sfsync.state.store import StateStore, _aware, utcnow

HEARTBEAT_SECONDS = 15.0
STALE_AFTER = timedelta(minutes=2)
DEAD_HOLDER_GRACE_SECONDS = 10.0  # how long the server may take to free a killed holder's session lock


def lock_name(job: str, biller: str | None = None) -> str:
    """The lock's name for a job (and a biller)."""
    return f"{job}:{biller}" if biller else job


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """A context manager holding the named run lock, with a heartbeat thread.

    Raises:
        LockHeld: another live run holds it; the message says which host, pid and run.
    """

    def __init__(self, store: StateStore, name: str, run_id: int | None = None,
                 stale_after: timedelta = STALE_AFTER) -> None:
        self.store = store
        self.name = name
        self.run_id = run_id
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}"
        self._pg_conn: Any = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- acquire / release ------------------------------------------------------------------
    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`LockHeld`."""
        if self.store.dialect == "postgresql":
            self._acquire_pg()
        self._acquire_row()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock-{self.name}", daemon=True)
        self._beat.start()
        return self

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        with self.store.engine.begin() as c:
            c.execute(delete(m.run_locks).where(m.run_locks.c.name == self.name,
                                                 m.run_locks.c.owner == self.owner))
        if self._pg_conn is not None:
            try:
                self._pg_conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (self._key(),))
            finally:
                self._pg_conn.close()
                self._pg_conn = None

    def set_run(self, run_id: int) -> None:
        """Attach the run id once the run exists (for the 'who holds it' message)."""
        self.run_id = run_id
        with self.store.engine.begin() as c:
            c.execute(update(m.run_locks).where(m.run_locks.c.name == self.name,
                                                m.run_locks.c.owner == self.owner).values(run_id=run_id))

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # -- internals ---------------------------------------------------------------------------
    def _key(self) -> int:
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "big", signed=True)

    def _acquire_pg(self) -> None:
        conn = self.store.engine.connect()
        deadline = time.monotonic() + DEAD_HOLDER_GRACE_SECONDS
        while True:
            got = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (self._key(),)).scalar()
            conn.commit()
            if got:
                break
            holder = self._wait_for_holder_row()
            # A holder killed a moment ago still has its session lock until the server notices
            # the dropped connection: wait for that, not for a live holder.
            if holder is None or not self._is_stale(holder) or time.monotonic() > deadline:
                conn.close()
                raise LockHeld(self._held_message(holder))
            time.sleep(0.1)
        self._pg_conn = conn
        # We hold the advisory lock, so any row left behind belongs to a dead holder.
        with self.store.engine.begin() as c:
            c.execute(delete(m.run_locks).where(m.run_locks.c.name == self.name))

    def _acquire_row(self) -> None:
        now = utcnow()
        row = {"name": self.name, "owner": self.owner, "host": self.host, "pid": self.pid,
               "run_id": self.run_id, "acquired_at": now, "heartbeat_at": now}
        t = m.run_locks
        for _ in range(3):
            try:
                with self.store.engine.begin() as c:
                    c.execute(insert(t).values(**row))
                return
            except IntegrityError:
                holder = self._holder()
                if holder is None:
                    continue  # released between our insert and our look: try again
                if not self._is_stale(holder):
                    self._release_pg_quietly()
                    raise LockHeld(self._held_message(holder)) from None
                # Compare-and-swap on the stale holder so two takers cannot both win.
                with self.store.engine.begin() as c:
                    res = c.execute(update(t).where(t.c.name == self.name, t.c.owner == holder["owner"],
                                                    t.c.heartbeat_at == holder["heartbeat_at"]).values(**row))
                if res.rowcount == 1:
                    return
        self._release_pg_quietly()
        raise LockHeld(self._held_message(self._holder()))

    def _wait_for_holder_row(self) -> dict[str, Any] | None:
        # The winner takes the advisory lock a moment before it writes the row that names it:
        # give it that moment so the refusal can say who holds the lock.
        for _ in range(20):
            holder = self._holder()
            if holder is not None:
                return holder
            time.sleep(0.05)
        return None

    def _release_pg_quietly(self) -> None:
        if self._pg_conn is not None:
            self._pg_conn.close()
            self._pg_conn = None

    def _holder(self) -> dict[str, Any] | None:
        with self.store.engine.connect() as c:
            r = c.execute(select(m.run_locks).where(m.run_locks.c.name == self.name)).mappings().first()
        return dict(r) if r else None

    def _is_stale(self, holder: dict[str, Any]) -> bool:
        if holder["host"] == self.host and not pid_alive(holder["pid"]):
            return True
        beat: datetime = _aware(holder["heartbeat_at"])  # type: ignore[assignment]
        return utcnow() - beat > self.stale_after

    def _held_message(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            return f"another {self.name} run holds the lock (it is starting or finishing); try again shortly"
        run = f" (run {holder['run_id']})" if holder.get("run_id") else ""
        since = _aware(holder["acquired_at"])
        return (f"another {self.name} run is in progress{run}: held by {holder['owner']} "
                f"since {since:%Y-%m-%d %H:%M:%S} UTC; wait for it to finish")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.store.engine.begin() as c:
                    c.execute(update(m.run_locks).where(m.run_locks.c.name == self.name,
                                                        m.run_locks.c.owner == self.owner)
                              .values(heartbeat_at=utcnow()))
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                continue
