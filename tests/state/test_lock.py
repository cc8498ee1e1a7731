"""Run locks: exactly one of two racing processes runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from sfsync.errors import LockHeld
from sfsync.state import RunLock, StateStore


def _contender(url: str, start: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    store = StateStore(url)
    start.wait()
    try:
        with RunLock(store, "load:acme"):
            out.put("ran")
            # Hold it long enough that the other contender certainly tries while we hold it.
            import time

            time.sleep(1.5)
    except LockHeld as exc:
        out.put(f"refused: {exc}")


def test_two_processes_racing_exactly_one_runs(db_url: str) -> None:
    StateStore(db_url).close()  # migrate once up front
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(db_url, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results[0] == "ran"
    assert results[1].startswith("refused: another load:acme run is in progress: held by ")


def test_lock_left_by_killed_process_does_not_block(db_url: str) -> None:
    StateStore(db_url).close()
    code = ("import sys,time; from sfsync.state import StateStore, RunLock;"
            "l=RunLock(StateStore(sys.argv[1]),'export:b').acquire(); print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, db_url], stdout=subprocess.PIPE, text=True)
    assert p.stdout and p.stdout.readline().strip() == "held"
    store = StateStore(db_url)
    with pytest.raises(LockHeld, match="held by"):
        RunLock(store, "export:b").acquire()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with RunLock(store, "export:b"):  # the dead holder no longer blocks
        pass


def test_stale_heartbeat_is_taken_over(sqlite_url: str) -> None:
    store = StateStore(sqlite_url)
    held = RunLock(store, "load:x").acquire()
    held._stop.set()  # simulate a holder on another machine that stopped beating
    # Same pid is alive, so only the heartbeat age can free it.
    taker = RunLock(store, "load:x", stale_after=timedelta(seconds=-1))
    with taker:
        assert taker._holder()["owner"] == taker.owner  # type: ignore[index]


def test_different_billers_do_not_contend(sqlite_url: str) -> None:
    store = StateStore(sqlite_url)
    with RunLock(store, "load:a"), RunLock(store, "load:b"):
        pass
