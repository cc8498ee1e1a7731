"""Hand-written describe bodies (Salesforce's shape) and small helpers for mapper tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from sfsync.mappers import load_mapping_text


def fld(name: str, type_: str = "string", **kw: Any) -> dict[str, Any]:
    """One describe field entry with Salesforce's defaults for a writable custom field."""
    base = {"name": name, "type": type_, "length": 80 if type_ == "string" else 0, "precision": 0, "scale": 0,
            "nillable": True, "createable": True, "updateable": True, "externalId": False, "unique": False,
            "idLookup": False, "referenceTo": [], "relationshipName": None, "picklistValues": [],
            "restrictedPicklist": False, "calculated": False, "autoNumber": False, "defaultedOnCreate": False}
    base.update(kw)
    return base


def picklist(name: str, values: list[str], restricted: bool = True) -> dict[str, Any]:
    return fld(name, "picklist", length=255, restrictedPicklist=restricted,
               picklistValues=[{"value": v, "label": v, "active": True} for v in values])


DESCRIBE: dict[str, dict[str, Any]] = {
    "Thing__c": {
        "name": "Thing__c",
        "fields": [
            fld("Id", "id", length=18, nillable=False, createable=False, updateable=False, idLookup=True,
                defaultedOnCreate=True),
            fld("Name", "string", length=80, nillable=False),
            fld("Ext__c", "string", externalId=True, idLookup=True),
            fld("Amount__c", "currency", precision=18, scale=2),
            fld("Count__c", "double", precision=18, scale=0),
            fld("Pct__c", "percent", precision=5, scale=2),
            fld("Day__c", "date"),
            fld("When__c", "datetime"),
            fld("Flag__c", "boolean", nillable=False, defaultedOnCreate=True),
            fld("Short__c", "string", length=5),
            picklist("Kind__c", ["Usage", "Service", "Billed"]),
            picklist("Loose__c", ["A", "B"], restricted=False),
            fld("Account__c", "reference", length=18, referenceTo=["Account"], relationshipName="Account__r"),
            fld("Parent__c", "reference", length=18, referenceTo=["Parent__c"], relationshipName="Parent__r"),
            fld("Self__c", "reference", length=18, referenceTo=["Thing__c"], relationshipName="Self__r"),
            fld("Total__c", "currency", precision=18, scale=2, calculated=True, createable=False, updateable=False),
        ],
        "recordTypeInfos": [
            {"recordTypeId": "012000000000001AAA", "developerName": "Big", "name": "Big", "active": True, "master": False},
            {"recordTypeId": "012000000000000AAA", "developerName": "Master", "name": "Master", "active": True, "master": True},
        ],
    },
    "Parent__c": {"name": "Parent__c", "fields": [fld("Id", "id", length=18, createable=False, updateable=False),
                                                    fld("Ext__c", "string", externalId=True, idLookup=True),
                                                    fld("Plain__c", "string")]},
    "Account": {"name": "Account", "fields": [fld("Id", "id", length=18, createable=False, updateable=False),
                                                fld("AccountNumber", "string", length=40)]},
}

BASE = """\
version: 1
name: t.things
source:
  entity: things
target: {sobject: Thing__c}
operation: upsert
key: {external_id: Ext__c}
"""


def mapping(fields: str, head: str = BASE, file: str = "things.yaml"):  # type: ignore[no-untyped-def]
    """A mapping from BASE plus a `fields:` block (indented YAML text)."""
    return load_mapping_text(head + "fields:\n" + fields, file)


def table(**cols: list[Any]) -> pa.Table:
    n = len(next(iter(cols.values())))
    data = {k: pa.array(v) for k, v in cols.items()}
    data["_source"] = pa.array([f"in.csv:{i + 2}" for i in range(n)])
    return pa.table(data)


@pytest.fixture
def describe() -> dict[str, dict[str, Any]]:
    return DESCRIBE
