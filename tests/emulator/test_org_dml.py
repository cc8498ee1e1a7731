"""The Org's DML engine: Salesforce's codes and messages, system fields, cascades, formulas."""

from __future__ import annotations

import re

import pytest

from sfsync.emulator.errors import SfApiError
from sfsync.emulator.ids import checksum, normalize_id
from sfsync.emulator.org import Org

SLI = "vlocity_cmt__StatementLineItem__c"
STMT = "vlocity_cmt__Statement__c"
EXT = "vlocity_cmt__ExternalID__c"
STMT_REL = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"


@pytest.fixture
def acct(org: Org) -> str:
    result = org.dml("Account", "insert", [{"Name": "Acme", "AccountNumber": "A-1"}])[0]
    assert result.success
    return str(result.id)


@pytest.fixture
def stmt(org: Org, acct: str) -> str:
    result = org.dml(STMT, "upsert", [{"Name": "S1", EXT: "ST-1", "vlocity_cmt__AccountId__c": acct,
                                       "vlocity_cmt__BalanceDue__c": "200", "vlocity_cmt__AdditionalDiscount__c": "10"}],
                     EXT)[0]
    assert result.success, result.errors
    return str(result.id)


def codes(results: list) -> list[str | None]:  # type: ignore[type-arg]
    return [r.errors[0].status_code if r.errors else None for r in results]


def test_checksum_algorithm() -> None:
    assert checksum("a" * 15) == "AAA"
    assert checksum("ABCDE" * 3) == "555"
    assert checksum("A0000" + "0B000" + "0000C") == "BCQ"
    assert normalize_id("001" + "a" * 12) == "001" + "a" * 12 + checksum("001" + "a" * 12)
    assert normalize_id("not-an-id") is None


def test_system_fields_and_ids(org: Org, acct: str) -> None:
    rec = org.get("account", acct)
    assert rec is not None
    assert re.fullmatch(r"001[0-9A-Za-z]{12}[A-Z0-5]{3}", acct)
    assert acct[15:] == checksum(acct[:15])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", rec["CreatedDate"])
    assert rec["SystemModstamp"] == rec["LastModifiedDate"] == rec["CreatedDate"]
    assert rec["IsDeleted"] is False
    assert rec["CreatedById"] == org.admin_user_id == rec["OwnerId"]
    assert rec["ParentId"] is None  # every field present on get, blanks as None


def test_autonumber_formula_and_checkbox_default(org: Org, stmt: str, acct: str) -> None:
    results = org.dml(SLI, "insert", [{STMT_REL: "ST-1", EXT: "L1"}, {STMT_REL: "st-1", EXT: "L2"}], api="bulk2")
    assert codes(results) == [None, None]
    first = org.get(SLI, str(results[0].id))
    assert first is not None
    assert first["Name"] == "SLI-000000001"
    assert org.get(SLI, str(results[1].id))["Name"] == "SLI-000000002"  # type: ignore[index]
    assert first["vlocity_cmt__CurrentMonthToDate__c"] is False
    assert first["vlocity_cmt__AccountId__c"] == acct  # formula: the statement's account
    assert org.get(STMT, stmt)["vlocity_cmt__TotalBalanceDue__c"] == 180.0  # type: ignore[index]


def test_formula_follows_its_inputs(org: Org, stmt: str) -> None:
    org.dml(STMT, "update", [{"Id": stmt, "vlocity_cmt__AdditionalDiscount__c": 50}])
    assert org.get(STMT, stmt)["vlocity_cmt__TotalBalanceDue__c"] == 100.0  # type: ignore[index]


def test_upsert_created_then_updated(org: Org, stmt: str) -> None:
    first = org.dml(SLI, "upsert", [{STMT_REL: "ST-1", EXT: "L1", "vlocity_cmt__Amount__c": "5"}], EXT, api="bulk2")[0]
    second = org.dml(SLI, "upsert", [{STMT_REL: "ST-1", EXT: "l1", "vlocity_cmt__Amount__c": "6"}], EXT, api="bulk2")[0]
    assert first.created and not second.created and first.id == second.id
    assert org.get(SLI, str(first.id))["vlocity_cmt__Amount__c"] == 6.0  # type: ignore[index]


