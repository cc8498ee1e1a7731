"""The export job against the emulator, in-process, with the unmodified clients and each biller kind.

What a user notices: each record reaches its biller once (we count what the biller received:
outbox rows, SQL rows, TMF POSTs), the outcome lands on the Salesforce record, bad records are
rejected with a reason without blocking the others, edits after export become conflicts, a
biller that is down keeps records pending until the next run.
"""

from __future__ import annotations

import csv
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sfsync.app import App
from sfsync.config import Settings
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, inprocess_session
from sfsync.jobs.export import ExportOptions
from sfsync.jobs.export_run import ExportReport, run_export

ROOT = Path(__file__).resolve().parents[2]
FILES_MAPS = ROOT / "mappings" / "export" / "files"
TMF_MAPS = ROOT / "mappings" / "export" / "tmf678"
PA = "vlocity_cmt__PaymentAdjustment__c"
PM = "vlocity_cmt__PaymentMethod__c"
OVERLAY = ROOT / "config" / "emulator-overlay.example.yaml"
# Write-back that leaves the record selected (Status stays Approved): the next pull sees it again.
MARKER_ONLY = {"on_success": {"vlocity_cmt__Status__c": "Approved", "sfsync_Exported__c": "true",
                              "sfsync_ExportedAt__c": "{now}"}}


class World:
    """An org, a state dir and a config; ``run()`` exports in-process and returns the report."""

    def __init__(self, tmp: Path, org: Org, billers: list[dict[str, Any]], export: dict[str, Any] | None = None):
        self.tmp, self.org = tmp, org
        c = org.credentials
        self.raw = {
            "salesforce": {"login_url": f"https://{DEFAULT_HOST}", "username": c["username"],
                           "password": c["password"], "security_token": c["security_token"],
                           "client_id": c["client_id"], "client_secret": c["client_secret"],
                           "describe_cache_dir": str(tmp / "describe")},
            "database": {"url": f"sqlite:///{tmp / 'state.db'}"},
            "billers": billers, "export": export or {}}
        self.app = App(_settings=Settings.model_validate(self.raw))
        self.session = inprocess_session(org)

    def run(self, billers: list[str] | None = None, dry_run: bool = False) -> ExportReport:
        return run_export(self.app, billers, ExportOptions(dry_run=dry_run), session=self.session)

    def counts(self, report: ExportReport, sobject: str = PA) -> dict[str, float]:
        return {k: v for k, v in report.run.plain_counts().get(sobject, {}).items() if v}

    def rejects(self, report: ExportReport) -> list[Any]:
        return self.app.store.list_rejects(report.run.run_id)


def files_biller(tmp: Path, name: str = "acme") -> dict[str, Any]:
    (tmp / f"{name}-drop").mkdir(exist_ok=True)
    return {"name": name, "kind": "files", "path": str(tmp / f"{name}-drop"), "outbox": str(tmp / f"{name}-outbox"),
            "mappings": [f"{FILES_MAPS}/*.yaml"]}


