"""Another writer (a webhook refresh, another biller's load) writing the same new records during a load.

Upserted by External ID: Salesforce answers the loser of two simultaneous upserts of one new
External ID with DUPLICATE_VALUE; by then the record exists. The emulator's ``concurrent_upsert`` fault plays the
other writer: it creates the record first (External ID and required fields only) and answers
the load's row DUPLICATE_VALUE. The load upserts those rows again, so no DUPLICATE_VALUE
reaches the admin and none of the load's values is lost.

Without an External ID (balances: account + date), the org has no key to refuse a second
insert: inserts take the object's fence (``sfsync/state/fence.py``), and a load whose matcher
cache predates another process's inserts asks the org again. Two real processes racing over an
emulator served on loopback show it end to end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pytest

from sfsync.app import App
from sfsync.emulator.org import Org
from sfsync.emulator.testing import route_requests
from sfsync.jobs import load as load_module
from sfsync.jobs.load import LoadOptions
from sfsync.jobs.load_run import run_load
from sfsync.state import StateStore
from sfsync.state.fence import InsertFence, generation
from tests.jobs.conftest import (
    ACCOUNT,
    BALANCE,
    EXT,
    ITEM,
    ROOT,
    STATEMENT,
    Loader,
    bulk_mappings,
    file_rows,
    write_config,
)

SYSTEM = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById", "LastModifiedById", "OwnerId"}
SF_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


def content(org: Org, sobject: str) -> dict[str, dict[str, Any]]:
    """Each record's own values by External ID (Ids and auto-numbers, which differ between orgs, left out)."""
    numbered = {f.name for f in org.schema.get(sobject).fields.values() if f.auto_number is not None}
    return {str(r[EXT]): {k: v for k, v in r.items()
                          if k not in SYSTEM | numbered and not (isinstance(v, str) and SF_ID.match(v))}
            for r in org.records(sobject)}


def load_into(org: Org, base: Path, data: Path, mappings: Path | None) -> Any:
    base.mkdir()
    config = write_config(base, org, data, **({"mappings": mappings} if mappings else {}))
    with route_requests(org):
        app = App(config_path=config)
        try:
            return run_load(app, options=LoadOptions(), progress=False)
        finally:
            app.close()


@pytest.mark.parametrize("api", ["auto", "bulk1"], ids=["rest-collections", "bulk1-serial"])
@pytest.mark.parametrize("sobject", [STATEMENT, ITEM], ids=["statements", "line-items"])
def test_upserts_that_lose_a_race_for_a_new_external_id_are_upserted_again(
        tmp_path: Path, data: Path, api: str, sobject: str) -> None:
    mappings = bulk_mappings(tmp_path) if api == "bulk1" else None
    clean = Org()
    load_into(clean, tmp_path / "clean", data, mappings)
    raced = Org()
    raced.faults.update({"seed": 7, "concurrent_upsert": {"object": sobject, "rate": 0.2}}, replace=True)

    report = load_into(raced, tmp_path / "raced", data, mappings)

    assert report.run.status == "succeeded" and report.run.rejected == 0
    lost = raced.faults.upserts_raced
    assert lost > 0
    counts = report.run.plain_counts()[sobject]
    assert counts["retried"] == lost  # each lost race sent once more, and counted
    assert counts["sent"] == counts["created"] + counts["updated"] == len(clean.records(sobject))
    assert counts["updated"] == lost  # the other writer created them; the load updated them
    for obj in (STATEMENT, ITEM):  # no duplicates, nothing missing, every value the load's
        assert content(raced, obj) == content(clean, obj)


def test_a_balance_a_refresh_inserted_during_the_load_is_updated_not_duplicated(
        load: Loader, routed: Org, data: Path, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    # February's balance of one account, which the load sends in its second balance batch.
    feb = pacsv.read_csv(data / "balances_202602.csv").slice(0, 1).to_pylist()[0]
    refreshed: list[str] = []
    crash_point = load_module.crash_point

    def refresh_between_sends(point: str) -> None:
        # After the load's first balance send (January), a refresh of that account inserts its
        # February balance, as sfsync's own refresh does it: inside the balances' fence.
        if point == f"load.after_send.{BALANCE}" and not refreshed:
            account = next(r for r in routed.records("Account") if r["AccountNumber"] == feb["account_number"])
            with InsertFence(app.store, BALANCE) as fence:
                (res,) = routed.dml(BALANCE, "insert", [{"vlocity_cmt__AccountId__c": account["Id"],
                                                        "vlocity_cmt__Date__c": str(feb["balance_date"]),
                                                        "vlocity_cmt__Balance__c": 0}])
                fence.inserted()
            refreshed.append(str(res.id))
        crash_point(point)

    monkeypatch.setattr(load_module, "crash_point", refresh_between_sends)
    report = load()

    assert refreshed and report.run.status == "succeeded"
    balances = routed.records(BALANCE)
    pairs = Counter((b["vlocity_cmt__AccountId__c"], str(b["vlocity_cmt__Date__c"])[:10]) for b in balances)
    assert max(pairs.values()) == 1 and len(balances) == file_rows(data, "balances_")  # no duplicate
    mine = next(b for b in balances if b["Id"] == refreshed[0])
    assert float(mine["vlocity_cmt__Balance__c"]) == float(feb["balance"])  # the load updated the refresh's record
    counts = report.run.plain_counts()[BALANCE]
    assert counts["created"] == len(balances) - 1 and counts["updated"] == 1
    assert generation(app.store, BALANCE) == 3  # the load's two inserting sends and the refresh's


def test_two_billers_loading_the_same_accounts_at_once_insert_each_account_and_balance_once(
        served: tuple[Org, Path], data: Path, tmp_path: Path) -> None:
    # Two billers whose files name the same accounts, loaded by two processes at the same time:
    # accounts (by number) and balances (account + date) have no External ID, so only the insert
    # fences keep the second process from inserting what the first is inserting.
    org, state = served
    beta = tmp_path / "beta"
    shutil.copytree(data, beta)
    config = write_config(tmp_path, state, data, more_billers={"beta": beta})
    StateStore(f"sqlite:///{tmp_path / 'state.db'}").close()  # migrated once, before the race

    procs = [subprocess.Popen([sys.executable, "-m", "sfsync.cli", "--config", str(config), "--log-format", "json",
                               "load", "--biller", name], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for name in ("acme", "beta")]
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err[-800:] for _, err in outs]
    accounts = org.records(ACCOUNT)
    assert len(accounts) == file_rows(data, "accounts")
    assert max(Counter(r["AccountNumber"] for r in accounts).values()) == 1
    balances = org.records(BALANCE)
    pairs = Counter((b["vlocity_cmt__AccountId__c"], str(b["vlocity_cmt__Date__c"])[:10]) for b in balances)
    assert len(pairs) == file_rows(data, "balances_") and max(pairs.values()) == 1
    assert len(org.records(STATEMENT)) == 2 * file_rows(data, "statements_")  # External IDs carry the biller
