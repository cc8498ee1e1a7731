"""The life of a run: statuses, exit codes, locks, rejects kept."""

from __future__ import annotations

import pytest

from sfsync.errors import BudgetExhausted, LockHeld, TerminalError
from sfsync.jobs.runner import start_run
from sfsync.state import StateStore


@pytest.fixture
def store(sqlite_url: str) -> StateStore:
    return StateStore(sqlite_url)


def test_clean_run_succeeds(store: StateStore) -> None:
    with start_run(store, "load", ["a"]) as run:
        run.count("Obj", read=3, sent=3)
    assert run.status == "succeeded" and run.exit_code == 0
    saved = store.get_run(run.run_id)
    assert saved and saved.counts == {"Obj": {"read": 3, "sent": 3}}


def test_rejects_make_exit_3_and_are_stored(store: StateStore) -> None:
    with start_run(store, "load", ["a"]) as run:
        run.reject([run.new_reject("a", "Obj", "k1", "f.csv:3", "map", "BAD", "bad value")])
    assert run.status == "rejected" and run.exit_code == 3
    assert store.list_rejects(run.run_id)[0].source == "f.csv:3"


def test_budget_stop_is_clean_and_resumable(store: StateStore) -> None:
    with start_run(store, "load", ["a"]) as run:
        raise BudgetExhausted("used 50% of 15,000 daily requests")
    assert run.status == "stopped" and run.exit_code == 1
    saved = store.get_run(run.run_id)
    assert saved and saved.status == "stopped" and "50%" in (saved.error or "")


def test_failure_is_recorded_and_raised(store: StateStore) -> None:
    with pytest.raises(TerminalError), start_run(store, "load", ["a"]) as run:
        raise TerminalError("bulk job failed")
    saved = store.get_run(run.run_id)
    assert saved and saved.status == "failed" and saved.error == "bulk job failed"


def test_second_run_of_same_biller_is_refused(store: StateStore) -> None:
    with start_run(store, "load", ["a"]) as first:
        with pytest.raises(LockHeld, match=f"run {first.run_id}"), start_run(store, "load", ["a"]):
            pass
        with start_run(store, "load", ["b"]):  # another biller is independent
            pass
        with start_run(store, "export", ["a"]):  # and so is another job
            pass
    assert len(store.list_runs(job="load")) == 2
