"""Benchmark: a 100,000-row SOQL query paged through the emulator's REST API over loopback HTTPS.

Seeds N line items (default 100,000) under a few thousand statements directly in an org,
serves it with the real HTTPS server, and pages ``SELECT … FROM vlocity_cmt__StatementLineItem__c``
with the unmodified simple-salesforce client (``query_all_iter``, 2,000 records a page, each
page a round trip). Target: ≤ 5 s end to end.

Usage: ``.venv/bin/python bench/emulator_query.py [--rows N]``; prints one ``RESULT`` JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import requests
from simple_salesforce import Salesforce

from sfsync.emulator.org import Org
from sfsync.emulator.server import run_in_thread

SLI = "vlocity_cmt__StatementLineItem__c"


def seed(org: Org, rows: int, per_statement: int = 40) -> None:
    """Accounts, statements and line items, written through the org's own DML."""
    statements = max(1, rows // per_statement)
    accounts = max(1, statements // 12)
    org.dml("Account", "insert", [{"Name": f"Account {i}", "AccountNumber": f"BA-{i:06d}"} for i in range(accounts)])
    acc_ids = [r["Id"] for r in org.records("Account")]
    org.dml("vlocity_cmt__Statement__c", "insert", [
        {"Name": f"ST-{i}", "vlocity_cmt__ExternalID__c": f"b:ST-{i}", "vlocity_cmt__AccountId__c": acc_ids[i % accounts],
         "vlocity_cmt__StatementDate__c": "2026-10-01"} for i in range(statements)])
    for start in range(0, rows, 50_000):
        org.dml(SLI, "insert", [
            {"vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c": f"b:ST-{i // per_statement}",
             "vlocity_cmt__ExternalID__c": f"b:LI-{i}", "vlocity_cmt__CurrencyAmount__c": str(round(i % 997 * 1.01, 2)),
             "vlocity_cmt__Category__c": "Usage", "vlocity_cmt__StatementDate__c": "2026-10-01"}
            for i in range(start, min(rows, start + 50_000))])


def main() -> None:
    """Seed, serve, page, print."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    org = Org()
    seed(org, args.rows)
    handle = run_in_thread(org)
    try:
        conn = handle.connection()
        session = requests.Session()
        session.verify = conn["ca_bundle"]
        session.trust_env = False
        sf = Salesforce(instance_url=conn["instance_url"], session_id=conn["access_token"], session=session)
        soql = (f"SELECT Id, Name, vlocity_cmt__ExternalID__c, vlocity_cmt__CurrencyAmount__c, vlocity_cmt__Category__c, "
                f"vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c FROM {SLI}")
        t0 = time.perf_counter()
        n = sum(1 for _ in sf.query_all_iter(soql))
        seconds = time.perf_counter() - t0
    finally:
        handle.stop()
    print(f"REST query paged: {n:,} records in {seconds:.2f} s ({n / seconds:,.0f} records/s)")
    print("RESULT " + json.dumps({"bench": "emulator_query", "records": n, "seconds": round(seconds, 3),
                                 "records_per_s": round(n / seconds)}))


if __name__ == "__main__":
    main()
