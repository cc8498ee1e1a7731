"""Benchmark of the emulator's DML engine: ``python -m sfsync.emulator.bench_dml [ROWS]``.

Upserts ROWS StatementLineItems (default 1,000,000) in 10,000-row calls, each row with a
relationship column to its Statement, and prints rows/s for the DML time alone (no HTTP,
no CSV). The Bulk 2.0 benchmark adds those on top.
"""

from __future__ import annotations

import sys
import time

from sfsync.emulator.org import Org

SLI = "vlocity_cmt__StatementLineItem__c"
STMT = "vlocity_cmt__Statement__c"
EXT = "vlocity_cmt__ExternalID__c"
CHUNK = 10_000


def _rows(start: int, stop: int) -> list[dict[str, str]]:
    return [{EXT: f"L{i}", "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c": f"ST-{i // 10}",
             "vlocity_cmt__Amount__c": str(i % 1000), "vlocity_cmt__CurrencyAmount__c": "12.34",
             "vlocity_cmt__StatementDate__c": "2026-10-01", "vlocity_cmt__Category__c": "Usage",
             "vlocity_cmt__ServiceType__c": "Voice", "vlocity_cmt__Type__c": "Call", "vlocity_cmt__UOM__c": "min",
             "vlocity_cmt__CurrentMonthToDate__c": "false", "vlocity_cmt__Usage__c": "3"} for i in range(start, stop)]


def run(total: int) -> tuple[float, float]:
    """Upsert ``total`` line items twice (creates, then updates); return rows/s of each pass."""
    org = Org()
    account = org.dml("Account", "insert", [{"Name": "Bench"}])[0].id
    for start in range(0, total // 10 + 1, CHUNK):
        org.dml(STMT, "insert", [{"Name": f"S{i}", EXT: f"ST-{i}", "vlocity_cmt__AccountId__c": account}
                                 for i in range(start, min(start + CHUNK, total // 10 + 1))])
    rates = []
    for _ in range(2):
        spent = 0.0
        for start in range(0, total, CHUNK):
            rows = _rows(start, min(start + CHUNK, total))
            began = time.perf_counter()
            results = org.dml(SLI, "upsert", rows, EXT, api="bulk2")
            spent += time.perf_counter() - began
            if not all(r.success for r in results):
                raise SystemExit(f"unexpected failures: {[r.errors for r in results if not r.success][:3]}")
        rates.append(total / spent)
    return rates[0], rates[1]


def main() -> None:
    """Command-line entry point."""
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    created, updated = run(total)
    print(f"dml upsert of {total:,} line items: create {created:,.0f} rows/s, update {updated:,.0f} rows/s")


if __name__ == "__main__":
    main()
