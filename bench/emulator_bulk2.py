"""Benchmark: Bulk 2.0 upsert of statement line items into the emulator, in process.

Loads accounts and statements, then upserts N line items (default 1,000,000) whose
``vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c`` column points at their
statements, through the emulator's WSGI app (routing, auth, CSV parsing, DML, results).
Prints the ingest rate: records from the upload to JobComplete, per second.

Usage: ``.venv/bin/python bench/emulator_bulk2.py [--rows N] [--per-statement K] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import pstats
import sys
import time
from typing import Any

from werkzeug.test import Client

from sfsync.emulator import auth
from sfsync.emulator.app import EmulatorApp
from sfsync.emulator.org import Org

API = "/services/data/v59.0/jobs/ingest"
SLI = "vlocity_cmt__StatementLineItem__c"
STATEMENT = "vlocity_cmt__Statement__c"
REL = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"


def _app(org: Org) -> EmulatorApp:
    """The emulator app with only the Bulk routes, so the benchmark does not need the REST area."""
    from sfsync.emulator import bulk1, bulk2

    app = EmulatorApp.__new__(EmulatorApp)
    app.org = org
    app.routes = []
    app.add_routes(bulk2.ROUTES)
    app.add_routes(bulk1.ROUTES)
    return app


class Bulk2:
    """A minimal Bulk 2.0 client over the WSGI app (no sockets)."""

    def __init__(self, org: Org) -> None:
        token = auth.new_session(org, source="bench", expires=False)
        self.client = Client(_app(org))
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: bytes | str = b"", ctype: str = "application/json") -> Any:
        resp = self.client.open(path, method=method, data=body, headers={**self.headers, "Content-Type": ctype})
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.get_data(as_text=True)[:500]}")
        return resp

    def ingest(self, sobject: str, operation: str, data: bytes, external_id: str | None = None) -> tuple[str, float]:
        """Run one ingest job; return its id and the seconds from upload to JobComplete."""
        spec: dict[str, str] = {"object": sobject, "operation": operation, "contentType": "CSV", "lineEnding": "LF"}
        if external_id:
            spec["externalIdFieldName"] = external_id
        job = self.call("POST", API, json.dumps(spec)).get_json()["id"]
        started = time.perf_counter()
        self.call("PUT", f"{API}/{job}/batches", data, "text/csv")
        self.call("PATCH", f"{API}/{job}", json.dumps({"state": "UploadComplete"}))
        while True:
            info = self.call("GET", f"{API}/{job}").get_json()
            if info["state"] in ("JobComplete", "Failed", "Aborted"):
                break
        elapsed = time.perf_counter() - started
        if info["state"] != "JobComplete" or info["numberRecordsFailed"]:
            raise RuntimeError(f"job {job}: {info}")
        return job, elapsed

    def results(self, job: str, kind: str) -> bytes:
        """The job's result file ``kind`` (successfulResults, failedResults...)."""
        return self.call("GET", f"{API}/{job}/{kind}").get_data()


def _csv(header: list[str], rows: Any) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="line items to upsert")
    parser.add_argument("--per-statement", type=int, default=50, help="line items per statement")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of the upsert")
    args = parser.parse_args(argv)

    org = Org()
    bulk = Bulk2(org)
    statements = max(1, args.rows // args.per_statement)
    accounts = max(1, statements // 20)
    acc_job, _ = bulk.ingest("Account", "insert", _csv(["Name"], ([f"Account {i}"] for i in range(accounts))))
    acc_ids = [row["sf__Id"] for row in csv.DictReader(io.StringIO(bulk.results(acc_job, "successfulResults").decode()))]
    st_rows = ([f"ST-{i}", f"Statement {i}", acc_ids[i % accounts], "2026-10-31"] for i in range(statements))
    bulk.ingest(STATEMENT, "upsert", _csv(["vlocity_cmt__ExternalID__c", "Name", "vlocity_cmt__AccountId__c",
                                            "vlocity_cmt__StatementDate__c"], st_rows), "vlocity_cmt__ExternalID__c")

    header = ["vlocity_cmt__ExternalID__c", REL, "vlocity_cmt__CurrencyAmount__c", "vlocity_cmt__Category__c",
              "vlocity_cmt__ServiceType__c", "vlocity_cmt__StatementDate__c", "vlocity_cmt__Usage__c",
              "vlocity_cmt__Type__c"]
    categories = ("Usage", "Billed", "Service")
    services = ("Voice", "Data", "Message")
    data = _csv(header, (
        [f"SLI-{i}", f"ST-{i // args.per_statement}", f"{(i % 9973) / 100:.2f}", categories[i % 3], services[i % 3],
         "2026-10-31", str(i % 500), "Charge"]
        for i in range(args.rows)
    ))
    print(f"upload: {args.rows:,} line items, {len(data) / 1e6:.1f} MB, {statements:,} statements", flush=True)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    job, elapsed = bulk.ingest(SLI, "upsert", data, "vlocity_cmt__ExternalID__c")
    if profiler:
        profiler.disable()
    started = time.perf_counter()
    size = len(bulk.results(job, "successfulResults"))
    results_s = time.perf_counter() - started
    print(f"ingest: {elapsed:.2f} s, {args.rows / elapsed:,.0f} records/s")
    print(f"successfulResults: {size / 1e6:.1f} MB in {results_s:.2f} s")
    print("RESULT " + json.dumps({"bench": "emulator_bulk2", "rows": args.rows, "seconds": round(elapsed, 3),
                                 "records_per_s": round(args.rows / elapsed), "results_mb": round(size / 1e6, 1),
                                 "results_s": round(results_s, 3)}))
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
