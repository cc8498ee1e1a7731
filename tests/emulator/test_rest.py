"""REST through the unmodified simple-salesforce client: describe, CRUD, upsert, collections, query."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST

BASE = f"https://{DEFAULT_HOST}"

STMT = "vlocity_cmt__Statement__c"
SLI = "vlocity_cmt__StatementLineItem__c"
EXT = "vlocity_cmt__ExternalID__c"


def test_describe_global_and_object(sf: Any, org: Org) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Account", STMT, SLI, "vlocity_cmt__BillingDataTrim__c", "RecordType", "User", "Case"} <= names
    desc = sf.vlocity_cmt__statementlineitem__c.describe()  # object names are case-insensitive
    assert desc["name"] == SLI and desc["keyPrefix"] == "a3U"
    fields = {f["name"]: f for f in desc["fields"]}
    assert fields[EXT]["externalId"] and fields[EXT]["unique"] and fields[EXT]["length"] == 80
    assert fields["vlocity_cmt__Amount__c"]["precision"] == 18 and fields["vlocity_cmt__Amount__c"]["scale"] == 0
    assert fields["vlocity_cmt__StatementId__c"]["relationshipName"] == "vlocity_cmt__StatementId__r"
    assert fields["vlocity_cmt__StatementId__c"]["cascadeDelete"] is True
    assert fields["vlocity_cmt__Category__c"]["restrictedPicklist"] is True
    assert [p["value"] for p in fields["vlocity_cmt__Category__c"]["picklistValues"]][:2] == ["Usage", "Rollover"]
    assert fields["vlocity_cmt__AccountId__c"]["calculated"] and not fields["vlocity_cmt__AccountId__c"]["createable"]
    assert fields["Name"]["autoNumber"] and not fields["Name"]["updateable"]
    account = sf.Account.describe()
    assert fields_of(account)["AccountNumber"]["idLookup"] and not fields_of(account)["AccountNumber"]["externalId"]
    rts = {r["developerName"]: r["recordTypeId"] for r in account["recordTypeInfos"]}
    assert rts["Billing"] == org.record_type_ids("Account")["Billing"] and "Master" in rts
    stmt_children = {c["relationshipName"] for c in sf.vlocity_cmt__Statement__c.describe()["childRelationships"]}
    assert "vlocity_cmt__StatementLineItems__r" in stmt_children


def fields_of(desc: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f for f in desc["fields"]}


def test_unknown_object_is_404(sf: Any) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Nope__c.describe()
    assert exc.value.content[0]["errorCode"] == "NOT_FOUND"


def test_crud(sf: Any, account_id: str) -> None:
    rec = sf.Account.get(account_id)
    assert rec["attributes"]["type"] == "Account" and rec["Name"] == "Acme" and rec["Id"] == account_id
    assert sf.Account.update(account_id, {"Phone": "555"}) == 204
    assert sf.Account.get(account_id)["Phone"] == "555"
    assert sf.Account.delete(account_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(account_id)
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.delete(account_id)
    assert exc.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_upsert_and_get_by_external_id(sf: Any, account_id: str) -> None:
    body = {"Name": "S1", "vlocity_cmt__AccountId__c": account_id}
    assert sf.vlocity_cmt__Statement__c.upsert(f"{EXT}/ST-1", body) == 201
    assert sf.vlocity_cmt__Statement__c.upsert(f"{EXT}/ST-1", {"Name": "S1 renamed"}) == 200
    raw = sf.vlocity_cmt__Statement__c.upsert(f"{EXT}/ST-1", {"Name": "again"}, raw_response=True)
    assert raw.json()["created"] is False and raw.json()["success"] is True
    got = sf.vlocity_cmt__Statement__c.get_by_custom_id(EXT, "ST-1")
    assert got["Name"] == "again"
    with pytest.raises(SalesforceResourceNotFound):
        sf.vlocity_cmt__Statement__c.get_by_custom_id(EXT, "ST-404")
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.vlocity_cmt__Statement__c.upsert("Nope__c/1", {"Name": "x"})
    assert "Provided external ID field does not exist" in exc.value.content[0]["message"]


def test_upsert_with_nested_parent_reference(sf: Any, account_id: str) -> None:
    body = {"Name": "S2", "vlocity_cmt__AccountId__r": {"AccountNumber": "A-1"}}
    assert sf.vlocity_cmt__Statement__c.upsert(f"{EXT}/ST-2", body) == 201


def test_upsert_300_when_several_records_match(sf: Any, account_id: str) -> None:
    pm = "vlocity_cmt__PaymentMethod__c"
    for _ in range(2):
        sf.__getattr__(pm).create({"vlocity_cmt__AccountId__c": account_id, "vlocity_cmt__PaymentMethodIdentifier__c": "tok"})
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.__getattr__(pm).upsert("vlocity_cmt__PaymentMethodIdentifier__c/tok", {"vlocity_cmt__IsPrimary__c": True})
    assert len(exc.value.content) == 2


def test_validation_error_shape(sf: Any, account_id: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.vlocity_cmt__Statement__c.create({"vlocity_cmt__AccountId__c": account_id})
    assert exc.value.content == [{"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING",
                                  "fields": ["Name"]}]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.vlocity_cmt__Statement__c.create({"Name": "x", "vlocity_cmt__AccountId__c": account_id,
                                             "vlocity_cmt__Status__c": "Lost"})
    assert exc.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_collections_create_upsert_delete(sf: Any, account_id: str) -> None:
    recs = [{"attributes": {"type": STMT}, "Name": f"S{i}", EXT: f"ST-{i}", "vlocity_cmt__AccountId__c": account_id}
            for i in range(3)]
    recs[1]["vlocity_cmt__StatementMonth__c"] = 123  # Number(2,0): out of range
    out = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": recs})
    assert [r["success"] for r in out] == [True, False, True]
    assert out[1]["errors"] == [{"statusCode": "NUMBER_OUTSIDE_VALID_RANGE", "fields": ["vlocity_cmt__StatementMonth__c"],
                                 "message": "Statement Month: value outside of valid range on numeric field: 123"}]
    recs[1]["vlocity_cmt__StatementMonth__c"] = 12
    up = sf.restful(f"composite/sobjects/{STMT}/{EXT}", method="PATCH", json={"allOrNone": True, "records": recs})
    assert [(r["success"], r["created"]) for r in up] == [(True, False), (True, True), (True, False)]
    ids = ",".join(r["id"] for r in up)
    gone = sf.restful("composite/sobjects", method="DELETE", params={"ids": ids})
    assert all(r["success"] for r in gone)


def test_collections_all_or_none_and_limit(sf: Any, org: Org, account_id: str) -> None:
    recs = [{"attributes": {"type": STMT}, "Name": "ok", "vlocity_cmt__AccountId__c": account_id},
            {"attributes": {"type": STMT}, "vlocity_cmt__AccountId__c": account_id}]
    out = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": recs})
    assert [r["errors"][0]["statusCode"] for r in out] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUIRED_FIELD_MISSING"]
    assert org.records(STMT) == []
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json={"records": recs * 101})
    assert exc.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_query_all_pages_and_query_all_sees_deleted(sf: Any, org: Org, account_id: str) -> None:
    rows = [{"Name": f"S{i}", EXT: f"ST-{i}", "vlocity_cmt__AccountId__c": account_id} for i in range(450)]
    org.dml(STMT, "insert", rows)
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(f"SELECT Id, Name FROM {STMT}", headers=headers)
    assert first["totalSize"] == 450 and not first["done"] and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    everything = sf.query_all(f"SELECT Id, Name FROM {STMT}", headers=headers)
    assert len(everything["records"]) == 450 and len({r["Id"] for r in everything["records"]}) == 450
    sf.vlocity_cmt__Statement__c.delete(everything["records"][0]["Id"])
    assert sf.query(f"SELECT COUNT() FROM {STMT}")["totalSize"] == 449
    assert sf.query_all(f"SELECT Id FROM {STMT} WHERE IsDeleted = true", include_deleted=True)["totalSize"] == 1
    assert sf.query("SELECT Id, DeveloperName, SobjectType FROM RecordType")["totalSize"] == 9


def test_bad_query_is_malformed(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELEC Id FROM Account")
    assert exc.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_limits_decrease_and_header(sf: Any) -> None:
    first = sf.limits()["DailyApiRequests"]["Remaining"]
    second = sf.limits()["DailyApiRequests"]["Remaining"]
    assert second == first - 1
    assert sf.api_usage["api-usage"].used >= 2


def test_versions_list(http: requests.Session) -> None:
    versions = http.get(f"{BASE}/services/data/").json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


def test_get_deleted_record_says_so(sf: Any, account_id: str) -> None:
    sf.Account.delete(account_id)
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Account.get(account_id)
    assert exc.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_route_requests_catches_module_level_calls(org: Org, token: str) -> None:
    from sfsync.emulator.testing import route_requests

    with route_requests(org):
        resp = requests.get(f"{BASE}/services/data/v59.0/limits/", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and "DailyApiRequests" in resp.json()
