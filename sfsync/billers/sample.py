"""Deterministic sample operator exports (docs/sample-data.md), fast enough for benchmarks.

Everything is built column-wise with numpy (amounts in integer cents, so statements add up
exactly) and written with pyarrow writers: 50,000 accounts × 12 months (≈ 1.7 M line items)
take seconds, not minutes.

    >>> generate("demo/billing", accounts=200, months=3, seed=1)   # doctest: +SKIP
    {'accounts': 200, 'statements': 576, 'line_items': 1703, ...}
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sfsync.billers import _jsonl
from sfsync.billers.layout import FILES_ENTITIES
from sfsync.errors import UserError

FORMATS = ("csv", "jsonl", "parquet", "tmf678")

_FIRST = ["José", "Zoë", "Anaïs", "Björn", "Chloé", "Łukasz", "Mary", "John", "Aoife", "Søren", "Maria", "Ahmed"]
_LAST = ["Müller", "O'Brien", "García", "Dubois", "Smith, Jr.", "Nguyễn", "Kowalski", "Brown", "Østergård", "Lee"]
_COMPANIES = ["Société Générale Télécom", "O'Brien & Sons, Ltd.", 'The "Quick" Fix Co', "Acme Corp",
              "Müller Logistik GmbH", "Café Crème SARL", "Northwind Traders", "Globex, Inc."]
_PLANS = ["Unlimited Plan", 'Business "Pro" 50 GB', "Family Share, 4 lines", "Basic Talk & Text",
          "Forfait Sérénité 100 Go"]
_DESC = {
    "USG": ["Voice usage, national", "Data usage — roaming EU", 'Calls to "premium" numbers', "Voice usage"],
    "MSG": ["SMS national", "SMS international, per message", "MMS"],
    "OTC": ["Activation fee", "SIM replacement", "Late payment fee", "Number port-in, one-time"],
    "EQP": ["Handset instalment", "Router 5G, rental", 'Tablet 10" instalment'],
    "CRD": ["Loyalty credit", "Goodwill credit — outage 3 Mar", "Promotional discount, 10%"],
}
_LONG = ("Detailed explanation of charges, including \"quoted\" terms, commas, and accents (é, ü, ø): " * 12)[:1000]
_ODD_NEWLINE = "Adjustment per agreement:\nsee letter, ref \"A-7\""
_CAT_P = {"USG": 0.40, "MSG": 0.15, "OTC": 0.15, "EQP": 0.05, "CRD": 0.25}


def _fmt_int(a: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(a), pa.string()), width, "0")


def _cat(*parts: Any) -> pa.Array:
    """Element-wise string concatenation of arrays and str scalars."""
    return pc.binary_join_element_wise(*parts, "")


def _money(cents: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Integer cents → '-12.30' strings (null where mask is False)."""
    c = np.asarray(cents, dtype=np.int64)
    sign = pa.array(np.where(c < 0, "-", ""))
    a = np.abs(c)
    s = _cat(sign, pc.cast(pa.array(a // 100), pa.string()), ".", _fmt_int(a % 100, 2))
    return pc.if_else(pa.array(mask), s, None) if mask is not None else s


def _pick(rng: np.random.Generator, choices: list[str], n: int) -> pa.Array:
    return pc.take(pa.array(choices), pa.array(rng.integers(0, len(choices), n)))


def _date(d: np.ndarray) -> pa.Array:
    return pa.array(d.astype("datetime64[D]"), pa.date32())


def _accounts(rng: np.random.Generator, n: int) -> dict[str, Any]:
    idx = np.arange(n)
    u = rng.random(n)
    agg = (u < 0.04) & (idx > 0)
    agg[0] = n > 1
    last_agg = np.maximum.accumulate(np.where(agg, idx, -1))
    child = (~agg) & (u >= 0.04) & (u < 0.30) & (last_agg >= 0)
    business = (~agg) & (~child) & (u >= 0.30) & (u < 0.40)
    rtype = np.where(agg, "BillingAggregator", np.where(child, "Billing", np.where(business, "Business", "Consumer")))
    num = _cat("BA-", _fmt_int(idx + 1, 6))
    parent = pc.if_else(pa.array(child), pc.take(num, pa.array(np.maximum(last_agg, 0))), None)
    corp = agg | child | business
    person = _cat(_pick(rng, _FIRST, n), " ", _pick(rng, _LAST, n))
    company = _cat(_pick(rng, _COMPANIES, n), " ", pc.cast(pa.array(idx % 97 + 1), pa.string()))
    name = pc.if_else(pa.array(corp), company, person)
    email = _cat("billing.", pc.utf8_lower(num), "@example.com")
    return {"idx": idx, "num": num, "name": name, "parent": parent, "rtype": rtype, "corp": corp,
            "billed": ~agg, "cycle": rng.integers(1, 29, n),
            "quarterly": (rng.random(n) < 0.05) & ~agg,
            "prepaid": (rng.random(n) < 0.15) & ~corp, "email": email}


def _month(rng: np.random.Generator, acc: dict[str, Any], m: int, months: int, first: np.datetime64,
           state: dict[str, np.ndarray]) -> dict[str, Any]:
    """Statements, line items, balances, usage and disputes of billing month ``m``."""
    month = first + np.timedelta64(m, "M")
    yyyymm = str(month).replace("-", "")
    billed = acc["billed"] & (~acc["quarterly"] | (m % 3 == 2))
    a_idx = np.flatnonzero(billed)
    ns = len(a_idx)
    cycle = acc["cycle"][a_idx]
    sdate = month.astype("datetime64[D]") + (cycle - 1)
    prev_month = (month - np.timedelta64(1, "M")).astype("datetime64[D]") + (cycle - 1)
    period_end = sdate - 1
    due = sdate + 21
    acct6 = _fmt_int(a_idx + 1, 6)
    anum = pc.take(acc["num"], pa.array(a_idx))
    stmt_id = _cat("ST-", acct6, "-" + yyyymm)

    # Line items: consumers have a plan and a little usage, businesses more lines.
    corp = acc["corp"][a_idx]
    n_li = np.where(corp, 2 + rng.poisson(3.0, ns), 1 + rng.poisson(0.9, ns)).clip(1, 40)
    total = int(n_li.sum())
    s_of = np.repeat(np.arange(ns), n_li)
    starts = np.concatenate([[0], np.cumsum(n_li)[:-1]])
    seq = np.arange(total) - starts[s_of] + 1
    cats = np.array(list(_CAT_P))
    cat = np.where(seq == 1, "REC", cats[rng.choice(len(cats), total, p=list(_CAT_P.values()))])
    is_voice = rng.random(total) < 0.5
    stype = np.select([cat == "USG", cat == "MSG", cat == "REC"],
                      [np.where(is_voice, "VOICE", "DATA"), "SMS", np.where(is_voice, "VOICE", "DATA")], "")
    qty = np.select([(cat == "USG") & is_voice, cat == "USG", cat == "MSG", cat == "EQP"],
                    [rng.integers(10, 2000, total), rng.integers(100, 50000, total), rng.integers(1, 500, total), 1], 0)
    uom = np.select([(cat == "USG") & is_voice, cat == "USG", cat == "MSG", cat == "EQP"], ["MIN", "MB", "MSG", "EA"], "")
    plan = np.array([1999, 2999, 4999, 7999, 12999])[rng.integers(0, 5, total)]
    amount = np.select([cat == "REC", (cat == "USG") & is_voice, cat == "USG", cat == "MSG", cat == "OTC",
                        cat == "EQP", cat == "CRD"],
                       [plan, qty * 2, qty // 10, qty * 5, rng.integers(500, 5000, total),
                        rng.integers(9900, 89900, total), -rng.integers(500, 3000, total)], 0).astype(np.int64)
    # Descriptions index one vocabulary (take, not if_else: a broadcast 1,000-char scalar
    # would overflow 32-bit string offsets on millions of rows).
    vocab = [*_PLANS, *(w for words in _DESC.values() for w in words), _ODD_NEWLINE, _LONG]
    di = rng.integers(0, len(_PLANS), total)
    base = len(_PLANS)
    for c, words in _DESC.items():
        di = np.where(cat == c, base + rng.integers(0, len(words), total), di)
        base += len(words)
    odd = rng.random(total)
    di = np.where(odd < 0.0004, len(vocab) - 2, np.where(odd < 0.0008, len(vocab) - 1, di))
    desc = pc.take(pa.array(vocab), pa.array(di))
    line_no = np.where(corp[s_of], seq % 3 + 1, 1)
    li_acct6 = pc.take(acct6, pa.array(s_of))
    service_id = _cat("SV-", li_acct6, "-", pc.cast(pa.array(line_no), pa.string()))
    phone = _cat("Mobile +33 6 ", _fmt_int((a_idx[s_of] * 7919 + line_no * 104729) % 100_000_000, 8))
    li_sdate = sdate[s_of]
    line_items = pa.table({
        "line_item_id": _cat("LI-", li_acct6, "-" + yyyymm + "-", _fmt_int(seq, 3)),
        "statement_id": pc.take(stmt_id, pa.array(s_of)), "account_number": pc.take(anum, pa.array(s_of)),
        "statement_date": _date(li_sdate), "category": pa.array(cat),
        "service_type": pc.if_else(pa.array(stype == ""), None, pa.array(stype)),
        "description": desc, "service_id": service_id, "service_name": phone,
        "amount": _money(amount), "quantity": pa.array(np.where(qty > 0, qty, 0), mask=qty == 0),
        "uom": pc.if_else(pa.array(uom == ""), None, pa.array(uom)),
        "service_start": _date(prev_month[s_of]), "service_end": _date(period_end[s_of]),
        "sequence": pa.array(seq.astype(np.int32)),
    })

    # Statements add up: balance_due = previous_balance - payment + current_charges.
    charges = np.add.reduceat(np.where(amount > 0, amount, 0), starts)
    credits = -np.add.reduceat(np.where(amount < 0, amount, 0), starts)
    current = charges - credits
    prev = state["balance"][a_idx]
    roll = rng.random(ns)
    paid = np.where(roll < 0.92, prev, np.where(roll < 0.97, 0, prev // 2))
    overdue = np.maximum(prev - paid, 0)
    balance = prev - paid + current
    state["balance"][a_idx] = balance
    state["overdue"][a_idx] = overdue
    disc = np.where(corp & (rng.random(ns) < 0.1), np.where(rng.random(ns) < 0.5, 500, 1000), -1)
    status = np.where(m < months - 1, "PAID",
                      np.array(["NEW", "APPROVED", "SENT", "SENT"])[rng.integers(0, 4, ns)])
    statements = pa.table({
        "statement_id": stmt_id, "account_number": anum, "statement_date": _date(sdate),
        "due_date": _date(due), "period_start": _date(prev_month), "period_end": _date(period_end),
        "previous_balance": _money(prev), "current_charges": _money(current), "balance_due": _money(balance),
        "overdue_amount": _money(overdue), "discount_pct": _money(disc, disc > 0), "status": pa.array(status),
        "currency": pa.array(["EUR"] * ns),
        "image_url": _cat("https://bills.example.com/", stmt_id, ".pdf"),
    })
    pay_date = sdate - rng.integers(1, 20, ns)
    balances = pa.table({
        "account_number": anum, "balance_date": _date(sdate), "balance": _money(balance),
        "charges": _money(charges), "credits": _money(credits), "last_bill_amount": _money(current),
        "last_payment_amount": _money(paid),
        "last_payment_date": pc.if_else(pa.array(paid > 0), _date(pay_date), None),
        "due_date": _date(due), "past_due_balance": _money(overdue),
        "past_due_date": pc.if_else(pa.array(overdue > 0), _date(prev_month + 21), None),
        "late_fee": _money(np.where(overdue > 0, 500, 0)),
    })

    # Usage detail: 1-3 rated records per usage line item, summing to the line item.
    u_li = np.flatnonzero((cat == "USG") | (cat == "MSG"))
    reps = rng.integers(1, 4, len(u_li))
    u_of = np.repeat(u_li, reps)
    first_rec = np.concatenate([[True], np.diff(u_of) != 0]) if len(u_of) else np.zeros(0, bool)
    r = reps.repeat(reps)
    u_qty = qty[u_of] // r + np.where(first_rec, qty[u_of] % r, 0)
    u_amt = amount[u_of] // r + np.where(first_rec, amount[u_of] % r, 0)
    usage = pa.table({
        "usage_id": _cat("US-" + yyyymm + "-", _fmt_int(np.arange(len(u_of)) + 1, 8)),
        "account_number": pc.take(line_items["account_number"], pa.array(u_of)),
        "statement_id": pc.take(line_items["statement_id"], pa.array(u_of)),
        "usage_date": _date(prev_month[s_of[u_of]] + rng.integers(0, 28, len(u_of))),
        "usage_type": pa.array(np.where(stype[u_of] == "SMS", "SMS", stype[u_of])),
        "quantity": pa.array(u_qty), "uom": pa.array(uom[u_of]), "rated_amount": _money(u_amt),
    })

    # A few disputes, each pointing at a real statement and (mostly) a real line item.
    d_li = np.flatnonzero((amount > 0) & (rng.random(total) < 0.002))
    nd = len(d_li)
    whole = rng.random(nd) < 0.3
    d_amt = np.maximum(amount[d_li] // np.where(whole, 1, rng.integers(1, 4, nd)), 1)
    disputes = pa.table({
        "dispute_id": _cat("DS-" + yyyymm + "-", _fmt_int(np.arange(nd) + 1, 6)),
        "account_number": pc.take(line_items["account_number"], pa.array(d_li)),
        "statement_id": pc.take(line_items["statement_id"], pa.array(d_li)),
        "line_item_id": pc.if_else(pa.array(whole), None, pc.take(line_items["line_item_id"], pa.array(d_li))),
        "amount": _money(d_amt),
        "status": _pick(rng, ["OPEN", "INVESTIGATING", "RESOLVED", "REJECTED"], nd),
        "opened_date": _date(li_sdate[d_li] + rng.integers(3, 20, nd)),
        "subject": _pick(rng, ["Charge not recognised", "Roaming charges, disputed", 'Wrong "plan" price'], nd),
        "description": _pick(rng, ["Customer says the charge is wrong.", "Client: « je n'ai jamais appelé ce numéro »",
                                   "Called twice,\nno answer yet", _LONG], nd),
        "origin": _pick(rng, ["PHONE", "WEB", "EMAIL"], nd),
    })
    return {"statements": statements, "line_items": line_items, "balances": balances, "usage": usage,
            "disputes": disputes, "_yyyymm": yyyymm,
            "_names": pa.table({"account_number": acc["num"], "name": acc["name"]})}


def build(accounts: int, months: int, seed: int = 42, start_month: str = "2026-01") -> dict[str, Any]:
    """Build the sample tables: ``{"accounts": table, "months": iterator of {entity: table}}``.

    Months are produced lazily (one month in memory at a time); the accounts table is
    complete only once every month has been consumed (its status depends on the balances).
    Amount columns are '12.30' strings and dates date32, as the files layout writes them.
    """
    if accounts < 1 or months < 1:
        raise UserError("sample-data needs --accounts >= 1 and --months >= 1")
    rng = np.random.default_rng(seed)
    acc = _accounts(rng, accounts)
    first = np.datetime64(start_month, "M")
    state = {"balance": np.zeros(accounts, np.int64), "overdue": np.zeros(accounts, np.int64)}
    result: dict[str, Any] = {}

    def months_iter() -> Iterator[dict[str, pa.Table]]:
        for m in range(months):
            yield _month(rng, acc, m, months, first, state)
        late = state["overdue"]
        status = np.where(late > 20000, "COLLECTIONS", np.where(late > 0, "OVERDUE", "CURRENT"))
        result["accounts"] = pa.table({
            "account_number": acc["num"], "name": acc["name"], "parent_account_number": acc["parent"],
            "record_type": pa.array(acc["rtype"]), "bill_cycle": pa.array(acc["cycle"]),
            "bill_frequency": pa.array(np.where(acc["quarterly"], "QUARTERLY", "MONTHLY")),
            "email": acc["email"], "payment_type": pa.array(np.where(acc["prepaid"], "PRE", "POST")),
            "status": pa.array(status),
        })

    result["months"] = months_iter()
    return result


def _typed(entity: str, t: pa.Table) -> pa.Table:
    """Native column types for Parquet: decimal(12,2) amounts, int64 integers, date32 dates."""
    spec = FILES_ENTITIES[entity].columns or {}
    cols = []
    for name in t.column_names:
        kind = spec.get(name)
        col = t[name]
        if kind == "decimal":
            col = pc.cast(col, pa.decimal128(12, 2))
        elif kind == "integer":
            col = pc.cast(col, pa.int64())
        cols.append(col)
    return pa.table(cols, names=t.column_names)


def _write(path: Path, entity: str, t: pa.Table, fmt: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        pacsv.write_csv(t, tmp, pacsv.WriteOptions(quoting_style="needed"))
    elif fmt == "parquet":
        pq.write_table(_typed(entity, t), tmp, row_group_size=100_000)
    else:
        numeric = {c for c, k in (FILES_ENTITIES[entity].columns or {}).items() if k in ("decimal", "integer")}
        _jsonl.write_lines(tmp, _jsonl.flat_objects(t, numeric))
    os.replace(tmp, path)


def generate(out: str | Path, accounts: int = 1000, months: int = 12, seed: int = 42, fmt: str = "csv",
             start_month: str = "2026-01") -> dict[str, int]:
    """Write a deterministic operator export into ``out``.

    Args:
        out: directory (created).
        accounts: billing accounts (aggregators, business billing accounts, consumers).
        months: billing months, one file per entity and month (``line_items_202601.csv``).
        seed: same seed, same bytes.
        fmt: ``csv``, ``jsonl``, ``parquet`` (the files layout) or ``tmf678`` (TMF resources).
        start_month: first billing month, ``YYYY-MM``.

    Returns:
        Row count per entity.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown sample format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = build(accounts, months, seed, start_month)
    if fmt == "tmf678":
        from sfsync.billers._tmfsample import write_tmf

        return write_tmf(out, data)
    counts: dict[str, int] = {}
    for month in data["months"]:
        for entity in ("statements", "line_items", "balances", "usage", "disputes"):
            t = month[entity]
            counts[entity] = counts.get(entity, 0) + t.num_rows
            _write(out / f"{entity}_{month['_yyyymm']}.{fmt}", entity, t, fmt)
    _write(out / f"accounts.{fmt}", "accounts", data["accounts"], fmt)
    return {"accounts": data["accounts"].num_rows, **counts}


def _read_layout(path: Path, entity: str, fmt: str) -> pa.Table:
    """Read a sample file back with amounts as '12.30' strings (the in-memory layout)."""
    spec = FILES_ENTITIES[entity].columns or {}
    if fmt == "csv":
        t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in spec}, strings_can_be_null=True, null_values=[""]))
    elif fmt == "parquet":
        t = pq.read_table(path)
    else:
        import pyarrow.json as pajson

        from sfsync.billers._jsonread import explicit_schema

        t = pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=explicit_schema(spec)))
    cols = []
    for name in t.column_names:
        col = t[name]
        if spec.get(name) == "decimal":
            col = _money(_cents_of(col), pc.is_valid(col).to_numpy(zero_copy_only=False))
        elif spec.get(name) == "integer":
            col = pc.cast(col, pa.int64())
        cols.append(col)
    return pa.table(cols, names=t.column_names)


def _cents_of(col: Any) -> np.ndarray:
    f = pc.fill_null(pc.cast(col, pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    return np.rint(f * 100).astype(np.int64)


def mutate(directory: str | Path, pct: float, seed: int = 7) -> int:
    """Re-issue the amounts of ``pct`` % of line items in place, keeping statements consistent.

    Each chosen line item moves by 0.01-5.00 (credits get more negative, charges more
    positive); its statement's ``current_charges`` and ``balance_due`` move by the same sum.
    Files are rewritten atomically. Returns how many line items changed.
    """
    d = Path(directory)
    rng = np.random.default_rng(seed)
    if list(d.glob("appliedCustomerBillingRate_*.jsonl")):
        from sfsync.billers._tmfsample import mutate_tmf

        return mutate_tmf(d, pct, rng)
    changed = 0
    for li_path in sorted(d.glob("line_items_*.*")):
        fmt = li_path.suffix.lstrip(".")
        ym = li_path.stem.split("_")[-1]
        li = _read_layout(li_path, "line_items", fmt)
        pick = rng.random(li.num_rows) < pct / 100
        if not pick.any():
            continue
        cents = _cents_of(li["amount"])
        delta = np.where(pick, rng.integers(1, 501, li.num_rows), 0) * np.where(cents < 0, -1, 1)
        li = li.set_column(li.column_names.index("amount"), "amount", _money(cents + delta))
        _write(li_path, "line_items", li, fmt)
        st_path = d / f"statements_{ym}.{fmt}"
        if st_path.exists():
            st = _read_layout(st_path, "statements", fmt)
            per: dict[str, int] = {}
            for sid, dv in zip(li["statement_id"].to_pylist(), delta.tolist(), strict=True):
                if dv:
                    per[sid] = per.get(sid, 0) + dv
            add = np.array([per.get(s, 0) for s in st["statement_id"].to_pylist()], dtype=np.int64)
            for col in ("current_charges", "balance_due"):
                st = st.set_column(st.column_names.index(col), col, _money(_cents_of(st[col]) + add))
            _write(st_path, "statements", st, fmt)
        changed += int(pick.sum())
    return changed
