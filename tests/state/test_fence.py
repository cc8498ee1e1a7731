"""Insert fences: one process at a time inserts an object without an External ID; generations tell the others."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from sfsync.errors import TransientError
from sfsync.state import StateStore
from sfsync.state.fence import InsertFence, generation

BALANCE = "vlocity_cmt__AccountBalance__c"

HOLDER = ("import sys,time; from sfsync.state import StateStore; from sfsync.state.fence import InsertFence;"
          "f=InsertFence(StateStore(sys.argv[1]), sys.argv[2]).__enter__(); f.inserted();"
          "print('held', flush=True); time.sleep(float(sys.argv[3])); f.__exit__(None, None, None); print('left', flush=True)")


def hold(url: str, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the balances' fence for ``seconds``, then leaving it after an insert."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, url, BALANCE, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_generation_moves_only_when_a_fenced_write_inserted(db_url: str) -> None:
    store = StateStore(db_url)
    assert generation(store, BALANCE) == 0
    with InsertFence(store, BALANCE) as fence:
        assert fence.generation == 0
    assert fence.generation == 0 and generation(store, BALANCE) == 0  # matched and updated only
    with InsertFence(store, BALANCE) as fence:
        fence.inserted()
    assert fence.generation == 1 and generation(store, BALANCE) == 1
    with pytest.raises(RuntimeError), InsertFence(store, BALANCE) as fence:
        raise RuntimeError("the insert may have happened")
    assert generation(store, BALANCE) == 2  # a write that died inside counts as one that inserted
    assert generation(store, "Account") == 0  # one generation per object


def test_a_second_process_waits_for_the_fence_and_sees_the_new_generation(db_url: str) -> None:
    store = StateStore(db_url)
    other = hold(db_url, 1.0)
    try:
        t = time.monotonic()
        with InsertFence(store, BALANCE, wait_seconds=30) as fence:
            waited = time.monotonic() - t
            assert fence.generation == 1  # the other process's insert is visible inside
        assert waited > 0.3 and fence.waited == pytest.approx(waited, abs=0.2)
        assert other.stdout is not None and other.stdout.readline().strip() == "left"
    finally:
        other.kill()
        other.wait()


def test_a_fence_held_too_long_stops_the_write_with_a_transient_error(db_url: str) -> None:
    store = StateStore(db_url)
    other = hold(db_url, 30)
    try:
        with pytest.raises(TransientError, match=rf"{BALANCE}: another sfsync process is inserting .* held by "), \
                InsertFence(store, BALANCE, wait_seconds=0.3):
            pass
        with InsertFence(store, "Account", wait_seconds=0.3):  # another object's fence is free
            pass
    finally:
        other.kill()
        other.wait()
    with InsertFence(store, BALANCE, wait_seconds=30) as fence:  # a killed holder does not block
        assert fence.generation == 0  # it died before leaving: its bump never happened
