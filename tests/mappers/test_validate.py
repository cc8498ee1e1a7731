"""Broken mappings: each problem is reported with file:line:col, the key path and a clear message."""

from __future__ import annotations

import pytest

from sfsync.errors import MappingError
from sfsync.mappers import compile_mapping, describer, load_mapping_text, validate_mapping

from .conftest import DESCRIBE


def problems_of(text: str, with_describe: bool = True, columns: dict[str, str] | None = None) -> list[str]:
    try:
        m = load_mapping_text(text, "broken.yaml")
    except MappingError as exc:
        return exc.problems
    return validate_mapping(m, describer(DESCRIBE) if with_describe else None, columns=columns)


HEAD = """\
version: 1
name: t.broken
source:
  entity: things
  columns: {id: string, amount: decimal, acct: string}
target: {sobject: Thing__c}
key: {external_id: Ext__c}
fields:
  Ext__c: {template: "{biller}:{id}"}
  Name: id
"""

CASES = [
    # (name, extra YAML appended to HEAD (or a whole file), expected problem)
    ("unknown key (typo)", "  Amount__c: {sorce: amount}\n",
     "broken.yaml:11:15: fields.Amount__c.sorce: unknown key"),
    ("bad operation literal", HEAD.replace("key:", "operation: merge\nkey:"),
     "broken.yaml:7:1: operation: Input should be 'insert', 'upsert', 'update' or 'delete' (got 'merge')"),
    ("unknown function", "  Amount__c: {formula: 'FOO(amount)'}\n",
     "broken.yaml:11:15: fields.Amount__c.formula: unknown function FOO() in formula 'FOO(amount)'"),
    ("formula syntax", "  Amount__c: {formula: 'amount * * 2'}\n",
     "broken.yaml:11:15: fields.Amount__c.formula: unexpected '*' at column 10 in formula 'amount * * 2'"),
    ("unknown source column", "  Amount__c: amont\n",
     "broken.yaml:11:3: fields.Amount__c.source: unknown source column 'amont' (not in the biller's columns: acct, amount, id)"),
    ("unknown target field", "  Amount_c: amount\n",
     "broken.yaml:11:3: fields.Amount_c: Thing__c has no field Amount_c"),
    ("not writable", "  Total__c: amount\n",
     "broken.yaml:11:3: fields.Total__c: Thing__c.Total__c is a formula and cannot be written"),
    ("value map target not a picklist value", "  Kind__c: {source: id, value_map: {U: Usagee}}\n",
     "broken.yaml:11:37: fields.Kind__c.value_map.U: 'Usagee' is not a value of picklist Kind__c (Billed, Service, Usage)"),
    ("match key not an external id", HEAD.replace("{external_id: Ext__c}", "{external_id: Name}")
     .replace('Ext__c: {template: "{biller}:{id}"}\n  Name: id', 'Name: {template: "{biller}:{id}"}'),
     "broken.yaml:7:7: key.external_id: Thing__c.Name is not an External ID field; use key.fields for a composite key"),
    ("required field not covered", HEAD.replace("  Name: id\n", ""),
     "broken.yaml:8:1: fields: required field Thing__c.Name is not mapped"),
    ("external id without biller", HEAD.replace('{template: "{biller}:{id}"}', "id"),
     "broken.yaml:9:3: fields.Ext__c: the external-ID key must include the biller"),
    ("incompatible constant", "  Amount__c: {constant: lots}\n",
     "broken.yaml:11:15: fields.Amount__c.constant: 'lots' does not fit Amount__c (Currency(18,2)): INVALID_NUMBER"),
    ("template into a number field", "  Count__c: {template: '{id}-x'}\n",
     "broken.yaml:11:14: fields.Count__c.template: a template makes text; Count__c is Number(18,0)"),
    ("two producers", "  Amount__c: {source: amount, constant: 1}\n",
     "broken.yaml:11:3: fields.Amount__c: give exactly one of source, template, formula, constant (got source, constant)"),
    ("list path without aggregate", "  Amount__c: 'acct[].v'\n",
     "fields.Amount__c.source: acct[].v is a list per row ([]): add aggregate"),
    ("lookup to the wrong object", "  Account__c: {source: acct, lookup: {sobject: Contact, field: Email}}\n",
     "broken.yaml:11:39: fields.Account__c.lookup.sobject: Account__c points to Account, not Contact"),
    ("relationship to a non-external-id field", "  Parent__r.Plain__c: id\n",
     "broken.yaml:11:3: fields.Parent__r.Plain__c: Parent__c.Plain__c is not an External ID"),
    ("unknown record type", HEAD.replace("key:", "record_type: Huge\nkey:"),
     "broken.yaml:7:1: record_type: Thing__c has no record type 'Huge' (known: Big)"),
    ("duplicate key", HEAD + "  Name: acct\n", "broken.yaml:11:3: fields.Name: duplicate key"),
    ("batch size over the REST limit", HEAD.replace("key:", "load: {api: rest, batch_size: 500}\nkey:"),
     "broken.yaml:7:19: load.batch_size: 500 is above the rest limit of 200 records"),
]


@pytest.mark.parametrize(("name", "extra", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_mapping_reports_position_and_message(name: str, extra: str, expected: str) -> None:
    text = extra if extra.startswith("version:") else HEAD + extra
    found = problems_of(text)
    assert any(expected in p for p in found), f"{name}: {found}"


def test_every_problem_is_listed_at_once():
    text = HEAD + "  Amount__c: {formula: 'FOO(amount)'}\n  Nope__c: id\n  Kind__c: {source: id, value_map: {U: X}}\n"
    found = problems_of(text)
    assert len(found) == 3
    assert all(p.startswith("broken.yaml:") for p in found)


def test_compile_raises_mapping_error_with_all_problems():
    m = load_mapping_text(HEAD + "  Nope__c: id\n  Amount__c: {formula: 'BAR()'}\n", "broken.yaml")
    with pytest.raises(MappingError) as info:
        compile_mapping(m, DESCRIBE)
    assert len(info.value.problems) == 2


EXPORT_HEAD = """\
version: 1
name: t.export
direction: export
source:
  sobject: vlocity_cmt__PaymentMethod__c
  fields: [Id, vlocity_cmt__PaymentMethodIdentifier__c, vlocity_cmt__CardNumber__c]
target: {entity: payment_methods}
key: {fields: [Id]}
fields:
  token: vlocity_cmt__PaymentMethodIdentifier__c
  pan: vlocity_cmt__CardNumber__c
"""


def test_export_refuses_card_and_bank_numbers():
    found = problems_of(EXPORT_HEAD, with_describe=False)
    assert "broken.yaml:6:57: source.fields.2: vlocity_cmt__CardNumber__c holds card or bank numbers and must never be exported" in found
    assert any(p.startswith("broken.yaml:11:3: fields.pan.source:") and "must never be exported" in p for p in found)
    formula = EXPORT_HEAD.replace("  pan: vlocity_cmt__CardNumber__c\n",
                                  "  x: {formula: 'RIGHT(vlocity_cmt__BankAccountNumber__c, 4)'}\n")
    assert any("vlocity_cmt__BankAccountNumber__c holds card or bank numbers" in p for p in problems_of(formula, False))
