"""The sample-data generator: deterministic, consistent, awkward but legal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sfsync.billers.cli import sample_data, sample_mutate
from sfsync.billers.sample import build, generate, mutate


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, 50, 2, seed=1)
    generate(b, 50, 2, seed=1)
    generate(c, 50, 2, seed=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_statements_add_up_and_disputes_point_at_real_rows() -> None:
    data = build(400, 4, seed=5)
    months = list(data["months"])
    prev_balance: dict[str, float] = {}
    disputes = 0
    for m in months:
        st, li, bal = m["statements"], m["line_items"], m["balances"]
        sums = pa.table({"statement_id": li["statement_id"], "a": pc.cast(li["amount"], pa.float64())}) \
            .group_by("statement_id").aggregate([("a", "sum")])
        by_id = dict(zip(sums["statement_id"].to_pylist(), sums["a_sum"].to_pylist(), strict=True))
        paid = {r["account_number"]: float(r["last_payment_amount"]) for r in bal.to_pylist()}
        for row in st.to_pylist():
            acct = row["account_number"]
            assert round(by_id[row["statement_id"]], 2) == float(row["current_charges"])
            expected = float(row["previous_balance"]) - paid[acct] + float(row["current_charges"])
            assert round(expected, 2) == float(row["balance_due"])
            if acct in prev_balance:
                assert float(row["previous_balance"]) == prev_balance[acct]
            prev_balance[acct] = float(row["balance_due"])
        ds = m["disputes"]
        disputes += ds.num_rows
        assert pc.all(pc.is_in(ds["statement_id"], st["statement_id"])).as_py() is not False
        lids = ds["line_item_id"].drop_null()
        assert pc.all(pc.is_in(lids, li["line_item_id"])).as_py() is not False
    assert disputes > 0
    acc = data["accounts"]
    types = set(acc["record_type"].to_pylist())
    assert {"BillingAggregator", "Billing", "Consumer"} <= types
    parents = set(acc["parent_account_number"].drop_null().to_pylist())
    aggs = set(acc.filter(pc.equal(acc["record_type"], "BillingAggregator"))["account_number"].to_pylist())
    assert parents and parents <= aggs


def test_line_items_cover_categories_credits_and_awkward_text() -> None:
    data = build(3000, 1, seed=9)
    li = next(iter(data["months"]))["line_items"]
    assert set(li["category"].to_pylist()) == {"REC", "USG", "MSG", "OTC", "EQP", "CRD"}
    amounts = pc.cast(li["amount"], pa.float64())
    credits = li.filter(pc.equal(li["category"], "CRD"))
    assert pc.all(pc.less(pc.cast(credits["amount"], pa.float64()), 0)).as_py()
    assert pc.min(amounts).as_py() < 0
    desc = li["description"].to_pylist()
    assert any("\n" in d for d in desc)
    assert any('"' in d and "," in d for d in desc)
    assert any(len(d) >= 1000 for d in desc)
    assert any("é" in d for d in desc)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "tmf678"])
def test_every_format_is_readable(tmp_path: Path, fmt: str) -> None:
    counts = generate(tmp_path, 60, 2, seed=1, fmt=fmt)
    if fmt == "csv":
        t = pacsv.read_csv(tmp_path / "line_items_202601.csv")
        assert t.num_rows > 0
        assert "Société Générale Télécom" in (tmp_path / "accounts.csv").read_text("utf-8")
    elif fmt == "parquet":
        t = pq.read_table(tmp_path / "statements_202602.parquet")
        assert pa.types.is_decimal(t.schema.field("balance_due").type)
        assert pa.types.is_date(t.schema.field("statement_date").type)
    else:
        for p in tmp_path.glob("*.jsonl"):
            for line in p.read_text("utf-8").splitlines():
                json.loads(line)
    if fmt == "tmf678":
        assert set(counts) == {"billingAccount", "customerBill", "appliedCustomerBillingRate", "dispute"}
        bill = json.loads((tmp_path / "customerBill_202601.jsonl").read_text("utf-8").splitlines()[0])
        assert bill["@type"] == "CustomerBill" and bill["amountDue"]["unit"] == "EUR"
    else:
        assert counts["line_items"] > counts["statements"] > 0


def test_mutate_changes_a_few_line_items_and_their_statements(tmp_path: Path) -> None:
    generate(tmp_path, 200, 1, seed=1)
    before = pacsv.read_csv(tmp_path / "line_items_202601.csv", convert_options=pacsv.ConvertOptions(
        column_types={"amount": pa.string()}))
    n = mutate(tmp_path, 10, seed=1)
    after = pacsv.read_csv(tmp_path / "line_items_202601.csv", convert_options=pacsv.ConvertOptions(
        column_types={"amount": pa.string()}))
    diff = sum(a != b for a, b in zip(before["amount"].to_pylist(), after["amount"].to_pylist(), strict=True))
    assert diff == n and 0 < n < before.num_rows / 4
    st = pacsv.read_csv(tmp_path / "statements_202601.csv")
    total_li = round(sum(float(a) for a in after["amount"].to_pylist()), 2)
    assert round(float(pc.sum(st["current_charges"]).as_py()), 2) == total_li


def test_cli_sample_data(tmp_path: Path) -> None:
    r = CliRunner().invoke(sample_data, ["--accounts", "20", "--months", "2", "--out", str(tmp_path / "o"),
                                         "--format", "parquet"])
    assert r.exit_code == 0, r.output
    assert "line_items" in r.output and (tmp_path / "o" / "accounts.parquet").exists()
    r = CliRunner().invoke(sample_mutate, ["--dir", str(tmp_path / "o"), "--pct", "50"])
    assert r.exit_code == 0, r.output