def outbox_rows(tmp: Path, name: str = "acme") -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for p in sorted((tmp / f"{name}-outbox").glob("*.csv")):
        with p.open(newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def account(org: Org, number: str = "ACC-1") -> str:
    return str(org.dml("Account", "insert", [{"Name": number, "AccountNumber": number}])[0].id)


def adjustments(org: Org, acc: str, n: int, **extra: Any) -> list[str]:
    rows = [{"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__Amount__c": str(10 + i), "vlocity_cmt__Status__c": "Approved",
             "vlocity_cmt__Type__c": "CSR Adjustment", "vlocity_cmt__Method__c": "Adjustment Credit",
             "vlocity_cmt__Date__c": "2026-01-05", **extra} for i in range(n)]
    res = org.dml(PA, "insert", rows)
    assert all(r.success for r in res), res[:3]
    return [str(r.id) for r in res]


def payment(org: Org, acc: str, **values: Any) -> str:
    row = {"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__Amount__c": "99.50", "vlocity_cmt__Status__c": "Approved",
           "vlocity_cmt__Type__c": "Customer Payment", "vlocity_cmt__Method__c": "Cash",
           "vlocity_cmt__Date__c": "2026-01-07", **values}
    res = org.dml(PA, "insert", [row])[0]
    assert res.success, res
    return str(res.id)


def status(org: Org, sf_id: str, field: str = "vlocity_cmt__Status__c") -> Any:
    rec = org.get(PA, sf_id)
    assert rec is not None
    return rec[field]


# ---------------------------------------------------------------------------------------------
def test_exports_once_writes_back_and_a_quiet_rerun_costs_one_query_per_object(tmp_path: Path) -> None:
    org = Org()
    w = World(tmp_path, org, [files_biller(tmp_path)])
    acc = account(org)
    adj = adjustments(org, acc, 5)
    pay = payment(org, acc)
    no_amount = payment(org, acc, vlocity_cmt__Amount__c=None)
    bad_method = payment(org, acc, vlocity_cmt__Method__c="Adjustment Debit")  # the payments mapping cannot convert it

    first = w.run()
    assert first.run.status == "rejected" and first.run.exit_code == 3
    assert w.counts(first) == {"pulled": 8, "exported": 6, "rejected": 2, "written_back": 8}
    rows = outbox_rows(tmp_path)
    assert sorted(r["sf_id"] for r in rows) == sorted([*adj, pay])
    assert {r["amount"] for r in rows if r["sf_id"] in adj} == {"-10.00", "-11.00", "-12.00", "-13.00", "-14.00"}
    assert [status(org, i) for i in [*adj, pay]] == ["Applied"] * 6
    assert status(org, no_amount) == status(org, bad_method) == "Rejected"
    why = {r.key: (r.stage, r.code, r.message) for r in w.rejects(first)}
    assert why[no_amount][:2] == ("map", "REQUIRED_MISSING") and "amount" in why[no_amount][2]
    assert why[bad_method][0] == "map" and "Adjustment Debit" in why[bad_method][2]

    before = dict(org.counters)
    again = w.run()
    assert again.run.exit_code == 0 and len(outbox_rows(tmp_path)) == 6
    calls = org.counters["api_requests"] - before["api_requests"]
    assert calls <= 3, f"a run with nothing new made {calls} API calls"


def test_write_back_does_not_export_again_and_an_edit_after_export_is_a_conflict(tmp_path: Path) -> None:
    org = Org(schema_overlay=OVERLAY)
    w = World(tmp_path, org, [files_biller(tmp_path)], {"objects": {PA: MARKER_ONLY}})
    acc = account(org)
    ids = adjustments(org, acc, 3)
    assert w.run().run.exit_code == 0
    assert status(org, ids[0], "sfsync_Exported__c") is True

    # The write-back moved SystemModstamp and the records still match the filter: seen, not re-sent.
    second = w.run()
    assert w.counts(second) == {"pulled": 3, "already_exported": 3}
    assert len(outbox_rows(tmp_path)) == 3

    org.dml(PA, "update", [{"Id": ids[1], "vlocity_cmt__Amount__c": "500"}])
    third = w.run()
    assert third.run.exit_code == 3 and w.counts(third)["conflicts"] == 1
    (conflict,) = w.rejects(third)
    assert (conflict.key, conflict.code) == (ids[1], "CHANGED_AFTER_EXPORT")
    assert len(outbox_rows(tmp_path)) == 3  # never silently re-sent
    assert w.app.store.ledger_get("acme", PA, [ids[1]])[ids[1]].status == "conflict"
    assert w.run().run.exit_code == 0  # reported once, not every run


def test_routing_by_account_owner_statement_and_rejects_what_no_biller_owns(tmp_path: Path) -> None:
    org = Org()
    w = World(tmp_path, org, [files_biller(tmp_path, "acme"), files_biller(tmp_path, "beta")])
    mine, theirs, orphan = account(org, "A-1"), account(org, "B-1"), account(org, "X-1")
    rid = w.app.store.start_run("load", ["acme", "beta"])
    w.app.store.put_states("acme", "Account", [("acme:A-1", mine, 1)], rid)
    w.app.store.put_states("beta", "Account", [("beta:B-1", theirs, 1)], rid)
    a, b, x = adjustments(org, mine, 1)[0], adjustments(org, theirs, 1)[0], adjustments(org, orphan, 1)[0]

    only_acme = w.run(["acme"])
    assert [r["sf_id"] for r in outbox_rows(tmp_path, "acme")] == [a]
    assert outbox_rows(tmp_path, "beta") == [] and status(org, b) == "Approved"  # beta's, untouched
    (reject,) = w.rejects(only_acme)
    assert (reject.key, reject.code) == (x, "NO_BILLER") and "no biller owns account" in reject.message
    assert status(org, x) == "Rejected"

    w.run(["beta"])
    assert [r["sf_id"] for r in outbox_rows(tmp_path, "beta")] == [b] and status(org, b) == "Applied"


def test_dry_run_lists_and_changes_nothing(tmp_path: Path) -> None:
    org = Org()
    w = World(tmp_path, org, [files_biller(tmp_path)])
    ids = adjustments(org, account(org), 4)
    report = w.run(dry_run=True)
    planned = report.planned[("acme", "adjustments")]
    assert planned.count == 4 and sorted(planned.sample) == sorted(ids)
    assert not (tmp_path / "acme-outbox").exists() and status(org, ids[0]) == "Approved"
    assert w.app.store.ledger_list() == [] and w.app.store.list_cursors() == {}
    assert w.counts(w.run()).get("exported") == 4


def test_bad_payment_method_is_rejected_and_never_blocks_the_others(tmp_path: Path) -> None:
    # The shipped mapping waits for the gateway's token (where: token != null); this one
    # takes every method, so a missing token is a reject with its reason.
    maps = tmp_path / "maps"
    maps.mkdir()
    text = (FILES_MAPS / "payment_methods.yaml").read_text()
    (maps / "pm.yaml").write_text(text.replace('  where: "vlocity_cmt__PaymentMethodIdentifier__c != null"\n', ""))
    biller = files_biller(tmp_path) | {"mappings": [str(maps / "pm.yaml")]}
    org = Org()
    w = World(tmp_path, org, [biller])
    acc = account(org)
    res = org.dml(PM, "insert", [
        {"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__PaymentMethodIdentifier__c": "tok_1",
         "vlocity_cmt__MethodType__c": "Credit Card", "vlocity_cmt__Last4Numbers__c": "4242",
         "vlocity_cmt__CardNumber__c": "4242424242424242"},
        {"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__MethodType__c": "Credit Card"}])
    good, bad = str(res[0].id), str(res[1].id)
    report = w.run()
    assert report.run.exit_code == 3
    (row,) = outbox_rows(tmp_path)
    assert (row["sf_id"], row["token"], row["last_four"]) == (good, "tok_1", "4242")
    assert "4242424242424242" not in json.dumps(row)
    (reject,) = w.rejects(report)
    assert (reject.key, reject.code) == (bad, "REQUIRED_MISSING") and "token" in reject.message
    assert w.run().run.exit_code == 0  # an unchanged bad record is not rejected again


def test_sql_biller_gets_each_record_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'biller.db'}"
    engine = sa.create_engine(db)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE adjustments (sf_id TEXT PRIMARY KEY, adjustment_ref TEXT, account_number TEXT,"
                          " statement_id TEXT, dispute_id TEXT, amount NUMERIC, adjustment_date TEXT, kind TEXT,"
                          " reason TEXT, ref INTEGER)"))
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "adj.yaml").write_text((FILES_MAPS / "adjustments.yaml").read_text())
    org = Org()
    w = World(tmp_path, org, [{"name": "legacy", "kind": "sql", "url": db, "mappings": [str(maps / "adj.yaml")],
                               "exports": {"adjustments": {"table": "adjustments"}}}])
    ids = adjustments(org, account(org), 25)
    assert w.run().run.exit_code == 0
    # Forget the ledger's outcome (as if the run died right after the insert): the unique key holds.
    w.app.store.ledger_mark("legacy", PA, [{"sf_id": i, "status": "sending"} for i in ids])
    org.dml(PA, "update", [{"Id": i, "vlocity_cmt__Status__c": "Approved"} for i in ids])
    assert w.run().run.exit_code == 0
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*), count(DISTINCT sf_id) FROM adjustments")).one() == (25, 25)
    assert {status(org, i) for i in ids} == {"Applied"}


