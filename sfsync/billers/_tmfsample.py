"""The sample export as TM Forum resources (TMF678 bills and rates, TMF666 accounts, disputes).

Built from the same tables as the files layout (``sample.build``) so both layouts describe
the same accounts; written as JSON Lines with vectorised string templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.billers._jsonl import arr, jraw, jstr, obj, write_lines

BILL_PATH = "/tmf-api/customerBillManagement/v4/customerBill/"
TAX_RATE = 0.2
_STATE = {"NEW": "new", "APPROVED": "validated", "SENT": "sent", "PAID": "settled"}
_NAME = {"REC": "Recurring charge", "USG": "Usage charge", "MSG": "Messaging charge", "OTC": "One-time charge",
         "EQP": "Equipment charge", "CRD": "Credit"}


def _ts(dates: pa.ChunkedArray) -> pa.Array:
    """date32 → JSON date-time string at midnight UTC."""
    s = pc.binary_join_element_wise(pc.cast(dates, pa.string()), "T00:00:00Z", "")
    return jstr(s)


def _cents(money: pa.ChunkedArray) -> np.ndarray:
    return np.rint(pc.cast(money, pa.float64()).to_numpy(zero_copy_only=False) * 100).astype(np.int64)


def _num(cents: np.ndarray) -> pa.Array:
    """Cents → JSON number text with two decimals."""
    a = np.abs(cents)
    return pc.binary_join_element_wise(pa.array(np.where(cents < 0, "-", "")), pc.cast(pa.array(a // 100), pa.string()),
                                       ".", pc.utf8_lpad(pc.cast(pa.array(a % 100), pa.string()), 2, "0"), "")


def _money(cents: np.ndarray, unit: str = "EUR") -> pa.Array:
    return obj([("unit", f'"{unit}"'), ("value", _num(cents))])


def _map(col: pa.ChunkedArray, table: dict[str, str]) -> pa.Array:
    keys = list(table)
    return pc.take(pa.array(list(table.values())), pc.index_in(col, pa.array(keys)))


def _bills(st: pa.Table, tax_cents: np.ndarray) -> pa.Array:
    current = _cents(st["current_charges"])
    due = _cents(st["balance_due"])
    paid = pc.equal(st["status"], "PAID").to_numpy(zero_copy_only=False)
    ids = st["statement_id"]
    return obj([
        ("id", jstr(ids)), ("href", jstr(pc.binary_join_element_wise(BILL_PATH, ids, ""))),
        ("billNo", jstr(pc.utf8_replace_slice(ids, 0, 3, "BN-"))), ("billDate", _ts(st["statement_date"])),
        ("lastUpdate", _ts(st["statement_date"])),
        ("billingPeriod", obj([("startDateTime", _ts(st["period_start"])), ("endDateTime", _ts(st["period_end"]))])),
        ("paymentDueDate", _ts(st["due_date"])), ("amountDue", _money(due)),
        ("remainingAmount", _money(np.where(paid, 0, due))), ("taxIncludedAmount", _money(current + tax_cents)),
        ("taxExcludedAmount", _money(current)), ("state", jstr(_map(st["status"], _STATE))),
        ("billingAccount", obj([("id", jstr(st["account_number"])), ("name", jstr(st["_name"]))])),
        ("@type", '"CustomerBill"'),
    ])


def _rates(li: pa.Table) -> tuple[pa.Array, np.ndarray]:
    amount = _cents(li["amount"])
    tax = np.rint(amount * TAX_RATE).astype(np.int64)
    cat = li["category"]
    penalty = pc.equal(li["description"], "Late payment fee")
    rtype = pc.if_else(pc.equal(cat, "CRD"), "appliedBillingCredit",
                       pc.if_else(penalty, "appliedPenaltyCharge", "appliedBillingCharge"))
    usage = pc.is_valid(li["quantity"])
    chars = pc.if_else(usage, arr([
        obj([("name", '"usageType"'), ("value", jstr(li["service_type"]))]),
        obj([("name", '"quantity"'), ("value", jstr(li["quantity"]))]),
        obj([("name", '"unitOfMeasure"'), ("value", jstr(li["uom"]))])]), "[]")
    lines = obj([
        ("id", jstr(li["line_item_id"])), ("type", jstr(rtype)), ("date", _ts(li["statement_date"])),
        ("name", jstr(_map(cat, _NAME))), ("description", jstr(li["description"])), ("isBilled", "true"),
        ("taxExcludedAmount", _money(amount)), ("taxIncludedAmount", _money(amount + tax)),
        ("appliedTax", arr([obj([("taxCategory", '"VAT"'), ("taxRate", str(TAX_RATE)), ("taxAmount", _money(tax))])])),
        ("bill", obj([("id", jstr(li["statement_id"]))])),
        ("billingAccount", obj([("id", jstr(li["account_number"]))])),
        ("product", obj([("id", jstr(li["service_id"])), ("name", jstr(li["service_name"]))])),
        ("periodCoverage", obj([("startDateTime", _ts(li["service_start"])), ("endDateTime", _ts(li["service_end"]))])),
        ("characteristic", chars),
    ])
    return lines, tax


def _accounts(acc: pa.Table, last_bal: pa.Table) -> pa.Array:
    idx = pc.index_in(acc["account_number"], last_bal["account_number"])
    bal = pc.fill_null(pc.take(last_bal["balance"], idx), "0.00")
    past = pc.fill_null(pc.take(last_bal["past_due_balance"], idx), "0.00")
    since = pc.fill_null(pc.take(pc.cast(last_bal["balance_date"], pa.string()), idx), "2026-01-01")
    since_ts = jstr(pc.binary_join_element_wise(since, "T00:00:00Z", ""))
    parent = pc.if_else(pc.is_valid(acc["parent_account_number"]),
                        arr([obj([("id", jstr(acc["parent_account_number"])), ("role", '"parentBillingAccount"')])]),
                        "[]")
    return obj([
        ("id", jstr(acc["account_number"])), ("name", jstr(acc["name"])), ("accountType", jstr(acc["record_type"])),
        ("state", jstr(pc.utf8_lower(acc["status"]))), ("lastUpdate", since_ts),
        ("accountBalance", arr([
            obj([("balanceType", '"outstanding"'), ("amount", _money(_cents(bal))),
                 ("validFor", obj([("startDateTime", since_ts)]))]),
            obj([("balanceType", '"pastDue"'), ("amount", _money(_cents(past))),
                 ("validFor", obj([("startDateTime", since_ts)]))])])),
        ("relatedParty", parent),
        ("contact", arr([obj([("contactName", jstr(acc["name"])), ("contactMedium", arr([obj([
            ("mediumType", '"email"'), ("characteristic", obj([("emailAddress", jstr(acc["email"]))]))])]))])])),
        ("paymentType", jstr(pc.if_else(pc.equal(acc["payment_type"], "PRE"), "prepaid", "postpaid"))),
        ("billStructure", obj([("cycleSpecification", obj([
            ("billingDateShift", jraw(acc["bill_cycle"])),
            ("frequency", jstr(pc.utf8_lower(acc["bill_frequency"])))]))])),
        ("@type", '"BillingAccount"'),
    ])


def _disputes(ds: pa.Table) -> pa.Array:
    return obj([
        ("id", jstr(ds["dispute_id"])), ("billingAccount", obj([("id", jstr(ds["account_number"]))])),
        ("bill", obj([("id", jstr(ds["statement_id"]))])),
        ("appliedCustomerBillingRate", pc.if_else(pc.is_valid(ds["line_item_id"]),
                                                  obj([("id", jstr(ds["line_item_id"]))]), "null")),
        ("amount", _money(_cents(ds["amount"]))), ("status", jstr(pc.utf8_lower(ds["status"]))),
        ("creationDate", _ts(ds["opened_date"])), ("subject", jstr(ds["subject"])),
        ("description", jstr(ds["description"])), ("channel", jstr(pc.utf8_lower(ds["origin"]))),
    ])


def write_tmf(out: Path, data: dict[str, Any]) -> dict[str, int]:
    """Write ``billingAccount.jsonl`` and per month ``customerBill_/appliedCustomerBillingRate_/dispute_``."""
    counts = {"billingAccount": 0, "customerBill": 0, "appliedCustomerBillingRate": 0, "dispute": 0}
    last_bal = None
    for month in data["months"]:
        names_t: pa.Table = month["_names"]
        ym = month["_yyyymm"]
        li = month["line_items"]
        st = month["statements"]
        lines, tax = _rates(li)
        write_lines(out / f"appliedCustomerBillingRate_{ym}.jsonl", lines)
        s_idx = pc.index_in(li["statement_id"], st["statement_id"]).to_numpy(zero_copy_only=False)
        tax_by_stmt = np.bincount(s_idx, weights=tax, minlength=st.num_rows).astype(np.int64)
        names = pc.take(names_t["name"], pc.index_in(st["account_number"], names_t["account_number"]))
        write_lines(out / f"customerBill_{ym}.jsonl", _bills(st.append_column("_name", names), tax_by_stmt))
        write_lines(out / f"dispute_{ym}.jsonl", _disputes(month["disputes"]))
        counts["customerBill"] += st.num_rows
        counts["appliedCustomerBillingRate"] += li.num_rows
        counts["dispute"] += month["disputes"].num_rows
        bal = month["balances"]
        last_bal = bal if last_bal is None else pa.concat_tables([
            last_bal.filter(pc.invert(pc.is_in(last_bal["account_number"], bal["account_number"]))), bal])
    assert last_bal is not None
    acc = data["accounts"]
    counts["billingAccount"] = acc.num_rows
    write_lines(out / "billingAccount.jsonl", _accounts(acc, last_bal))
    return counts


def mutate_tmf(d: Path, pct: float, rng: np.random.Generator) -> int:
    """:func:`sfsync.billers.sample.mutate` for the TMF layout (rates, then their bills)."""
    import json

    changed = 0
    for rates in sorted(d.glob("appliedCustomerBillingRate_*.jsonl")):
        ym = rates.stem.split("_")[-1]
        per_bill: dict[str, float] = {}
        out = []
        with open(rates, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rng.random() < pct / 100:
                    v = rec["taxExcludedAmount"]["value"]
                    dv = int(rng.integers(1, 501)) / 100 * (-1 if v < 0 else 1)
                    rec["taxExcludedAmount"]["value"] = round(v + dv, 2)
                    rec["taxIncludedAmount"]["value"] = round(rec["taxIncludedAmount"]["value"] + dv * (1 + TAX_RATE), 2)
                    per_bill[rec["bill"]["id"]] = per_bill.get(rec["bill"]["id"], 0.0) + dv
                    changed += 1
                out.append(json.dumps(rec, ensure_ascii=False))
        _replace(rates, out)
        bills = d / f"customerBill_{ym}.jsonl"
        if per_bill and bills.exists():
            out = []
            with open(bills, encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    dv = per_bill.get(rec["id"], 0.0)
                    if dv:
                        for k in ("amountDue", "taxExcludedAmount"):
                            rec[k]["value"] = round(rec[k]["value"] + dv, 2)
                        rec["taxIncludedAmount"]["value"] = round(rec["taxIncludedAmount"]["value"] + dv * (1 + TAX_RATE), 2)
                    out.append(json.dumps(rec, ensure_ascii=False))
            _replace(bills, out)
    return changed


def _replace(path: Path, lines: list[str]) -> None:
    import os

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
