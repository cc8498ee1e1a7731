"""Applying compiled mappings to plain tables: values, rejects, keys, lookups, nesting."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from sfsync.errors import MappingError
from sfsync.mappers import compile_mapping, load_mapping_text

from .conftest import BASE, DESCRIBE, mapping, table

HEAD_FIELDS = """\
  Ext__c: {template: "{biller}:{id}"}
  Name: id
"""


def run(fields: str, data: pa.Table, head: str = BASE, **kw):  # type: ignore[no-untyped-def]
    compiled = compile_mapping(mapping(HEAD_FIELDS + fields, head), DESCRIBE)
    return compiled.apply(data, biller=kw.pop("biller", "b1"), **kw)


def col(batch, name):  # type: ignore[no-untyped-def]
    return batch.rows.column(name).to_pylist()


def test_copies_templates_and_coerces_numbers_to_scale():
    out = run("  Amount__c: amount\n  Count__c: n\n", table(id=["1", "2"], amount=["12.5", "-0.005"], n=["3", None]))
    assert col(out, "Ext__c") == ["b1:1", "b1:2"]
    assert col(out, "_key") == ["b1:1", "b1:2"]
    assert col(out, "Amount__c") == ["12.50", "-0.01"]
    assert col(out, "Count__c") == ["3", None]
    assert col(out, "_source") == ["in.csv:2", "in.csv:3"]


def test_bad_row_is_rejected_alone_with_code_and_value():
    out = run("  Amount__c: amount\n  Count__c: n\n",
              table(id=["1", "2", "3"], amount=["1.00", "abc", "2"], n=["1", "2", "2.5"]))
    assert col(out, "Ext__c") == ["b1:1"]
    rej = out.rejects.set_index("_source")
    assert rej.loc["in.csv:3", "code"] == "INVALID_NUMBER"
    assert "Amount__c" in rej.loc["in.csv:3", "message"] and "'abc'" in rej.loc["in.csv:3", "message"]
    assert rej.loc["in.csv:4", "code"] == "FRACTION_NOT_ALLOWED"
    assert rej.loc["in.csv:4", "_key"] == "b1:3"


def test_precision_overflow_and_string_length():
    out = run("  Amount__c: amount\n  Short__c: s\n",
              table(id=["1", "2"], amount=["12345678901234567.00", "1"], s=["ok", "toolong"]))
    codes = dict(zip(out.rejects["_source"], out.rejects["code"], strict=True))
    assert codes == {"in.csv:2": "NUMBER_OUTSIDE_VALID_RANGE", "in.csv:3": "STRING_TOO_LONG"}


def test_truncate_policy():
    out = run("  Short__c: {source: s, length: truncate}\n", table(id=["1"], s=["toolong"]))
    assert col(out, "Short__c") == ["toolo"]


def test_value_map_reject_default_keep():
    data = table(id=["1", "2"], c=["USG", "XXX"])
    out = run("  Kind__c: {source: c, value_map: {USG: Usage}}\n", data)
    assert col(out, "Kind__c") == ["Usage"]
    assert out.rejects["code"].tolist() == ["UNMAPPED_VALUE"] and "'XXX'" in out.rejects["message"][0]
    out = run("  Kind__c: {source: c, value_map: {USG: Usage}, unmapped: default, unmapped_default: Billed}\n", data)
    assert col(out, "Kind__c") == ["Usage", "Billed"]
    out = run("  Loose__c: {source: c, value_map: {USG: A}, unmapped: keep}\n", data)
    assert col(out, "Loose__c") == ["A", "XXX"]


def test_restricted_picklist_rejects_unrestricted_passes():
    out = run("  Kind__c: c\n  Loose__c: c\n", table(id=["1", "2"], c=["Usage", "Other"]))
    assert out.rejects["code"].tolist() == ["BAD_PICKLIST_VALUE"]
    assert col(out, "Loose__c") == ["Usage"]


def test_dates_datetimes_booleans():
    out = run("  Day__c: {source: d, date_format: ['%d/%m/%Y', iso]}\n  When__c: {source: w, timezone: Europe/Paris}\n"
              "  Flag__c: f\n",
              table(id=["1", "2"], d=["31/01/2026", "2026-02-01T10:00:00Z"],
                    w=["2026-07-01 12:00:00", "2026-07-01T12:00:00-04:00"], f=["Y", "no"]))
    assert col(out, "Day__c") == ["2026-01-31", "2026-02-01"]
    assert col(out, "When__c") == ["2026-07-01T10:00:00.000Z", "2026-07-01T16:00:00.000Z"]
    assert col(out, "Flag__c") == ["true", "false"]


def test_invalid_date_and_boolean_rejects():
    out = run("  Day__c: d\n  Flag__c: f\n", table(id=["1", "2"], d=["2026-02-30", "2026-01-01"], f=["yes", "maybe"]))
    assert out.rejects["code"].tolist() == ["INVALID_DATE", "INVALID_BOOLEAN"]


def test_formulas_constants_defaults_required():
    out = run("  Kind__c: {formula: \"IF(amount < 0, 'Billed', 'Service')\"}\n  Amount__c: {formula: 'ROUND(amount * 1.2, 2)'}\n"
              "  Flag__c: {constant: true}\n  Loose__c: {source: x, default: B}\n  Short__c: {source: x, required: true}\n",
              table(id=["1", "2"], amount=["-10", "5"], x=["A", None]))
    assert col(out, "Kind__c") == ["Billed"]
    assert col(out, "Amount__c") == ["-12.00"]
    assert col(out, "Flag__c") == ["true"]
    assert out.rejects["code"].tolist() == ["REQUIRED_MISSING"]


def test_conditions_skip_and_reject_with_message():
    head = BASE + """\