def test_bulk_blank_keeps_value_and_na_sets_null(org: Org, stmt: str) -> None:
    rid = org.dml(SLI, "upsert", [{STMT_REL: "ST-1", EXT: "L1", "vlocity_cmt__Type__c": "Call"}], EXT, api="bulk2")[0].id
    org.dml(SLI, "upsert", [{STMT_REL: "ST-1", EXT: "L1", "vlocity_cmt__Type__c": ""}], EXT, api="bulk2")
    assert org.get(SLI, str(rid))["vlocity_cmt__Type__c"] == "Call"  # type: ignore[index]
    org.dml(SLI, "upsert", [{STMT_REL: "ST-1", EXT: "L1", "vlocity_cmt__Type__c": "#N/A"}], EXT, api="bulk2")
    assert org.get(SLI, str(rid))["vlocity_cmt__Type__c"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("row", "code", "message"),
    [
        ({EXT: "X1"}, "REQUIRED_FIELD_MISSING", "Required fields are missing: [vlocity_cmt__StatementId__c]"),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__Amount__c": "5.5"}, "NUMBER_OUTSIDE_VALID_RANGE",
         "Amount: value outside of valid range on numeric field: 5.5"),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__Amount__c": "1e19"}, "NUMBER_OUTSIDE_VALID_RANGE", None),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__Amount__c": "abc"}, "INVALID_TYPE_ON_FIELD_IN_RECORD",
         "Amount: value not of required type: abc"),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__StatementDate__c": "2026-02-30"}, "INVALID_TYPE_ON_FIELD_IN_RECORD",
         "Statement Date: value not of required type: 2026-02-30"),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__Category__c": "Bogus"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
         "Category: bad value for restricted picklist field: Bogus"),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__UOM__c": "x" * 81}, "STRING_TOO_LONG",
         f"UOM: data value too large: {'x' * 81} (max length=80)"),
        ({STMT_REL: "ST-9", EXT: "X1"}, "INVALID_FIELD",
         "Foreign key external ID: ST-9 not found for field vlocity_cmt__ExternalID__c in entity vlocity_cmt__Statement__c"),
        ({STMT_REL: "ST-1", EXT: "X1", "Name": "SLI-1"}, "INVALID_FIELD_FOR_INSERT_UPDATE", None),
        ({STMT_REL: "ST-1", EXT: "X1", "vlocity_cmt__AccountId__c": "x"}, "INVALID_FIELD_FOR_INSERT_UPDATE", None),
        ({STMT_REL: "ST-1", EXT: "X1", "Bogus__c": "1"}, "INVALID_FIELD",
         "No such column 'Bogus__c' on sobject of type vlocity_cmt__StatementLineItem__c"),
    ],
)
def test_row_validation(org: Org, stmt: str, row: dict[str, str], code: str, message: str | None) -> None:
    result = org.dml(SLI, "upsert", [row], EXT, api="bulk2")[0]
    assert not result.success and result.id is None
    assert result.errors[0].status_code == code
    if message is not None:
        assert result.errors[0].message == message


def test_wrong_lookup_target_and_unknown_id(org: Org, stmt: str, acct: str) -> None:
    wrong = org.dml(SLI, "insert", [{"vlocity_cmt__StatementId__c": acct}])[0]
    assert wrong.errors[0].status_code == "FIELD_INTEGRITY_EXCEPTION"
    ghost = stmt[:3] + "8d0ZZZZZZZZZ"
    missing = org.dml(SLI, "insert", [{"vlocity_cmt__StatementId__c": ghost}])[0]
    assert missing.errors[0].status_code == "INVALID_CROSS_REFERENCE_KEY"
    bad = org.dml(SLI, "insert", [{"vlocity_cmt__StatementId__c": "nope"}])[0]
    assert bad.errors[0].status_code == "MALFORMED_ID"


def test_duplicate_external_ids_in_one_call_fail_every_such_row(org: Org, stmt: str) -> None:
    rows = [{STMT_REL: "ST-1", EXT: "D1"}, {STMT_REL: "ST-1", EXT: "D2"}, {STMT_REL: "ST-1", EXT: "d1"}]
    results = org.dml(SLI, "upsert", rows, EXT)
    assert codes(results) == ["DUPLICATE_VALUE", None, "DUPLICATE_VALUE"]
    assert results[0].errors[0].message == "Duplicate external id specified: D1"
    assert results[0].errors[0].fields == [EXT]


def test_unique_field_duplicate_value(org: Org, stmt: str) -> None:
    org.dml(SLI, "insert", [{STMT_REL: "ST-1", EXT: "U1"}])
    result = org.dml(SLI, "insert", [{STMT_REL: "ST-1", EXT: "U1"}])[0]
    assert result.errors[0].status_code == "DUPLICATE_VALUE"
    assert result.errors[0].message.startswith("duplicate value found: vlocity_cmt__ExternalID__c duplicates value on "
                                               "record with id: a3U")


def test_all_or_none_rolls_back(org: Org, stmt: str) -> None:
    results = org.dml(SLI, "insert", [{STMT_REL: "ST-1"}, {STMT_REL: "ST-404"}], all_or_none=True)
    assert codes(results) == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "INVALID_FIELD"]
    assert org.records(SLI) == []


