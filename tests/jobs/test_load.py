"""``sfsync load`` against the in-process emulator: what an admin sees in the org and the store.

Every assertion reads the org's records (``org.records``) or its own counters (not sfsync's
view of itself) and the state store.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sfsync.app import App
from sfsync.cli import main as sfsync
from sfsync.emulator.org import Org
from sfsync.errors import TransientError
from sfsync.jobs.load import LoadOptions
from sfsync.salesforce.transport import ApiError
from tests.jobs.conftest import (
    ACCOUNT,
    BALANCE,
    CASE,
    EXT,
    ITEM,
    STATEMENT,
    Loader,
    file_rows,
    write_config,
)

WRITE_KINDS = ("dml_rows", "records_ingested", "bulk1", "bulk2")


# -- helpers --------------------------------------------------------------------------------------
def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def edit_csv(path: Path, match: tuple[str, str], **changes: str) -> int:
    """Change the row(s) whose ``match[0]`` column equals ``match[1]``; returns the physical line of the first."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows, line, first = [], 1, 0
        for row in reader:
            start = line + 1
            line = reader.line_num
            if row[match[0]] == match[1]:
                row.update(changes)
                first = first or start
            rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    assert first, f"no row with {match} in {path.name}"
    return first


def line_at(path: Path, n: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[n - 1]


def by_ext(org: Org, sobject: str) -> dict[str, dict[str, Any]]:
    recs = org.records(sobject)
    out = {r[EXT]: r for r in recs}
    assert len(out) == len(recs), f"duplicate external IDs in {sobject}"
    return out


def cli(config: Path, *args: str) -> int:
    return sfsync(["--config", str(config), *args])


# -- first load -----------------------------------------------------------------------------------
def test_first_load_creates_everything_with_mapped_values_and_relationships(
        load: Loader, routed: Org, data: Path, app: App) -> None:
    report = load()

    assert report.run.status == "succeeded"
    org = routed
    accounts = {r["AccountNumber"]: r for r in org.records(ACCOUNT)}
    assert len(accounts) == file_rows(data, "accounts")
    statements = by_ext(org, STATEMENT)
    items = by_ext(org, ITEM)
    assert len(statements) == file_rows(data, "statements_")
    assert len(items) == file_rows(data, "line_items_")
    assert len(org.records(BALANCE)) == file_rows(data, "balances_")
    assert len(org.records(CASE)) == file_rows(data, "disputes_") > 0

    # mapped values: a statement and a line item as the files have them
    st_file = rows_of(sorted(data.glob("statements_*.csv"))[0])[0]
    st = statements[f"acme:{st_file['statement_id']}"]
    assert st["Name"] == st_file["statement_id"]
    assert float(st["vlocity_cmt__BalanceDue__c"]) == float(st_file["balance_due"])
    assert str(st["vlocity_cmt__StatementDate__c"])[:10] == st_file["statement_date"]
    assert st["vlocity_cmt__AccountId__c"] == accounts[st_file["account_number"]]["Id"]

    li_file = rows_of(sorted(data.glob("line_items_*.csv"))[-1])[0]
    li = items[f"acme:{li_file['line_item_id']}"]
    assert float(li["vlocity_cmt__CurrencyAmount__c"]) == float(li_file["amount"])
    assert li["vlocity_cmt__Subtype__c"] == li_file["category"]
    assert li["vlocity_cmt__Type__c"] == ("Credit" if float(li_file["amount"]) < 0 else "Charge")
    assert li["vlocity_cmt__StatementId__c"] == statements[f"acme:{li_file['statement_id']}"]["Id"]
    # every line item points to its own statement
    st_ids = {r["Id"]: ext for ext, r in statements.items()}
    by_file = {f"acme:{r['line_item_id']}": f"acme:{r['statement_id']}"
               for p in data.glob("line_items_*.csv") for r in rows_of(p)}
    assert all(st_ids[r["vlocity_cmt__StatementId__c"]] == by_file[ext] for ext, r in items.items())

    # ParentId resolved after the load (a self-reference)
    with_parent = [r for r in rows_of(data / "accounts.csv") if r["parent_account_number"]]
    assert with_parent
    for r in with_parent:
        assert accounts[r["account_number"]]["ParentId"] == accounts[r["parent_account_number"]]["Id"]

    # balances point to their accounts; the store knows every row it sent
    assert all(b["vlocity_cmt__AccountId__c"] in {a["Id"] for a in accounts.values()} for b in org.records(BALANCE))
    assert app.store.count_states("acme", ITEM) == len(items)
    assert app.store.count_states("acme", BALANCE) == len(org.records(BALANCE))


def test_a_parent_update_failing_after_the_load_is_rejected_with_its_reason(
        load: Loader, routed: Org, data: Path, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ParentId after-step: a child account deleted in the org before it runs is a reject
    naming the row, the field and Salesforce's error; the other children get their parent."""
    import sfsync.jobs.load as load_module

    with_parent = [r for r in rows_of(data / "accounts.csv") if r["parent_account_number"]]
    victim = with_parent[0]["account_number"]
    real = load_module.crash_point

    def delete_victim(point: str) -> None:
        if point == f"load.after_send.{ACCOUNT}":
            rec = next(r for r in routed.records(ACCOUNT) if r["AccountNumber"] == victim)
            assert routed.dml(ACCOUNT, "delete", [{"Id": rec["Id"]}])[0].success
        real(point)

    monkeypatch.setattr(load_module, "crash_point", delete_victim)
    report = load()
    rejects = [r for r in app.store.list_rejects(report.run.run_id) if r.sobject == ACCOUNT]
    assert [(r.key, r.stage) for r in rejects] == [(f"acme:{victim}", "salesforce")]
    assert rejects[0].code == "ENTITY_IS_DELETED" and "after-load update of ParentId" in rejects[0].message
    assert rejects[0].source.startswith("accounts.csv:")
    accounts = {r["AccountNumber"]: r for r in routed.records(ACCOUNT)}
    for r in with_parent[1:]:
        assert accounts[r["account_number"]]["ParentId"] == accounts[r["parent_account_number"]]["Id"]


def test_first_load_probes_no_state_for_external_id_objects_and_times_each_object(
        load: Loader, routed: Org, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []
    real = app.store.scan_states

    def spy(biller: str, sobject: str, *args: Any, **kw: Any) -> Any:
        probed.append(sobject)
        return real(biller, sobject, *args, **kw)

    monkeypatch.setattr(app.store, "scan_states", spy)
    report = load()

    # Nothing was stored for these objects before: no per-row probe. Composite-key objects
    # (balances) still look in the store (their match depends on it).
    assert ITEM not in probed and STATEMENT not in probed and BALANCE in probed
    counts = report.run.plain_counts()
    assert all(counts[o]["cpu_seconds"] > 0 and counts[o]["seconds"] >= 0 for o in (ITEM, STATEMENT, BALANCE))

    probed.clear()
    load(reread=True)  # now there is state: the rerun compares every row
    assert ITEM in probed and STATEMENT in probed


def test_unchanged_rerun_sends_nothing_and_costs_few_calls(load: Loader, routed: Org) -> None:
    load()
    before = Counter(routed.counters)

    again = load(reread=True)  # files re-read (as if re-delivered): the diff, not the manifest, decides
    used = Counter(routed.counters)
    used.subtract(before)

    assert again.run.status == "succeeded"
    assert sum(c.get("sent", 0) for c in again.run.plain_counts().values()) == 0
    assert again.run.plain_counts()[ITEM]["unchanged"] == len(routed.records(ITEM))
    assert used["dml_rows"] == 0 and used["records_ingested"] == 0
    assert used["api_requests"] <= 10


def test_full_resends_everything(load: Loader, routed: Org, data: Path) -> None:
    load()
    before = routed.counters["dml_rows"]
    n_items = len(routed.records(ITEM))

    report = load(full=True, reread=True)

    counts = report.run.plain_counts()
    assert counts[ITEM]["sent"] == n_items and counts[ITEM]["updated"] == n_items
    assert counts[STATEMENT]["sent"] == file_rows(data, "statements_")
    assert routed.counters["dml_rows"] - before >= n_items
    assert len(routed.records(ITEM)) == n_items  # updated, not duplicated
    assert len(routed.records(BALANCE)) == file_rows(data, "balances_")


def test_after_mutate_only_changed_rows_are_sent(load: Loader, routed: Org, data: Path) -> None:
    from sfsync.billers.sample import mutate

    load()
    old = {p.name: {r["line_item_id"]: r["amount"] for r in rows_of(p)} for p in data.glob("line_items_*.csv")}
    changed = mutate(data, 5, seed=11)
    new = {p.name: {r["line_item_id"]: r["amount"] for r in rows_of(p)} for p in data.glob("line_items_*.csv")}
    expected = {f"acme:{k}" for name, rows in new.items() for k, v in rows.items() if old[name][k] != v}
    assert len(expected) == changed > 0
    written = routed.counters["dml_rows"]

    report = load()

    counts = report.run.plain_counts()
    assert counts[ITEM]["sent"] == changed and counts[ITEM]["updated"] == changed
    # the org wrote exactly what the summary says was sent (the changed line items and their statements)
    assert routed.counters["dml_rows"] - written == sum(c.get("sent", 0) for c in counts.values())
    items = by_ext(routed, ITEM)
    for ext in expected:
        name = next(n for n, rows in new.items() if ext[5:] in rows)
        assert float(items[ext]["vlocity_cmt__CurrencyAmount__c"]) == float(new[name][ext[5:]])


def test_windows_smaller_than_a_file_and_spilled_to_disk_send_exactly_the_changes(
        config: Path, routed: Org, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from sfsync.billers.sample import mutate
    from sfsync.jobs import load as load_module
    from sfsync.jobs import window as window_module
    from sfsync.jobs.load_run import run_load

    # Batches of 8 rows, a scan of the store every 20 rows, everything past 10 rows on disk.
    config.write_text(config.read_text().replace("kind: files\n", "kind: files\n    batch_size: 8\n"))
    monkeypatch.setattr(window_module, "WINDOW_ROWS", 20)
    monkeypatch.setattr(window_module, "KEEP_IN_MEMORY_ROWS", 10)
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    spilled: list[int] = []
    real_spill = window_module.Window._spill

    def counting(self: Any, item: Any) -> None:
        spilled.append(1)
        real_spill(self, item)

    monkeypatch.setattr(window_module.Window, "_spill", counting)
    # Where windows are scanned: at 20 rows, or from 10 at a file's end (the reader then holds nothing).
    flushes: dict[str, list[tuple[int, bool]]] = {}
    real_flush = load_module.Loader._flush

    def flush(self: Any, biller: Any, compiled: Any, window: Any, deferred: Any) -> None:
        flushes.setdefault(compiled.sobject, []).append((window.rows, window.items[-1].checkpoint is not None))
        real_flush(self, biller, compiled, window, deferred)

    monkeypatch.setattr(load_module.Loader, "_flush", flush)

    def load(**opts: Any) -> Any:
        app = App(config_path=config)
        try:
            return run_load(app, options=LoadOptions(**opts), progress=False)
        finally:
            app.close()

    first = load()
    assert first.run.status == "succeeded"
    within = [f for scans in flushes.values() for f in scans[:-1]]  # the last one of a mapping: its data ended
    assert any(10 <= rows < 20 and at_end for rows, at_end in within), flushes
    assert all(rows >= 20 or (rows >= 10 and at_end) for rows, at_end in within), flushes
    items = {p.name: {r["line_item_id"]: r["amount"] for r in rows_of(p)} for p in data.glob("line_items_*.csv")}
    assert len(routed.records(ITEM)) == sum(len(v) for v in items.values())
    balances = len(routed.records(BALANCE))
    spilled.clear()
    changed = mutate(data, 5, seed=11)
    new = {p.name: {r["line_item_id"]: r["amount"] for r in rows_of(p)} for p in data.glob("line_items_*.csv")}
    written = routed.counters["dml_rows"]

    again = load()

    counts = again.run.plain_counts()
    assert counts[ITEM]["sent"] == counts[ITEM]["updated"] == changed > 0
    assert counts[ITEM]["unchanged"] == counts[ITEM]["read"] - changed
    assert routed.counters["dml_rows"] - written == sum(c.get("sent", 0) for c in counts.values())
    got = by_ext(routed, ITEM)
    for name, rows in new.items():
        for k, v in rows.items():
            if items[name][k] != v:
                assert float(got[f"acme:{k}"]["vlocity_cmt__CurrencyAmount__c"]) == float(v)
    # Balances (matched by Id from the store, no External ID) were updated in place, not duplicated.
    assert len(routed.records(BALANCE)) == balances
    assert spilled and not list(spill.iterdir()), "windows were not spilled, or their files were left behind"
    assert load(reread=True).run.plain_counts()[ITEM].get("sent", 0) == 0


def test_a_row_delivered_again_in_a_later_file_updates_the_record_it_created(
        load: Loader, routed: Org, data: Path) -> None:
    # Balances have no External ID: matched by Id from the store. Both files wait in one window;
    # the re-delivered rows must find what the first file's rows just created.
    first = sorted(data.glob("balances_*.csv"))[0]
    rows = rows_of(first)
    again = [{**r, "balance": "4242.42"} for r in rows[:3]]
    with (data / "balances_299912.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(again)
    expected = {(r["account_number"], r["balance_date"]) for p in data.glob("balances_*.csv") for r in rows_of(p)}

    report = load()

    balances = routed.records(BALANCE)
    assert len(balances) == len(expected), "a re-delivered balance was inserted twice"
    assert report.run.plain_counts()[BALANCE]["updated"] == 3
    assert sum(1 for b in balances if float(b["vlocity_cmt__Balance__c"] or 0) == 4242.42) == 3


def test_dry_run_writes_nothing_and_reports_what_it_would_do(load: Loader, routed: Org, app: App, data: Path) -> None:
    from sfsync.billers.sample import mutate

    dry = load(dry_run=True)
    assert {k: routed.counters[k] for k in WRITE_KINDS} == dict.fromkeys(WRITE_KINDS, 0)
    assert routed.records(ITEM) == [] and routed.records(ACCOUNT) == []
    assert app.store.count_states() == 0
    assert all(app.store.file_status("acme", p.name) is None for p in data.iterdir())
    assert dry.planned[ITEM].create == file_rows(data, "line_items_")
    assert dry.planned[ACCOUNT].create == file_rows(data, "accounts")

    load()
    changed = mutate(data, 5, seed=11)
    writes = {k: routed.counters[k] for k in WRITE_KINDS}
    states = app.store.count_states()
    marks = {p.name: app.store.file_status("acme", p.name) for p in data.iterdir()}

    dry = load(dry_run=True)

    assert {k: routed.counters[k] for k in WRITE_KINDS} == writes
    assert app.store.count_states() == states
    assert {p.name: app.store.file_status("acme", p.name) for p in data.iterdir()} == marks
    assert (dry.planned[ITEM].create, dry.planned[ITEM].update) == (0, changed)
    assert dry.planned[ITEM].samples  # what would be sent, for the admin to look at


def test_progress_bars_count_each_objects_rows_on_stderr(app: App, routed: Org, data: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from sfsync.jobs.load_run import run_load

    run_load(app, progress=True)

    out, err = capsys.readouterr()
    bars = {line.split()[0]: line for line in err.splitlines() if line.split() and line.split()[0] in (ACCOUNT, ITEM)}
    assert f"{file_rows(data, 'line_items_'):,} rows" in bars[ITEM]
    assert f"{file_rows(data, 'accounts'):,} rows" in bars[ACCOUNT]
    assert "rows" not in out  # stdout is left to the summary


def test_dry_run_through_the_cli_prints_would_create(config: Path, routed: Org,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(config, "load", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was written" in out and "would create" in out
    assert routed.counters["dml_rows"] == 0


# -- bad input ------------------------------------------------------------------------------------
def _break(data: Path) -> dict[str, Any]:
    """Three bad rows: a non-numeric amount, an unknown category, a statement of an unknown account."""
    li_path = sorted(data.glob("line_items_*.csv"))[0]
    st_path = sorted(data.glob("statements_*.csv"))[-1]
    items = rows_of(li_path)
    bad_amount, bad_cat = items[3], items[5]
    st = rows_of(st_path)[2]
    orphans = [f"acme:{r['line_item_id']}" for p in data.glob("line_items_*.csv") for r in rows_of(p)
               if r["statement_id"] == st["statement_id"]]
    return {
        "li_path": li_path, "st_path": st_path, "statement": st, "orphans": orphans,
        "amount": (bad_amount, edit_csv(li_path, ("line_item_id", bad_amount["line_item_id"]), amount="12,3O")),
        "category": (bad_cat, edit_csv(li_path, ("line_item_id", bad_cat["line_item_id"]), category="XYZ")),
        "account": edit_csv(st_path, ("statement_id", st["statement_id"]), account_number="BA-999999"),
    }


def test_dry_run_resolves_lookups_and_reports_the_rejects_a_real_run_would_have(
        load: Loader, routed: Org, app: App, data: Path) -> None:
    bad = _break(data)  # among others, a statement of an account nobody has (BA-999999)

    dry = load(dry_run=True)

    assert routed.counters["dml_rows"] == 0
    # the accounts this run would create resolve for their statements: only the unknown one fails
    assert dry.planned[STATEMENT].rejected == 1
    assert dry.planned[STATEMENT].create == file_rows(data, "statements_") - 1
    assert dry.planned[ITEM].rejected == len(bad["orphans"]) + 2  # its line items, and the two bad rows
    reasons = {r.key: r.code for r in app.store.list_rejects(dry.run.run_id)}
    assert reasons[f"acme:{bad['statement']['statement_id']}"] == "LOOKUP_NOT_FOUND"  # `sfsync rejects` lists them

    real = load()
    assert real.run.plain_counts()[STATEMENT]["rejected"] == dry.planned[STATEMENT].rejected
    assert real.run.plain_counts()[ITEM]["rejected"] == dry.planned[ITEM].rejected


def test_dry_run_after_a_lost_state_db_would_update_what_the_org_has(
        load: Loader, routed: Org, app: App, data: Path) -> None:
    load()
    app.close()
    Path(app.settings.database.url.removeprefix("sqlite:///")).unlink()

    dry = load(dry_run=True)

    # found on their composite key, as the real run would find them (nothing to create)
    assert (dry.planned[BALANCE].create, dry.planned[BALANCE].update) == (0, file_rows(data, "balances_"))
    assert (dry.planned[ACCOUNT].create, dry.planned[ACCOUNT].update) == (0, file_rows(data, "accounts"))


def test_bad_rows_are_rejected_with_their_source_the_rest_loads(
        config: Path, routed: Org, app: App, data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = _break(data)

    assert cli(config, "load") == 3

    run = app.store.list_runs(job="load", limit=1)[0]
    assert run.status == "rejected"
    rejects = app.store.list_rejects(run.id)
    by_source = {r.source: r for r in rejects}
    li_name, st_name = bad["li_path"].name, bad["st_path"].name

    amount = by_source[f"{li_name}:{bad['amount'][1]}"]
    assert "12,3O" in line_at(bad["li_path"], bad["amount"][1])
    assert amount.code and "amount" in amount.message and "12,3O" in amount.message

    cat = by_source[f"{li_name}:{bad['category'][1]}"]
    assert cat.key == f"acme:{bad['category'][0]['line_item_id']}"
    assert "XYZ" in cat.message and cat.sobject == ITEM

    acct = by_source[f"{st_name}:{bad['account']}"]
    assert acct.sobject == STATEMENT and "BA-999999" in acct.message

    # the statement's line items were not sent to fail again
    orphaned = [r for r in rejects if r.code == "PARENT_REJECTED"]
    assert sorted(r.key for r in orphaned) == sorted(bad["orphans"])
    assert all(r.stage != "salesforce" for r in orphaned)
    assert all(bad["statement"]["statement_id"] in r.message for r in orphaned)

    # the rest loaded
    items = by_ext(routed, ITEM)
    expected = file_rows(data, "line_items_") - 2 - len(bad["orphans"])
    assert len(items) == expected
    assert f"acme:{bad['statement']['statement_id']}" not in by_ext(routed, STATEMENT)
    assert not set(bad["orphans"]) & set(items)

    # a Data Loader-style error file
    err = tmp_path / "errors.csv"
    assert cli(config, "rejects", str(run.id), "--csv", str(err)) == 0
    written = rows_of(err)
    assert len(written) == len(rejects)
    assert {"SOURCE", "ERROR_CODE", "ERROR"} <= set(written[0])
    assert {r["SOURCE"] for r in written} == {r.source for r in rejects}

    # fix the data; retry re-sends the keyed rejects; the unreadable row comes back with `load`
    edit_csv(bad["st_path"], ("statement_id", bad["statement"]["statement_id"]),
             account_number=bad["statement"]["account_number"])
    edit_csv(bad["li_path"], ("line_item_id", bad["category"][0]["line_item_id"]),
             category=bad["category"][0]["category"])
    edit_csv(bad["li_path"], ("line_item_id", bad["amount"][0]["line_item_id"]), amount=bad["amount"][0]["amount"])
    capsys.readouterr()
    assert cli(config, "retry", str(run.id)) == 0
    assert "no key" in capsys.readouterr().err  # the admin is told how the unkeyed row comes back
    items = by_ext(routed, ITEM)
    assert set(bad["orphans"]) <= set(items)
    assert f"acme:{bad['category'][0]['line_item_id']}" in items
    assert f"acme:{bad['amount'][0]['line_item_id']}" not in items  # retry sends only what it was asked
    assert f"acme:{bad['statement']['statement_id']}" in by_ext(routed, STATEMENT)

    assert cli(config, "load") == 0
    assert len(by_ext(routed, ITEM)) == file_rows(data, "line_items_")
    assert len(routed.records(STATEMENT)) == file_rows(data, "statements_")


# -- composite keys, trim date, locks -------------------------------------------------------------
def test_lost_state_db_does_not_duplicate_composite_key_records(load: Loader, routed: Org, app: App,
                                                                data: Path) -> None:
    load()
    n = len(routed.records(BALANCE))
    n_accounts = len(routed.records(ACCOUNT))
    assert n == file_rows(data, "balances_")
    app.close()
    Path(app.settings.database.url.removeprefix("sqlite:///")).unlink()

    report = load(full=True)

    assert report.run.status == "succeeded"
    assert len(routed.records(BALANCE)) == n
    keys = Counter((b["vlocity_cmt__AccountId__c"], str(b["vlocity_cmt__Date__c"])[:10])
                   for b in routed.records(BALANCE))
    assert max(keys.values()) == 1
    assert len(routed.records(ACCOUNT)) == n_accounts  # matched on AccountNumber, not inserted again
    assert report.run.plain_counts()[BALANCE]["updated"] == n


def test_records_before_the_orgs_trim_date_are_not_loaded(load: Loader, routed: Org, data: Path) -> None:
    routed.dml("vlocity_cmt__BillingDataTrim__c", "insert",
               [{"Name": "default", "vlocity_cmt__TrimDate__c": "2026-02-01"}])

    report = load()

    assert str(report.trim_date) == "2026-02-01"
    kept = [r for p in data.glob("statements_*.csv") for r in rows_of(p) if r["statement_date"] >= "2026-02-01"]
    assert 0 < len(kept) < file_rows(data, "statements_")
    assert sorted(by_ext(routed, STATEMENT)) == sorted(f"acme:{r['statement_id']}" for r in kept)
    assert all(str(r["vlocity_cmt__StatementDate__c"]) >= "2026-02-01" for r in routed.records(ITEM))
    assert all(str(r["vlocity_cmt__Date__c"]) >= "2026-02-01" for r in routed.records(BALANCE))
    assert len(routed.records(ACCOUNT)) == file_rows(data, "accounts")  # accounts carry no date


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_trim_date_from_the_flag_or_the_config_overrides_the_orgs(
        where: str, tmp_path: Path, org: Org, routed: Org, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routed.dml("vlocity_cmt__BillingDataTrim__c", "insert", [{"Name": "default", "vlocity_cmt__TrimDate__c": "2026-01-01"}])
    (tmp_path / where).mkdir()
    config = write_config(tmp_path / where, org, data)
    if where == "config":
        config.write_text(config.read_text().replace("trim_date: org", "trim_date: 2026-02-01"))

    assert cli(config, "load", *(["--trim-date", "2026-02-01"] if where == "flag" else [])) == 0

    assert "records dated before 2026-02-01 were not loaded" in capsys.readouterr().out
    kept = [r for p in data.glob("statements_*.csv") for r in rows_of(p) if r["statement_date"] >= "2026-02-01"]
    assert 0 < len(kept) < file_rows(data, "statements_")
    assert sorted(by_ext(routed, STATEMENT)) == sorted(f"acme:{r['statement_id']}" for r in kept)
    assert all(str(r["vlocity_cmt__Date__c"]) >= "2026-02-01" for r in routed.records(BALANCE))


@pytest.mark.parametrize(("error", "expected"), [
    (ApiError("sObject type 'vlocity_cmt__BillingDataTrim__c' is not supported", status=400, error_code="INVALID_TYPE"),
     None),
    (ApiError("insufficient access", status=403, error_code="INSUFFICIENT_ACCESS"), None),
    (TransientError("HTTP 503"), TransientError),
])
def test_the_orgs_trim_date_when_it_cannot_be_read(error: Exception, expected: Any) -> None:
    from sfsync.jobs.load import org_trim_date

    class Org_:  # the one call org_trim_date makes, failing as the org would
        def query(self, soql: str) -> Any:
            raise error

    if expected is None:  # an org without the setting, or a user who may not read it: no trim date
        assert org_trim_date(Org_()) is None  # type: ignore[arg-type]
    else:  # a transient failure is not "no trim date": the run stops and is rerun
        with pytest.raises(expected):
            org_trim_date(Org_())  # type: ignore[arg-type]


def test_a_second_load_of_the_same_biller_is_refused_while_one_runs(
        config: Path, routed: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sfsync.jobs import load as load_mod

    second: list[int] = []
    original = load_mod.Loader._progress

    def during_first(self: Any, sobject: str, n: int) -> None:
        if not second:
            second.append(cli(config, "load"))  # while the first run holds the biller
        original(self, sobject, n)

    monkeypatch.setattr(load_mod.Loader, "_progress", during_first)
    assert cli(config, "load") == 0

    assert second == [1]
    err = capsys.readouterr().err
    refusal = next(line for line in err.splitlines() if line.startswith("sfsync: error:"))
    assert "load:acme" in refusal or "acme" in refusal
    assert f":{os.getpid()}" in refusal and "(run 1)" in refusal  # who holds it: host:pid and the run
    assert len({r[EXT] for r in routed.records(ITEM)}) == len(routed.records(ITEM))


def test_spill_directories_of_dead_loads_are_swept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from sfsync.jobs.window import PREFIX, sweep_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    gone = tmp_path / f"{PREFIX}{dead}-abc"
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def"
    other = tmp_path / "sfsync-window-notapid"
    for d in (gone, mine, other):
        d.mkdir()
        (d / "x.arrow").write_bytes(b"x")
    assert sweep_stale(tmp_path) == 1
    assert not gone.exists() and mine.exists() and other.exists()