conditions:
  - {when: "status = 'VOID'", action: skip}
  - {when: "ISBLANK(amount)", action: reject, code: NO_AMOUNT, message: "no amount on {id}"}
"""
    out = run("  Amount__c: amount\n", table(id=["1", "2", "3"], status=["OK", "VOID", "OK"], amount=["1", None, None]),
              head=head)
    assert col(out, "Ext__c") == ["b1:1"]
    assert out.skipped == 1 and out.skipped_by == {"when status = 'VOID'": 1}
    assert out.rejects[["code", "message"]].values.tolist() == [["NO_AMOUNT", "no amount on 3"]]


def test_trim_date_skips_older_rows():
    head = BASE + "record_date: Day__c\n"
    out = run("  Day__c: d\n", table(id=["1", "2"], d=["2025-12-31", "2026-01-01"]), head=head,
              trim_date=date(2026, 1, 1))
    assert col(out, "Ext__c") == ["b1:2"] and out.skipped == 1 and out.skipped_by == {"before trim date": 1}


def test_lookups_resolved_and_not_found():
    fields = "  Account__c: {source: acct, lookup: {sobject: Account, field: AccountNumber}}\n"
    data = table(id=["1", "2"], acct=["BA-1", "BA-404"])
    calls = []

    def resolve(sobject, field, values):  # type: ignore[no-untyped-def]
        calls.append((sobject, field, values))
        return {"BA-1": "001000000000001AAA"}

    out = run(fields, data, resolve=resolve)
    assert calls == [("Account", "AccountNumber", {"BA-1", "BA-404"})]
    assert col(out, "Account__c") == ["001000000000001AAA"]
    assert out.rejects["code"].tolist() == ["LOOKUP_NOT_FOUND"]
    assert "'BA-404'" in out.rejects["message"][0]
    pending = run(fields, data)
    assert pending.lookup_requests() == [("Account", "AccountNumber", {"BA-1", "BA-404"})]
    assert col(pending, "_lookup.Account__c") == ["BA-1", "BA-404"]
    assert len(pending.resolve(resolve)) == 1


def test_self_lookup_is_deferred_to_an_after_step():
    out = run("  Self__c: {source: parent, lookup: {sobject: Thing__c, field: Name}}\n",
              table(id=["1", "2"], parent=[None, "1"]), resolve=lambda *_: {})
    assert len(out) == 2  # the main load does not wait for parents
    after = out.deferred_updates(lambda s, f, v: {"1": "a01000000000001AAA"})
    assert after.rows.column("Self__c").to_pylist() == ["a01000000000001AAA"]
    assert after.rows.column("_key").to_pylist() == ["b1:2"]


def test_relationship_column_and_record_type():
    head = BASE + "record_type: Big\n"
    out = run("  Parent__r.Ext__c: {template: \"{biller}:{p}\"}\n", table(id=["1"], p=["P1"]), head=head)
    assert col(out, "Parent__r.Ext__c") == ["b1:P1"]
    assert col(out, "RecordTypeId") == ["012000000000001AAA"]
    head = BASE + "record_type: {source: rt}\n"
    out = run("", table(id=["1", "2"], rt=["Big", "Small"]), head=head)
    assert out.rejects["code"].tolist() == ["UNKNOWN_RECORD_TYPE"]


def test_composite_key_and_soql_fallback_filter():
    head = BASE.replace("key: {external_id: Ext__c}", "key: {fields: [Account__c, Day__c]}")
    fields = "  Account__c: {source: acct, lookup: {sobject: Account, field: AccountNumber}}\n  Day__c: d\n"
    m = load_mapping_text(head + "fields:\n  Name: id\n" + fields)
    compiled = compile_mapping(m, DESCRIBE)
    out = compiled.apply(table(id=["1"], acct=["BA-1"], d=["2026-01-31"]), biller="b1",
                         resolve=lambda s, f, v: {"BA-1": "001000000000001AAA"})
    assert col(out, "_key") == ["b1:BA-1|2026-01-31"]
    assert out.key_pairs() == [[("Account__c", "001000000000001AAA"), ("Day__c", "2026-01-31")]]
    assert compiled.key_filter(out) == "(Account__c = '001000000000001AAA' AND Day__c = 2026-01-31)"


def test_nested_json_paths_and_aggregates():
    data = pa.table({
        "id": ["1", "2", "3"],
        "acct": [{"id": "A"}, {"id": "B"}, None],
        "tax": [[{"t": {"value": 1.25}}, {"t": {"value": 2.0}}], [], None],
        "ch": [[{"name": "k", "value": "Usage"}], [{"name": "x", "value": "1"}], None],
        "_source": ["r1", "r2", "r3"],
    })
    out = run("  Short__c: acct.id\n  Amount__c: {source: 'tax[].t.value', aggregate: sum}\n"
              "  Count__c: {formula: 'COUNT(tax[])'}\n  Kind__c: {source: 'ch[name=k].value', aggregate: first}\n"
              "  Loose__c: {formula: \"IF(ISBLANK(FIRST(tax[].t.value)), 'B', 'A')\"}\n", data)
    assert col(out, "Short__c") == ["A", "B", None]
    assert col(out, "Amount__c") == ["3.25", "0.00", None]
    assert col(out, "Count__c") == ["2", "0", "0"]
    assert col(out, "Kind__c") == ["Usage", None, None]
    assert col(out, "Loose__c") == ["A", "B", "B"]


def test_missing_column_is_a_mapping_error_naming_it():
    with pytest.raises(MappingError, match="reads column 'amount'"):
        run("  Amount__c: amount\n", table(id=["1"]))


def test_pandas_input_and_csv_frame():
    import pandas as pd

    frame = pd.DataFrame({"id": ["1"], "amount": ["2"], "_source": ["x:1"]})
    out = run("  Amount__c: amount\n", frame)
    csv = out.to_csv_frame()
    assert list(csv.columns) == ["Ext__c", "Name", "Amount__c"] and csv["Amount__c"].tolist() == ["2.00"]


EXPORT = """\
version: 1
name: t.export
direction: export
source:
  sobject: Thing__c
  fields: [Id, Amount__c, Day__c, Flag__c, Parent__r.Ext__c]
  where: "Flag__c = true"
