"""Benchmark: ``fetch_account`` for one account with 24 statements × 40 line items.

    .venv/bin/python bench/billers_fetch.py [--background 2000] [--repeat 30]

Three billers hold the same target account among ``--background`` other accounts
(24 statements × 5 line items each): the sql biller on SQLite and on the machine's
PostgreSQL (indexed on account_number), and the tmf678 biller against the loopback TMF
server. Prints median and p95 wall time per fetch (warm connection); asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

TARGET = "BA-TARGET"


def rows(background: int) -> tuple[list[dict], list[dict]]:
    """Statements and line items: the target (24 × 40) and the background (24 × 5 each)."""
    stmts, items = [], []
    accounts = [(TARGET, 40)] + [(f"BA-{i:06d}", 5) for i in range(background)]
    for acct, per in accounts:
        for m in range(24):
            sid = f"ST-{acct}-{m:02d}"
            day = dt.date(2025, 1, 1) + dt.timedelta(days=30 * m)
            stmts.append({"statement_id": sid, "account_number": acct, "statement_date": day,
                          "balance_due": 100 + m})
            items.extend({"line_item_id": f"LI-{acct}-{m:02d}-{k:02d}", "statement_id": sid,
                          "account_number": acct, "amount": 1.25 * k, "description": "Usage, national"}
                         for k in range(per))
    return stmts, items


def load_sql(url: str, stmts: list[dict], items: list[dict]) -> None:
    eng = create_engine(url)
    with eng.begin() as c:
        for ddl in ("CREATE TABLE statements (statement_id VARCHAR(40) PRIMARY KEY, account_number VARCHAR(20), "
                    "statement_date DATE, balance_due NUMERIC(12,2))",
                    "CREATE TABLE line_items (line_item_id VARCHAR(40) PRIMARY KEY, statement_id VARCHAR(40), "
                    "account_number VARCHAR(20), amount NUMERIC(12,2), description TEXT)",
                    "CREATE TABLE balances (account_number VARCHAR(20), balance NUMERIC(12,2))",
                    "CREATE TABLE disputes (dispute_id VARCHAR(40), account_number VARCHAR(20))",
                    "CREATE INDEX ix_st ON statements (account_number)",
                    "CREATE INDEX ix_li ON line_items (account_number)",
                    "CREATE INDEX ix_ba ON balances (account_number)",
                    "CREATE INDEX ix_ds ON disputes (account_number)"):
            c.execute(text(ddl))
        c.execute(text("INSERT INTO statements VALUES (:statement_id, :account_number, :statement_date, :balance_due)"),
                  stmts)
        c.execute(text("INSERT INTO line_items VALUES (:line_item_id, :statement_id, :account_number, :amount, "
                       ":description)"), items)
        c.execute(text("INSERT INTO balances VALUES (:a, 10)"), [{"a": TARGET}])
        if url.startswith("postgresql"):
            c.execute(text("ANALYZE"))
    eng.dispose()


def write_tmf(d: Path, stmts: list[dict], items: list[dict]) -> None:
    with open(d / "customerBill_all.jsonl", "w") as f:
        for s in stmts:
            f.write(json.dumps({"id": s["statement_id"], "billDate": f"{s['statement_date']}T00:00:00Z",
                                "amountDue": {"unit": "EUR", "value": s["balance_due"]}, "state": "sent",
                                "billingAccount": {"id": s["account_number"]}}) + "\n")
    with open(d / "appliedCustomerBillingRate_all.jsonl", "w") as f:
        for i in items:
            f.write(json.dumps({"id": i["line_item_id"], "type": "appliedBillingCharge",
                                "date": "2025-01-01T00:00:00Z", "description": i["description"],
                                "taxExcludedAmount": {"unit": "EUR", "value": i["amount"]},
                                "bill": {"id": i["statement_id"]}, "billingAccount": {"id": i["account_number"]},
                                "characteristic": [{"name": "usageType", "value": "VOICE"}]}) + "\n")
    with open(d / "billingAccount.jsonl", "w") as f:
        f.write(json.dumps({"id": TARGET, "name": "Société Générale Télécom", "lastUpdate": "2025-01-01T00:00:00Z",
                            "accountBalance": [{"balanceType": "outstanding", "amount": {"unit": "EUR", "value": 10}}]})
                + "\n")


def timeit(label: str, fetch, repeat: int) -> None:  # type: ignore[no-untyped-def]
    got = fetch(TARGET)
    sizes = {k: v.num_rows for k, v in got.items()}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fetch(TARGET)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"  {label:28} median {statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms   {sizes}", flush=True)
    print("RESULT " + json.dumps({"bench": "billers_fetch", "biller": label, "median_ms": round(statistics.median(times), 1),
                                  "p95_ms": round(p95, 1), "target_ms": 100}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--background", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    a = ap.parse_args()
    from sfsync.billers import SqlBiller, SqlBillerSettings, TmfBiller, TmfBillerSettings
    from sfsync.billers.tmf_server import run_in_thread

    stmts, items = rows(a.background)
    print(f"fetch_account: target 24 statements × 40 line items; background {len(stmts):,} statements, "
          f"{len(items):,} line items")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sqlite = f"sqlite:///{d}/biller.db"
        load_sql(sqlite, stmts, items)
        b = SqlBiller("sql", SqlBillerSettings(url=sqlite), None)
        timeit("sql (SQLite)", b.fetch_account, a.repeat)
        b.close()
        db = f"sfsync_bench_{uuid.uuid4().hex[:8]}"
        try:
            admin = create_engine(a.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{db}"'))
        except Exception as exc:  # noqa: BLE001 - the bench just skips PostgreSQL
            print(f"  sql (PostgreSQL)             skipped: {str(exc).splitlines()[0]}")
            admin = None
        if admin is not None:
            try:
                url = a.pg.rsplit("/", 1)[0] + f"/{db}"
                load_sql(url, stmts, items)
                b = SqlBiller("sql", SqlBillerSettings(url=url), None)
                timeit("sql (PostgreSQL)", b.fetch_account, a.repeat)
                b.close()
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                admin.dispose()
        tmf = d / "tmf"
        tmf.mkdir()
        write_tmf(tmf, stmts, items)
        with run_in_thread(tmf) as srv:
            t = TmfBiller("tmf", TmfBillerSettings(base_url=srv.url), None)
            timeit("tmf678 (loopback server)", t.fetch_account, a.repeat)
            t.close()


if __name__ == "__main__":
    main()