@pytest.fixture
def tmf_server() -> Any:
    from sfsync.billers.tmf_server import run_in_thread

    with run_in_thread() as server:
        yield server


def tmf_biller(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "tmf", "kind": "tmf678", "base_url": url, "retries": 0, "backoff": 0, "timeout": 2,
            "mappings": [f"{TMF_MAPS}/*.yaml"], **extra}


def tmf_posts(server: Any, resource: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.data.resources[resource].lines]


def test_tmf_biller_down_keeps_records_pending_until_it_answers(tmp_path: Path, tmf_server: Any) -> None:
    org = Org()
    w = World(tmp_path, org, [tmf_biller(tmf_server.url)])
    acc = account(org)
    pays = [payment(org, acc, vlocity_cmt__Amount__c=str(20 + i)) for i in range(3)]
    tmf_server.faults.extend([503, 502, 500])  # the first three POSTs fail
    first = w.run()
    assert first.run.exit_code == 0
    assert w.counts(first)["send_failed"] == 3 and w.counts(first)["pending"] == 3
    assert tmf_posts(tmf_server, "payment") == [] and {status(org, p) for p in pays} == {"Approved"}

    second = w.run()
    assert w.counts(second)["exported"] == 3 and w.counts(second).get("pending", 0) == 0
    posted = tmf_posts(tmf_server, "payment")
    assert sorted(p["correlatorId"] for p in posted) == sorted(pays)
    assert posted[0]["totalAmount"]["unit"] == "EUR" and {status(org, p) for p in pays} == {"Applied"}
    assert w.app.store.ledger_get("tmf", PA, pays)[pays[0]].biller_ref.startswith("PAY-")