target: {entity: payments, format: json}
key: {fields: [Id]}
fields:
  correlatorId: Id
  totalAmount.value: {source: Amount__c, type: number, scale: 2}
  totalAmount.unit: {constant: EUR}
  paymentDate: {source: Day__c, type: datetime}
  flag: {source: Flag__c, type: boolean}
  bill.id: {formula: "SUBSTITUTE(Parent__r.Ext__c, $biller & ':', '')"}
"""


def test_export_mapping_builds_nested_typed_records_and_query():
    compiled = compile_mapping(load_mapping_text(EXPORT), DESCRIBE)
    assert compiled.soql("SystemModstamp > 2026-01-01T00:00:00Z") == (
        "SELECT Id, Amount__c, Day__c, Flag__c, Parent__r.Ext__c FROM Thing__c "
        "WHERE (Flag__c = true) AND (SystemModstamp > 2026-01-01T00:00:00Z)")
    data = table(Id=["a0X1"], Amount__c=["12.5"], Day__c=["2026-01-05"], Flag__c=["true"],
                 **{"Parent__r.Ext__c": ["b1:ST-1"]})
    out = compiled.apply(data, biller="b1")
    assert out.to_records() == [{"correlatorId": "a0X1", "totalAmount": {"value": 12.5, "unit": "EUR"},
                                 "paymentDate": "2026-01-05T00:00:00.000Z", "flag": True, "bill": {"id": "ST-1"}}]
    assert out.rows.column("_key").to_pylist() == ["b1:a0X1"]


@pytest.mark.parametrize("template", ["{biller}:{p}", "{p}-x", "<{biller}|{p}>", "{p}", "pre {p}{biller}", "{p}/{id}"])
def test_templates_of_every_shape_match_the_joined_text(template: str) -> None:
    """Fixed text around one column takes a faster path: same text, and null wherever the column is null."""
    fields = f'  Ext__c: {{template: "{{biller}}:{{id}}"}}\n  Name: {{template: "{template}"}}\n'
    out = compile_mapping(mapping(fields, BASE), DESCRIBE).apply(table(id=["1", "2", "3"], p=["P1", None, "ü"]), biller="b1")
    want = [template.replace("{biller}", "b1").replace("{p}", p).replace("{id}", i) if p else None
            for i, p in (("1", "P1"), ("2", None), ("3", "ü"))]
    assert col(out, "Name") == want  # a template with an empty column is empty
