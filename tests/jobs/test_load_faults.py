"""The load job under the emulator's fault knobs: what real orgs do to a monthly load.

Each fault ends the same way: every row of the files is either in the org or rejected with a
reason, and running the load again (the fault gone) completes the rest with no duplicate.
Line items go through Bulk API 1.0 Serial here, as a real month's thousands do (the tests' few
hundred would take REST Collections under the shipped ``api: auto``); lock errors are also
rehearsed on that REST path.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest

from sfsync.app import App
from sfsync.cli import main as sfsync
from sfsync.emulator.org import Org
from sfsync.state import Reject
from tests.jobs.conftest import (
    ACCOUNT,
    BALANCE,
    EXT,
    ITEM,
    STATEMENT,
    Loader,
    bulk_mappings,
    file_rows,
    write_config,
)


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path, org: Org, data: Path) -> Path:
    """The jobs' config, line items through Bulk 1.0 (``"bulk1"``, the default) or the shipped mappings (``"auto"``)."""
    if getattr(request, "param", "bulk1") == "auto":
        return write_config(tmp_path, org, data)
    return write_config(tmp_path, org, data, mappings=bulk_mappings(tmp_path))


def expected_keys(data: Path) -> dict[str, set[str]]:
    """External IDs the files should produce (statements and line items)."""
    def ids(entity: str, col: str) -> set[str]:
        return {f"acme:{v}" for p in data.glob(f"{entity}_*.csv") for v in pacsv.read_csv(p)[col].to_pylist()}
    return {STATEMENT: ids("statements", "statement_id"), ITEM: ids("line_items", "line_item_id")}


def in_org(org: Org, sobject: str) -> set[str]:
    recs = org.records(sobject)
    ext = [r[EXT] for r in recs]
    assert len(ext) == len(set(ext)), f"duplicate external IDs in {sobject}"
    return set(ext)


def assert_accounted_for(org: Org, data: Path, rejects: list[Reject]) -> None:
    """Every row is in the org or rejected with a reason (code and message), never both, never neither."""
    for sobject, want in expected_keys(data).items():
        loaded = in_org(org, sobject)
        rejected = {r.key for r in rejects if r.sobject == sobject}
        assert all(r.code and r.message for r in rejects if r.sobject == sobject)
        assert loaded | rejected >= want, f"{sobject}: {len(want - loaded - rejected)} rows neither loaded nor rejected"
        assert not loaded & rejected - {None}, f"{sobject}: rows both loaded and rejected"


def assert_complete(org: Org, data: Path) -> None:
    """Everything is in the org exactly once."""
    for sobject, want in expected_keys(data).items():
        assert in_org(org, sobject) == want
    assert len(org.records(ACCOUNT)) == file_rows(data, "accounts")
    assert len(org.records(BALANCE)) == file_rows(data, "balances_")
    pairs = Counter((b["vlocity_cmt__AccountId__c"], str(b["vlocity_cmt__Date__c"])[:10]) for b in org.records(BALANCE))
    assert max(pairs.values()) == 1


def faults(org: Org, **knobs: Any) -> None:
    org.faults.update({"seed": 5, **knobs}, replace=True)


@pytest.mark.parametrize("config", ["bulk1", "auto"], indirect=True, ids=["bulk1-serial", "rest-collections"])
def test_lock_errors_on_5_percent_of_rows_are_retried(
        load: Loader, routed: Org, data: Path, app: App, request: pytest.FixtureRequest) -> None:
    faults(routed, lock_error_rate=0.05)

    report = load()
    # the path asked for was the one taken: Bulk 1.0 jobs, or no Bulk 1.0 at all (REST Collections)
    assert (routed.counters["bulk1"] > 0) == (request.node.callspec.params["config"] == "bulk1")

    rejects = app.store.list_rejects(report.run.run_id)
    assert_accounted_for(routed, data, rejects)
    counts = report.run.plain_counts()
    assert sum(c.get("retried", 0) for c in counts.values()) > 0  # lock errors were retried, and counted
    assert all(r.code == "UNABLE_TO_LOCK_ROW" for r in rejects)  # only what kept failing

    faults(routed)
    again = load()
    assert again.run.status == "succeeded"
    assert_complete(routed, data)


def test_session_expiring_mid_run_logs_in_again(load: Loader, routed: Org, data: Path) -> None:
    faults(routed, session_expire_after_calls=7)

    report = load()

    assert report.run.status == "succeeded"
    assert routed.counters["oauth"] >= 2  # logged in again (more than once, the session dies every 7 calls)
    assert report.run.api_calls["relogins"] == routed.counters["oauth"] - 1  # counted with the run
    assert_complete(routed, data)