def test_tmf_biller_timeout_stays_pending_and_is_sent_once_later(tmp_path: Path, tmf_server: Any) -> None:
    # A server that accepts connections and never answers: every POST times out.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    org = Org()
    w = World(tmp_path, org, [tmf_biller(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)])
    pay = payment(org, account(org))
    assert w.counts(w.run())["pending"] == 1
    silent.close()
    w.raw["billers"] = [tmf_biller(tmf_server.url)]
    w.app = App(_settings=Settings.model_validate(w.raw))
    assert w.counts(w.run())["exported"] == 1
    assert [p["correlatorId"] for p in tmf_posts(tmf_server, "payment")] == [pay]


def test_session_expiry_mid_pull_and_the_bulk_query(tmp_path: Path) -> None:
    org = Org()
    w = World(tmp_path, org, [files_biller(tmp_path)], {"query_api": "rest", "page_rows": 200})
    ids = adjustments(org, account(org), 900)
    org.faults.update({"session_expire_after_calls": 3})
    assert w.counts(w.run())["exported"] == 900
    org.faults.update({}, replace=True)
    assert sorted(r["sf_id"] for r in outbox_rows(tmp_path)) == sorted(ids)

    more = adjustments(org, account(org, "ACC-2"), 30)
    w.raw["export"] = {"query_api": "bulk2"}
    w.app = App(_settings=Settings.model_validate(w.raw))
    assert w.counts(w.run())["exported"] == 30
    assert len(outbox_rows(tmp_path)) == 930 and {status(org, i) for i in more} == {"Applied"}


def test_1000_records_sharing_one_systemmodstamp_across_pages_and_an_interrupted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    org = Org(schema_overlay=OVERLAY, clock=lambda: stamp)
    w = World(tmp_path, org, [files_biller(tmp_path)],
              {"query_api": "rest", "page_rows": 200, "chunk_rows": 300, "overlap_seconds": 0,
               "objects": {PA: MARKER_ONLY}})
    ids = adjustments(org, account(org), 1000)
    assert len({org.get(PA, i)["SystemModstamp"] for i in ids}) == 1

    from sfsync.jobs import export as export_mod

    real = export_mod.Exporter.process
    calls = {"n": 0}

    def stop_after_first_chunk(self: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after one chunk was recorded and the cursor moved
        real(self, *args, **kwargs)

    monkeypatch.setattr(export_mod.Exporter, "process", stop_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        w.run()
    assert len(outbox_rows(tmp_path)) == 300
    monkeypatch.setattr(export_mod.Exporter, "process", real)

    w.run()
    late = adjustments(org, account(org, "ACC-2"), 5)  # committed late, with the very same stamp
    w.run()
    rows = [r["sf_id"] for r in outbox_rows(tmp_path)]
    assert len(rows) == len(set(rows)) == 1005 and set(rows) == {*ids, *late}


def test_records_a_biller_loaded_are_not_sent_back_to_billers(tmp_path: Path) -> None:
    """A dispute the biller sent us (loaded as a Case) is the biller's already; one an agent opens is exported."""
    from sfsync.mappers import load_mapping

    org = Org()
    w = World(tmp_path, org, [files_biller(tmp_path)])
    acc = account(org)
    billing = org.record_type_ids("Case")["vlocity_cmt__Billing"]
    case = {"AccountId": acc, "vlocity_cmt__BillingAccountId__c": acc, "RecordTypeId": billing,
            "Subject": "Disputed roaming charge", "vlocity_cmt__Amount__c": "12.50", "Status": "New", "Origin": "Phone"}
    from_biller, by_agent = (str(r.id) for r in org.dml("Case", "insert", [{**case, "vlocity_cmt__DisputeId__c": "acme:DS-1"},
                                                                           case]))
    # What `sfsync load` records when it loads a biller's dispute.
    run = w.app.store.start_run("load", ["acme"])
    w.app.store.put_states("acme", "Case", [("acme:DS-1", from_biller, 1)], run)
    assert load_mapping(FILES_MAPS / "disputes.yaml").source.sobject == "Case"

    report = w.run()
    counts = w.counts(report, "Case")
    assert counts.get("from_biller") == 1 and counts.get("exported") == 1
    sent = [r["sf_id"] for r in outbox_rows(tmp_path)]
    assert sent == [by_agent]
