"""Export benchmark: 100,000 approved adjustments pulled, exported to the files biller and
written back, end to end against the emulator (in-process, unmodified clients); then a run
with nothing new, counting its API calls on the emulator's own counters.

Run: ``.venv/bin/python bench/export.py [--rows 100000]``. Targets: ≤ 20 s end to end;
≤ 3 API calls for a run with nothing new.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import tempfile
import time
from pathlib import Path

from sfsync import log
from sfsync.app import App
from sfsync.config import Settings
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, inprocess_session
from sfsync.jobs.export import ExportOptions
from sfsync.jobs.export_run import run_export

ROOT = Path(__file__).resolve().parents[1]
PA = "vlocity_cmt__PaymentAdjustment__c"


def main() -> None:
    """Seed the org, export twice, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    log.configure("json", 0)
    logging.getLogger().setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="sfsync-bench-export-"))
    org = Org()
    accounts = [str(r.id) for r in org.dml("Account", "insert",
                                           [{"Name": f"A{i}", "AccountNumber": f"ACC-{i:05d}"} for i in range(1000)])]
    t = time.perf_counter()
    org.dml(PA, "insert", [{"vlocity_cmt__AccountId__c": accounts[i % 1000], "vlocity_cmt__Amount__c": f"{i % 500 + 1}.25",
                            "vlocity_cmt__Status__c": "Approved", "vlocity_cmt__Type__c": "CSR Adjustment",
                            "vlocity_cmt__Method__c": "Adjustment Credit", "vlocity_cmt__Date__c": "2026-02-01"}
                           for i in range(args.rows)])
    seeded = time.perf_counter() - t
    c = org.credentials
    (tmp / "drop").mkdir()
    settings = Settings.model_validate({
        "salesforce": {"login_url": f"https://{DEFAULT_HOST}", "username": c["username"], "password": c["password"],
                       "security_token": c["security_token"], "client_id": c["client_id"],
                       "client_secret": c["client_secret"], "describe_cache_dir": str(tmp / "describe")},
        "database": {"url": f"sqlite:///{tmp / 'state.db'}"},
        "billers": [{"name": "acme", "kind": "files", "path": str(tmp / "drop"), "outbox": str(tmp / "outbox"),
                     "mappings": [str(ROOT / "mappings/export/files/adjustments.yaml")]}]})
    session = inprocess_session(org)

    t = time.perf_counter()
    first = run_export(App(_settings=settings), None, ExportOptions(), session=session)
    elapsed = time.perf_counter() - t
    counts = first.run.plain_counts()[PA]
    rows = 0
    for p in (tmp / "outbox").glob("*.csv"):
        with p.open(newline="") as f:
            rows += sum(1 for _ in csv.DictReader(f))
    applied = sum(1 for r in org.records(PA) if r["vlocity_cmt__Status__c"] == "Applied")

    before = org.counters["api_requests"]
    t = time.perf_counter()
    quiet = run_export(App(_settings=settings), None, ExportOptions(), session=session)
    quiet_s = time.perf_counter() - t
    quiet_calls = org.counters["api_requests"] - before

    print(f"seeded {args.rows:,} approved adjustments in {seeded:.1f}s")
    print(f"export: {elapsed:.1f}s end to end (target ≤ 20 s) — pulled {counts.get('pulled', 0):,.0f}, "
          f"exported {counts.get('exported', 0):,.0f}, written back {counts.get('written_back', 0):,.0f}; "
          f"outbox rows {rows:,}, records Applied {applied:,}; client calls {first.run.api_calls}")
    print(f"nothing new: {quiet_calls} API calls on the emulator (target ≤ 3), {quiet_s:.2f}s, "
          f"status {quiet.run.status}")
    print("RESULT " + json.dumps({"bench": "export", "rows": args.rows, "seconds": round(elapsed, 2),
                                 "quiet_api_calls": quiet_calls, "quiet_seconds": round(quiet_s, 3),
                                 "exported": counts.get("exported", 0)}))


if __name__ == "__main__":
    main()
