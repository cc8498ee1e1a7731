"""Load order from references."""

from __future__ import annotations

import pytest

from sfsync.errors import MappingError
from sfsync.mappers import load_mappings, plan_order
from sfsync.mappers.loader import load_mapping_text


def m(name: str, sobject: str, fields: str):  # type: ignore[no-untyped-def]
    return load_mapping_text(f"""\
version: 1
name: {name}
source: {{entity: {name}}}
target: {{sobject: {sobject}}}
key: {{external_id: Ext__c}}
fields:
  Ext__c: {{template: "{{biller}}:{{id}}"}}
{fields}""", f"{name}.yaml")


def test_shipped_mappings_order_parents_first():
    names = [x.name for x in plan_order(load_mappings(["mappings/files"]))]
    assert names.index("files.accounts") < names.index("files.statements") < names.index("files.line_items")
    assert names.index("files.line_items") < names.index("files.disputes")
    assert names.index("files.accounts") < names.index("files.balances")


def test_order_is_stable_and_ignores_self_references():
    a = m("a", "A__c", "  Self__c: {source: p, lookup: {sobject: A__c, field: Ext__c}}\n")
    b = m("b", "B__c", "  A__r.Ext__c: x\n")
    c = m("c", "C__c", "")
    assert [x.name for x in plan_order([b, c, a])] == ["c", "a", "b"]


def test_cycle_names_the_mappings():
    a = m("a", "A__c", "  B__r.Ext__c: x\n")
    b = m("b", "B__c", "  A__r.Ext__c: x\n")
    with pytest.raises(MappingError, match="reference cycle between mappings: a -> b -> a") as info:
        plan_order([a, b])
    assert info.value.problems[0].startswith("a.yaml:")
