"""Writing export outcomes back to Salesforce, from the ledger.

Driven by the ledger alone (every ``accepted``/``rejected`` entry with ``written_back`` false),
so outcomes settled by a run that died before its write-back are written by the next one.
An update is idempotent: writing the same outcome twice leaves the record as once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from sfsync.jobs.export_route import UNROUTED

if TYPE_CHECKING:
    from sfsync.config import ExportObjectSettings
    from sfsync.jobs.export import Exporter
    from sfsync.salesforce import SalesforceClient
    from sfsync.state import LedgerEntry

#: A deleted record cannot take its outcome; retrying would fail forever.
GONE = ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND")
PLACEHOLDERS = ("reference", "reason", "biller", "now")


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{reference}``, ``{reason}``, ``{biller}``, ``{now}``; other text stays as written."""
    out = template
    for name in PLACEHOLDERS:
        out = out.replace("{" + name + "}", values.get(name, ""))
    return out


def check_fields(client: SalesforceClient, sobject: str, obj: ExportObjectSettings) -> list[str]:
    """Problems with the configured write-back fields (unknown or read-only), for a clear stop."""
    fields = {f["name"].lower(): f for f in client.describe(sobject)["fields"]}
    problems = []
    for name in {*obj.on_success, *obj.on_reject}:
        f = fields.get(name.lower())
        if f is None:
            problems.append(f"export.objects.{sobject}: {sobject} has no field {name} to write back")
        elif not f.get("updateable", False):
            problems.append(f"export.objects.{sobject}: {sobject}.{name} is not updateable")
    return problems


def _lengths(client: SalesforceClient, sobject: str) -> dict[str, int]:
    return {f["name"].lower(): int(f.get("length") or 0) for f in client.describe(sobject)["fields"]
            if f.get("type") in ("string", "textarea", "picklist", "url", "email", "phone")}


def write_back(exporter: Exporter, sobject: str, obj: ExportObjectSettings) -> None:
    """Write the outcomes of ``sobject`` not yet written back (see the module docstring)."""
    from sfsync.jobs.export import crash_point

    store, run = exporter.store, exporter.run
    entries = store.ledger_unwritten([*exporter.billers, UNROUTED], sobject)
    if not entries:
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    lengths = _lengths(exporter.client, sobject) if (obj.on_success or obj.on_reject) else {}
    rows: list[dict[str, Any]] = []
    owners: list[LedgerEntry] = []
    nothing: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        spec = obj.on_success if e.status == "accepted" else obj.on_reject
        if not spec:
            nothing[e.biller].append(e.sf_id)  # nothing configured to write: settled as is
            continue
        values = {"reference": e.biller_ref or "", "reason": e.last_error or "", "biller": e.biller, "now": now}
        row: dict[str, Any] = {"Id": e.sf_id}
        for name, template in spec.items():
            text = render(template, values)
            limit = lengths.get(name.lower())
            row[name] = text[:limit] if limit else text
        rows.append(row)
        owners.append(e)
    for biller, ids in nothing.items():
        store.ledger_mark(biller, sobject, [{"sf_id": i, "written_back": True} for i in ids])
    if not rows:
        return
    frame = pd.DataFrame(rows, dtype=object)
    results = exporter.client.write_frame(sobject, "update", frame)
    crash_point("export.after_writeback")
    marks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rejects = []
    done = 0
    for e, ok, code, message in zip(owners, results["success"], results["error_code"], results["message"],
                                    strict=True):
        if bool(ok):
            marks[e.biller].append({"sf_id": e.sf_id, "written_back": True})
            done += 1
            continue
        gone = str(code or "") in GONE
        if gone:
            marks[e.biller].append({"sf_id": e.sf_id, "written_back": True,
                                    "last_error": f"write-back: {code}: {message}"})
        rejects.append(run.new_reject(e.biller, sobject, e.sf_id, e.sf_id, "writeback", str(code or "ERROR"),
                                      f"outcome ({e.status}) not written back: {message}"
                                      + ("" if gone else "; retried next run")))
    for biller, items in marks.items():
        store.ledger_mark(biller, sobject, items)
    run.reject(rejects)
    run.count(sobject, written_back=done, writeback_failed=len(rejects))
