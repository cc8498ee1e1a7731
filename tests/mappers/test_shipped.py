"""The shipped mappings against the emulator's describe and the sample data; schema and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sfsync.emulator.org import Org
from sfsync.mappers import compile_mapping, describer, load_mapping, load_mappings, validate_mapping
from sfsync.mappers.cli import mapping as mapping_cli
from sfsync.mappers.describe import write_cache
from sfsync.mappers.inputs import read_input
from sfsync.mappers.schema import mapping_json_schema

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"


@pytest.fixture(scope="module")
def org_describe():  # type: ignore[no-untyped-def]
    return describer(Org().describe)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):  # type: ignore[no-untyped-def]
    from sfsync.billers.sample import generate

    root = tmp_path_factory.mktemp("samples")
    generate(root / "csv", accounts=60, months=1, fmt="csv")
    generate(root / "tmf", accounts=60, months=1, fmt="tmf678")
    return root


def test_every_shipped_mapping_is_valid_against_the_emulator(org_describe):  # type: ignore[no-untyped-def]
    mappings = load_mappings([MAPPINGS])
    assert len(mappings) >= 17
    problems = [p for m in mappings for p in validate_mapping(m, org_describe)]
    assert problems == []


ACCOUNTS = {f"BA-{i:06d}": f"001{i:015d}" for i in range(1, 61)}


def resolver(sobject, field, values):  # type: ignore[no-untyped-def]
    assert (sobject, field) == ("Account", "AccountNumber")
    return {v: ACCOUNTS[v] for v in values if v in ACCOUNTS}


@pytest.mark.parametrize(("mapping", "data"), [
    ("files/accounts", "csv/accounts.csv"),
    ("files/statements", "csv/statements_202601.csv"),
    ("files/line_items", "csv/line_items_202601.csv"),
    ("files/balances", "csv/balances_202601.csv"),
    ("files/disputes", "csv/disputes_202601.csv"),
    ("tmf678/customerBill", "tmf/customerBill_202601.jsonl"),
    ("tmf678/appliedCustomerBillingRate", "tmf/appliedCustomerBillingRate_202601.jsonl"),
    ("tmf678/billingAccount", "tmf/billingAccount.jsonl"),
    ("tmf678/dispute", "tmf/dispute_202601.jsonl"),
])
def test_shipped_mappings_map_the_sample_data_without_rejects(mapping, data, samples, org_describe):  # type: ignore[no-untyped-def]
    compiled = compile_mapping(load_mapping(MAPPINGS / f"{mapping}.yaml"), org_describe)
    path = samples / data
    if not path.exists() or path.stat().st_size == 0 or len(path.read_text().splitlines()) < 2 and path.suffix == ".csv":
        pytest.skip("no rows of this entity in a one-month sample")
    table = read_input(path)
    if table.num_rows == 0:
        pytest.skip("no rows of this entity in a one-month sample")
    out = compiled.apply(table, biller="acme", resolve=resolver)
    assert out.rejects.empty, out.rejects.head().to_dict("records")
    assert len(out) + out.skipped == table.num_rows
    keys = out.rows.column("_key").to_pylist()
    assert all(k.startswith("acme:") for k in keys) and len(set(keys)) == len(keys)


def test_line_item_amounts_and_tmf_tax_sum(samples, org_describe):  # type: ignore[no-untyped-def]
    tmf = compile_mapping(load_mapping(MAPPINGS / "tmf678/appliedCustomerBillingRate.yaml"), org_describe)
    table = read_input(samples / "tmf/appliedCustomerBillingRate_202601.jsonl", 20)
    out = tmf.apply(table, biller="acme")
    raw = table.to_pylist()
    got = dict(zip(out.rows.column("vlocity_cmt__ExternalID__c").to_pylist(),
                   out.rows.column("vlocity_cmt__CurrencyAmount__c").to_pylist(), strict=True))
    for r in raw:
        tax = sum(t["taxAmount"]["value"] for t in r["appliedTax"] or [])
        assert got[f"acme:{r['id']}"] == f"{round(r['taxExcludedAmount']['value'] + tax + 1e-9, 2):.2f}"


def test_export_payment_method_mappings_never_select_card_or_bank_numbers():
    for m in load_mappings([MAPPINGS / "export"]):
        text = (Path(m.path)).read_text()
        assert "CardNumber__c" not in "\n".join(m.source.fields or []) and "BankAccountNumber__c" not in text.split("fields:")[1]


def test_json_schema_file_is_in_sync():
    on_disk = json.loads((ROOT / "schemas/mapping.schema.json").read_text())
    assert on_disk == mapping_json_schema(), "run: sfsync mapping schema --out schemas/mapping.schema.json"


def test_cli_validate_ok_and_failing(tmp_path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ok = runner.invoke(mapping_cli, ["validate", str(MAPPINGS), "--org"])
    assert ok.exit_code == 0, ok.output
    assert "17 mapping(s) valid" in ok.output or "mapping(s) valid against" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text((MAPPINGS / "files/line_items.yaml").read_text()
                   .replace("vlocity_cmt__UOM__c: uom", "vlocity_cmt__UOM__c: {formula: 'NOPE(uom)'}")
                   .replace("vlocity_cmt__Sequence__c: sequence", "vlocity_cmt__Sequenc__c: sequence"))
    res = runner.invoke(mapping_cli, ["validate", str(bad), "--org"])
    assert res.exit_code == 2
    assert "unknown function NOPE()" in res.output and "has no field vlocity_cmt__Sequenc__c" in res.output
    assert f"{bad}:" in res.output


def test_cli_preview_with_describe_cache(tmp_path, samples):  # type: ignore[no-untyped-def]
    org = Org()
    write_cache(tmp_path / "describe", {o: org.describe(o) for o in
                                         ("vlocity_cmt__StatementLineItem__c", "vlocity_cmt__Statement__c")})
    res = CliRunner().invoke(mapping_cli, [
        "preview", str(MAPPINGS / "files/line_items.yaml"), "--input", str(samples / "csv/line_items_202601.csv"),
        "--limit", "3", "--describe-cache", str(tmp_path / "describe"), "--biller", "acme"])
    assert res.exit_code == 0, res.output
    assert "3 mapped row(s)" in res.output and "acme:LI-" in res.output and "no rejected rows" in res.output


def test_dispute_mappings_on_hand_written_rows(org_describe):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    files = compile_mapping(load_mapping(MAPPINGS / "files/disputes.yaml"), org_describe)
    out = files.apply(pa.table({
        "dispute_id": ["DS-1", "DS-2"], "account_number": ["BA-000001", "BA-000002"],
        "statement_id": ["ST-1", "ST-2"], "line_item_id": ["LI-1", None], "amount": ["12.00", "3"],
        "status": ["OPEN", "RESOLVED"], "opened_date": ["2026-01-02", "2026-01-03"], "subject": ["s", "t"],
        "description": ["d", None], "origin": ["PHONE", "FAX"], "_source": ["d.csv:2", "d.csv:3"]}),
        biller="acme", resolve=resolver)
    assert out.rejects.empty
    rows = out.rows.to_pylist()
    assert rows[0]["vlocity_cmt__DisputeId__c"] == "acme:DS-1" and rows[0]["_key"] == "acme:DS-1"
    assert rows[0]["vlocity_cmt__StatementLineItemId__r.vlocity_cmt__ExternalID__c"] == "acme:LI-1"
    assert rows[1]["vlocity_cmt__StatementLineItemId__r.vlocity_cmt__ExternalID__c"] is None
    assert rows[1]["Origin"] is None and rows[1]["Status"] == "Closed"
    assert rows[0]["RecordTypeId"] == Org().record_type_ids("Case")["vlocity_cmt__Billing"]
    tmf = compile_mapping(load_mapping(MAPPINGS / "tmf678/dispute.yaml"), org_describe)
    out = tmf.apply(pa.table({
        "id": ["D1"], "billingAccount": [{"id": "BA-000003"}], "bill": [{"id": "ST-9"}],
        "appliedCustomerBillingRate": [None], "amount": [{"unit": "EUR", "value": 9.5}], "status": ["open"],
        "creationDate": ["2026-01-02T10:00:00Z"], "subject": ["x"], "description": ["y"], "channel": ["web"],
        "_source": ["dispute.jsonl:1"]}), biller="acme", resolve=resolver)
    assert out.rejects.empty
    row = out.rows.to_pylist()[0]
    assert row["vlocity_cmt__Amount__c"] == "9.50" and row["vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"] == "acme:ST-9"
    assert row["AccountId"] == ACCOUNTS["BA-000003"] and row["Origin"] == "Web"