def test_soft_delete_cascades_and_undelete_restores(org: Org, acct: str, stmt: str) -> None:
    line = org.dml(SLI, "insert", [{STMT_REL: "ST-1", EXT: "L1"}])[0].id
    assert org.dml("Account", "delete", [{"Id": acct}])[0].success
    assert org.records(STMT) == [] and org.records(SLI) == []
    assert [r["Id"] for r in org.records(SLI, include_deleted=True)] == [line]
    assert org.by_id(str(line))["IsDeleted"] is True  # type: ignore[index]
    assert codes(org.dml("Account", "delete", [{"Id": acct}])) == ["ENTITY_IS_DELETED"]
    # A deleted parent can no longer be found by external ID.
    assert codes(org.dml(SLI, "insert", [{STMT_REL: "ST-1"}])) == ["INVALID_FIELD"]
    updated = org.dml(SLI, "update", [{"Id": line, "vlocity_cmt__Type__c": "x"}])[0]
    assert updated.errors[0].status_code == "ENTITY_IS_DELETED"
    assert org.dml("Account", "undelete", [{"Id": acct}])[0].success
    assert [r["Id"] for r in org.records(SLI)] == [line]


def test_hard_delete_removes_children(org: Org, acct: str, stmt: str) -> None:
    org.dml(SLI, "insert", [{STMT_REL: "ST-1", EXT: "L1"}])
    assert org.dml(STMT, "hardDelete", [{"Id": stmt}])[0].success
    assert org.records(SLI, include_deleted=True) == []
    assert org.by_id(stmt) is None


def test_lookup_is_cleared_when_target_deleted(org: Org, acct: str, stmt: str) -> None:
    asset = org.dml("Asset", "insert", [{"Name": "Phone", "AccountId": acct}])[0].id
    line = org.dml(SLI, "insert", [{STMT_REL: "ST-1", "vlocity_cmt__AssetId__c": asset}])[0].id
    org.dml("Asset", "delete", [{"Id": asset}])
    assert org.get(SLI, str(line))["vlocity_cmt__AssetId__c"] is None  # type: ignore[index]


def test_record_type_and_idlookup_relationship(org: Org) -> None:
    rt = org.record_type_ids("Account")["Billing"]
    result = org.dml("Account", "insert", [{"Name": "B", "RecordTypeId": rt}])[0]
    assert result.success
    case_rt = org.record_type_ids("Case")["vlocity_cmt__Billing"]
    wrong = org.dml("Account", "insert", [{"Name": "C", "RecordTypeId": case_rt}])[0]
    assert wrong.errors[0].status_code == "INVALID_CROSS_REFERENCE_KEY"


def test_request_level_errors(org: Org) -> None:
    with pytest.raises(SfApiError) as exc:
        org.dml("Nope__c", "insert", [{}])
    assert exc.value.status == 404 and exc.value.code == "NOT_FOUND"
    with pytest.raises(SfApiError) as exc:
        org.dml(SLI, "upsert", [{}], "vlocity_cmt__UOM__c")
    assert exc.value.code == "INVALID_FIELD"


def test_find_by_and_records(org: Org, acct: str) -> None:
    assert [r["Id"] for r in org.find_by("Account", "accountnumber", "a-1")] == [acct]
    assert [r["Id"] for r in org.find_by("Account", "Name", "Acme")] == [acct]
    assert org.by_id(acct[:15])["Id"] == acct  # type: ignore[index]


def test_lock_faults(org: Org, stmt: str) -> None:
    org.faults.update({"lock_error_rate": 1.0})
    assert codes(org.dml(SLI, "insert", [{STMT_REL: "ST-1"}])) == ["UNABLE_TO_LOCK_ROW"]
    org.faults.update({"lock_error_rate": 0, "lock_contention": {"enabled": True}})
    assert org.faults.should_lock(stmt, concurrent=True)
    assert not org.faults.should_lock(stmt, concurrent=False)
    locked = org.dml(SLI, "insert", [{STMT_REL: "ST-1"}], parent_lock=lambda pid: pid == stmt)[0]
    assert locked.errors[0].status_code == "UNABLE_TO_LOCK_ROW" and stmt in locked.errors[0].message


def test_counters_and_limits(org: Org, acct: str) -> None:
    before = org.limits()["DailyApiRequests"]["Remaining"]
    org.record_call("rest")
    assert org.limits()["DailyApiRequests"]["Remaining"] == before - 1
    org.dml("Account", "insert", [{"Name": "x"}], api="bulk2")
    assert org.counters["records_ingested"] == 1 and org.counters["rest"] == 1
    org.faults.update({"daily_request_limit": 1})
    with pytest.raises(SfApiError) as exc:
        org.record_call("rest")
    assert (exc.value.status, exc.value.code, exc.value.message) == (403, "REQUEST_LIMIT_EXCEEDED",
                                                                     "TotalRequests Limit exceeded.")


def test_reset_keeps_seed_data(org: Org, acct: str) -> None:
    org.reset()
    assert org.records("Account") == []
    assert len(org.records("RecordType")) == 9 and len(org.records("User")) == 1