def test_burst_of_503s_is_ridden_out(load: Loader, routed: Org, data: Path) -> None:
    faults(routed, http_503_burst={"start_at_call": 8, "count": 3})

    report = load()

    assert routed.counters["http_503"] == 3
    assert report.run.status == "succeeded"
    # Counted with the run: two 503s answered idempotent calls, which the transport sent again; one
    # answered an insert (it may have happened), whose rows were matched by key and sent again.
    assert report.run.api_calls["http_retries"] == 2
    counts = report.run.plain_counts()
    # the insert was the accounts' (no External ID): all of them sent again, each counted once
    assert counts[ACCOUNT]["retried"] == counts[ACCOUNT]["sent"] == file_rows(data, "accounts")
    assert all(c.get("retried", 0) == 0 for o, c in counts.items() if o != ACCOUNT)
    assert_complete(routed, data)


def test_limits_max_retries_bounds_the_retries_of_a_call(tmp_path: Path, org: Org, routed: Org, data: Path) -> None:
    (tmp_path / "strict").mkdir()
    config = write_config(tmp_path / "strict", org, data, extra="limits:\n  max_retries: 1\n")
    faults(routed, http_503_burst={"start_at_call": 3, "count": 2})  # one call, answered 503 twice

    assert sfsync(["--config", str(config), "load"]) == 1  # sent twice, then the run stops: rerun

    assert routed.counters["http_503"] == 2
    faults(routed)
    assert sfsync(["--config", str(config), "load"]) == 0
    assert_complete(routed, data)


@pytest.mark.parametrize("share", [0.5, 1.0], ids=["budget-guard", "hard-limit"])
def test_daily_limit_running_out_stops_cleanly_and_a_rerun_completes(
        config: Path, routed: Org, data: Path, app: App, share: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # share 0.5: sfsync's guard stops before half of the org's budget is gone; share 1.0: the org
    # itself answers REQUEST_LIMIT_EXCEEDED mid-load.
    monkeypatch.setenv("SFSYNC_API_BUDGET_SHARE", str(share))
    faults(routed, daily_request_limit=int(18 / share))

    assert sfsync(["--config", str(config), "load"]) == 1

    run = app.store.list_runs(job="load", limit=1)[0]
    assert run.status == "stopped"
    assert "rerun" in (run.error or "").lower() or "limit" in (run.error or "").lower() or "budget" in (run.error or "")
    partly = {s: in_org(routed, s) for s in (STATEMENT, ITEM)}
    assert any(partly.values()) and not all(partly[s] == w for s, w in expected_keys(data).items())
    # what Salesforce accepted is recorded: the store knows exactly what is in the org
    assert app.store.count_states("acme", ITEM) == len(partly[ITEM])

    faults(routed, daily_request_limit=100_000)  # the next day
    assert sfsync(["--config", str(config), "load"]) == 0
    assert_complete(routed, data)


def test_a_bulk_job_that_fails_once_is_sent_again(load: Loader, routed: Org, data: Path, app: App) -> None:
    faults(routed, bulk_job_fail={"object": ITEM, "message": "InvalidBatch : simulated failure", "times": 1})

    report = load()

    assert report.run.status == "succeeded"
    assert report.run.plain_counts()[ITEM]["retried"] > 0
    assert_complete(routed, data)


def test_a_bulk_job_that_fails_twice_rejects_its_rows_and_a_rerun_loads_them(
        config: Path, routed: Org, data: Path, app: App) -> None:
    faults(routed, bulk_job_fail={"object": ITEM, "message": "InvalidBatch : simulated failure", "times": 2})

    assert sfsync(["--config", str(config), "load"]) == 3

    run = app.store.list_runs(job="load", limit=1)[0]
    rejects = app.store.list_rejects(run.id)
    assert run.status == "rejected"
    assert_accounted_for(routed, data, rejects)
    failed = [r for r in rejects if r.sobject == ITEM]
    assert failed and all(r.code == "BULK_JOB_FAILED" and "simulated failure" in r.message for r in failed)
    assert all(r.source and ".csv:" in r.source for r in failed)  # traceable to the file and line

    faults(routed)
    assert sfsync(["--config", str(config), "load"]) == 0
    assert_complete(routed, data)
