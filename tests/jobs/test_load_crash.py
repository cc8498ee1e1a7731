"""``kill -9`` during ``sfsync load``, then the same command again: nothing lost, nothing duplicated.

The load runs as a separate process (``python -m sfsync.cli``) against an emulator served over
loopback HTTPS from this test process. ``SFSYNC_CRASH_AT`` makes the worker die with
``os._exit(137)`` — no cleanup, no flush, exactly like ``kill -9`` — at a named point:

* ``load.after_send.<sObject>``: Salesforce has written the rows, the state store does not know;
  for Account and AccountBalance (no External ID) only the SOQL match on the key prevents
  duplicates;
* ``load.mid_file.<sObject>``: some batches of a file recorded, the file not marked processed;
* ``load.after_record.<sObject>``: a file's rows recorded, the file not marked processed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sfsync.emulator.org import Org
from sfsync.state import StateStore
from tests.jobs.conftest import ACCOUNT, BALANCE, CASE, EXT, ITEM, ROOT, STATEMENT, file_rows, write_config

CRASH_POINTS = [
    "load.after_send.Account",
    "load.after_send.vlocity_cmt__AccountBalance__c",
    "load.after_record.vlocity_cmt__Statement__c",
    "load.mid_file.vlocity_cmt__StatementLineItem__c",
    "load.after_send.vlocity_cmt__StatementLineItem__c",
]


def sfsync_load(config: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SFSYNC_CRASH_AT"}
    if crash_at:
        env["SFSYNC_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "sfsync.cli", "--config", str(config), "--log-format", "json", "load"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


def assert_loaded_once(org: Org, data: Path, store: StateStore) -> None:
    """The org holds every row of the files exactly once, and the store knows every key."""
    expected = {
        ACCOUNT: file_rows(data, "accounts"), STATEMENT: file_rows(data, "statements_"),
        ITEM: file_rows(data, "line_items_"), BALANCE: file_rows(data, "balances_"), CASE: file_rows(data, "disputes_"),
    }
    for sobject, n in expected.items():
        assert len(org.records(sobject)) == n, sobject
        assert store.count_states("acme", sobject) == n, f"state store misses keys of {sobject}"
    for sobject in (STATEMENT, ITEM):
        dup = [k for k, c in Counter(r[EXT] for r in org.records(sobject)).items() if c > 1]
        assert not dup, f"duplicate external IDs in {sobject}: {dup[:3]}"
    assert max(Counter(r["AccountNumber"] for r in org.records(ACCOUNT)).values()) == 1
    pairs = Counter((b["vlocity_cmt__AccountId__c"], str(b["vlocity_cmt__Date__c"])[:10]) for b in org.records(BALANCE))
    assert max(pairs.values()) == 1, "duplicate AccountBalance on (account, date)"


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_then_the_same_command_loads_everything_once(point: str, served: tuple[Org, Path], data: Path,
                                                            tmp_path: Path) -> None:
    org, state = served
    # Small batches: a line-item file spans several, so there is a "middle of a file" to die in.
    config = write_config(tmp_path, state, data)
    config.write_text(config.read_text().replace("    mappings:", "    batch_size: 60\n    mappings:"))

    crashed = sfsync_load(config, crash_at=point)
    assert crashed.returncode == 137, crashed.stderr[-2000:]

    again = sfsync_load(config)
    assert again.returncode == 0, again.stderr[-2000:]

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert_loaded_once(org, data, store)
        # the cursor is right: every file is marked processed, and an unchanged rerun sends nothing
        for p in sorted(data.iterdir()):
            if p.name.startswith(("accounts", "statements_", "line_items_", "balances_", "disputes_")):
                mark = store.file_status("acme", p.name)
                assert mark is not None and mark.status == "processed", p.name
        before = org.counters["dml_rows"]
        assert sfsync_load(config).returncode == 0
        assert org.counters["dml_rows"] == before
    finally:
        store.close()


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 0.75])
def test_sigkill_from_outside_while_rows_are_being_written_then_the_same_command(
        share: float, served: tuple[Org, Path], data: Path, tmp_path: Path) -> None:
    """A real ``kill -9`` from another process, at a moment chosen by what the org has received.

    The named crash points above die where sfsync's code says; this one dies wherever the worker
    happens to be once the org holds ``share`` of the rows — in a Bulk job's upload or poll, in the
    state store's write, between a batch and its file mark.
    """
    org, state = served
    config = write_config(tmp_path, state, data)
    config.write_text(config.read_text().replace("    mappings:", "    batch_size: 60\n    mappings:"))
    total = sum(file_rows(data, e) for e in ("accounts", "statements_", "line_items_", "balances_", "disputes_"))
    env = {k: v for k, v in os.environ.items() if k != "SFSYNC_CRASH_AT"}
    proc = subprocess.Popen([sys.executable, "-m", "sfsync.cli", "--config", str(config), "--log-format", "json", "load"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and org.counters.get("dml_rows", 0) < max(1, int(share * total)):
            time.sleep(0.001)
        written = org.counters.get("dml_rows", 0)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, "the load finished before it could be killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert written < total * 1.5  # killed mid-load (retries and updates may write a row twice)

    again = sfsync_load(config)
    assert again.returncode == 0, again.stderr[-2000:]

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert_loaded_once(org, data, store)
        before = org.counters["dml_rows"]
        assert sfsync_load(config).returncode == 0
        assert org.counters["dml_rows"] == before  # the cursor is right: nothing is sent a third time
    finally:
        store.close()

