"""The emulator's SOQL engine: what a client of query/queryAll and bulk query jobs sees."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sfsync.emulator.org import Org
from sfsync.emulator.soql import QueryResult, SoqlError, execute, flat_row, parse
from sfsync.emulator.soql_parse import unescape

SLI = "vlocity_cmt__StatementLineItem__c"
STMT = "vlocity_cmt__Statement__c"
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the org: inserts stamp CreatedDate, date literals read "today"."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def insert(org: Org, sobject: str, **values: Any) -> str:
    (result,) = org.dml(sobject, "insert", [values])
    assert result.success, result.errors
    assert result.id is not None
    return result.id


def id_of(org: Org, sobject: str, name: str) -> str:
    (rec,) = org.find_by(sobject, "Name", name)
    return str(rec["Id"])


@pytest.fixture
def org() -> Org:
    clock = Clock(datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    org = Org(clock=clock)
    acme = insert(org, "Account", Name="Acme", AccountNumber="A-1", AnnualRevenue=1000, NumberOfEmployees=10)
    beta = insert(org, "Account", Name="beta", AccountNumber="A-2", ParentId=acme)
    clock.now = datetime(2026, 2, 10, 8, 30, tzinfo=UTC)
    insert(org, "Account", Name="Gamma_co", ParentId=acme, AnnualRevenue=50)
    clock.now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    s1 = insert(org, STMT, Name="S1", vlocity_cmt__AccountId__c=acme, vlocity_cmt__ExternalID__c="ST-1",
                vlocity_cmt__StatementDate__c="2026-02-28", vlocity_cmt__BalanceDue__c=10.5,
                vlocity_cmt__Status__c="Approved")
    s2 = insert(org, STMT, Name="S2", vlocity_cmt__AccountId__c=beta, vlocity_cmt__ExternalID__c="ST-2",
                vlocity_cmt__StatementDate__c="2026-03-14", vlocity_cmt__Status__c="Pending")
    # Line items are named by the org's autonumber: SLI-000000002 .. SLI-000000005.
    for i, (stmt, cat, amount, sdate) in enumerate([
        (s1, "Usage", 0.1, "2026-02-01"), (s1, "Usage", 0.2, "2026-02-02"), (s1, "Billed", 5.0, None),
        (s2, "Service", 7.25, "2026-03-01"), (s2, None, None, "2026-03-15"),
    ]):
        insert(org, SLI, vlocity_cmt__StatementId__c=stmt, vlocity_cmt__ExternalID__c=f"L-{i}",
               vlocity_cmt__Category__c=cat, vlocity_cmt__CurrencyAmount__c=amount,
               vlocity_cmt__ServiceStartDate__c=sdate, vlocity_cmt__Amount__c=i)
    clock.now = NOW
    return org


def names(result: QueryResult, key: str = "Name") -> list[Any]:
    return [r[key] for r in result.records]


def error(org: Org, soql: str, **kw: Any) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        execute(org, soql, **kw)
    assert info.value.status == 400
    return info.value


# ---------------------------------------------------------------------------- shape


def test_records_have_rest_shape_and_canonical_names(org: Org) -> None:
    res = execute(org, "select id, NAME from ACCOUNT where name = 'acme'")
    assert res.sobject == "Account"
    assert res.fields == ["Id", "Name"]
    assert res.total_size == 1
    (rec,) = res.records
    assert list(rec) == ["attributes", "Id", "Name"]
    assert rec["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{rec['Id']}"}
    assert rec["Name"] == "Acme"


def test_parent_paths_nest_records_and_null_parents_are_none(org: Org) -> None:
    res = execute(org, f"SELECT Name, vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c, "
                       f"vlocity_cmt__StatementId__r.vlocity_cmt__AccountId__r.Name FROM {SLI} ORDER BY Name LIMIT 1")
    rec = res.records[0]
    parent = rec["vlocity_cmt__StatementId__r"]
    assert parent["attributes"]["type"] == STMT
    assert parent["vlocity_cmt__ExternalID__c"] == "ST-1"
    assert parent["vlocity_cmt__AccountId__r"]["Name"] == "Acme"
    assert res.fields[1] == "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"
    assert flat_row(rec, res.fields) == ["SLI-000000001", "ST-1", "Acme"]

    accounts = execute(org, "SELECT Name, Parent.Name FROM Account ORDER BY Name")
    assert [r["Parent"] and r["Parent"]["Name"] for r in accounts.records] == [None, "Acme", "Acme"]
    assert flat_row(accounts.records[0], accounts.fields) == ["Acme", None]


def test_flat_row_matches_paths_case_insensitively() -> None:
    rec = {"attributes": {}, "Name": "x", "Parent": {"attributes": {}, "Name": "p"}}
    assert flat_row(rec, ["name", "parent.NAME", "Missing__c"]) == ["x", "p", None]


def test_values_render_as_salesforce_json(org: Org) -> None:
    res = execute(org, "SELECT NumberOfEmployees, AnnualRevenue, CreatedDate FROM Account WHERE Name = 'Acme'")
    rec = res.records[0]
    assert rec["NumberOfEmployees"] == 10 and isinstance(rec["NumberOfEmployees"], int)
    assert rec["AnnualRevenue"] == 1000.0
    assert rec["CreatedDate"] == "2026-03-01T10:00:00.000+0000"


# ---------------------------------------------------------------------------- WHERE


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name = 'ACME'", ["Acme"]),
        ("Name != 'acme'", ["beta", "Gamma_co"]),
        ("Name <> 'acme'", ["beta", "Gamma_co"]),
        ("AnnualRevenue > 100", ["Acme"]),
        ("AnnualRevenue >= 50", ["Acme", "Gamma_co"]),
        ("AnnualRevenue < 1000", ["Gamma_co"]),
        ("AnnualRevenue <= 1000.0", ["Acme", "Gamma_co"]),
        ("AnnualRevenue != 50", ["Acme", "beta"]),  # != keeps nulls, as in SOQL
        ("AnnualRevenue = null", ["beta"]),
        ("AnnualRevenue != NULL", ["Acme", "Gamma_co"]),
        ("AccountNumber IN ('a-1', 'A-2')", ["Acme", "beta"]),
        ("AccountNumber NOT IN ('A-1')", ["beta", "Gamma_co"]),
        ("AccountNumber IN ('A-1', null)", ["Acme", "Gamma_co"]),
        ("Name LIKE 'a%'", ["Acme"]),
        ("Name LIKE '%E%'", ["Acme", "beta"]),
        ("Name LIKE '_eta'", ["beta"]),
        ("Name LIKE 'gamma\\_%'", ["Gamma_co"]),
        ("Name LIKE 'gamma\\%%'", []),
        ("NOT Name LIKE 'a%'", ["beta", "Gamma_co"]),
        ("Name = 'Acme' OR Name = 'beta'", ["Acme", "beta"]),
        ("(Name = 'Acme' OR Name = 'beta') AND AnnualRevenue = null", ["beta"]),
        ("NOT (Name = 'Acme' OR Name = 'beta')", ["Gamma_co"]),
        ("Name = 'Acme' AND (NOT AnnualRevenue < 10)", ["Acme"]),
        ("IsDeleted = false", ["Acme", "beta", "Gamma_co"]),
        ("Parent.Name = 'Acme'", ["beta", "Gamma_co"]),
        ("Parent.AnnualRevenue = null", ["Acme"]),
        ("CreatedDate > 2026-02-15T00:00:00Z", ["Acme", "beta"]),
        ("CreatedDate < 2026-02-10T09:30:00+01:00", []),
        ("CreatedDate <= 2026-02-10T09:30:00.000+0100", ["Gamma_co"]),
        ("CreatedDate = 2026-02-10T08:30:00.000+0000", ["Gamma_co"]),
    ],
)
def test_where_operators(org: Org, where: str, expected: list[str]) -> None:
    res = execute(org, f"SELECT Name FROM Account WHERE {where}")
    assert sorted(names(res), key=str.lower) == sorted(expected, key=str.lower)


def test_string_literal_escapes() -> None:
    assert unescape(r"O\'Brien \\ \n\t") == "O'Brien \\ \n\t"
    assert unescape(r"50\%", keep_like_escapes=True) == r"50\%"
    with pytest.raises(ValueError):
        unescape(r"\q")


def test_escaped_quote_in_query(org: Org) -> None:
    insert(org, "Account", Name="O'Brien")
    assert names(execute(org, r"SELECT Name FROM Account WHERE Name = 'o\'brien'")) == ["O'Brien"]


def test_ids_15_and_18_characters(org: Org) -> None:
    acme = id_of(org, "Account", "Acme")
    for literal in (acme, acme[:15], acme[:15] + acme[15:].lower()):
        assert names(execute(org, f"SELECT Name FROM Account WHERE Id = '{literal}'")) == ["Acme"]
    assert names(execute(org, f"SELECT Name FROM Account WHERE ParentId = '{acme[:15]}' ORDER BY Name")) == [
        "beta", "Gamma_co"]
    assert names(execute(org, f"SELECT Name FROM Account WHERE Id IN ('{acme}', '{acme[:15]}')")) == ["Acme"]
    assert names(execute(org, f"SELECT Name FROM Account WHERE Id != '{acme}' ORDER BY Name")) == ["beta", "Gamma_co"]
    # An Id of another object's prefix never matches.
    stmt = id_of(org, STMT, "S1")
    assert execute(org, f"SELECT Name FROM Account WHERE Id = '{stmt}'").total_size == 0


def test_invalid_id_literal(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE Id = 'abc'")
    assert err.code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.message.endswith("invalid ID field: abc")


def test_date_fields_and_literals(org: Org) -> None:
    q = f"SELECT Name FROM {STMT} WHERE vlocity_cmt__StatementDate__c "
    assert names(execute(org, q + "= 2026-02-28")) == ["S1"]
    assert names(execute(org, q + "> 2026-02-28")) == ["S2"]
    # NOW is 2026-03-15: LAST_MONTH is February, THIS_MONTH is March.
    assert names(execute(org, q + "= LAST_MONTH")) == ["S1"]
    assert names(execute(org, q + "> LAST_MONTH")) == ["S2"]
    assert names(execute(org, q + "< THIS_MONTH")) == ["S1"]
    assert names(execute(org, q + "= THIS_MONTH")) == ["S2"]
    assert names(execute(org, q + "= YESTERDAY")) == ["S2"]
    assert names(execute(org, q + "= LAST_N_DAYS:1")) == ["S2"]
    assert names(execute(org, q + "= LAST_N_DAYS:15")) == ["S1", "S2"]
    assert names(execute(org, q + "= THIS_YEAR")) == ["S1", "S2"]
    assert names(execute(org, q + "= LAST_YEAR")) == []
    assert names(execute(org, q + "< TODAY")) == ["S1", "S2"]
    assert names(execute(org, q + "= TOMORROW")) == []
    assert names(execute(org, q + "= NEXT_N_DAYS:5")) == []
    assert names(execute(org, q + "!= LAST_MONTH")) == ["S2"]
    assert names(execute(org, q + "IN (LAST_MONTH, TODAY)")) == ["S1"]


def test_datetime_fields_with_date_literals(org: Org) -> None:
    q = "SELECT Name FROM Account WHERE CreatedDate "
    assert sorted(names(execute(org, q + "= THIS_MONTH"))) == ["Acme", "beta"]
    assert names(execute(org, q + "= LAST_MONTH")) == ["Gamma_co"]
    assert names(execute(org, q + ">= LAST_N_DAYS:14")) == ["Acme", "beta"]
    assert names(execute(org, q + "< LAST_N_DAYS:14")) == ["Gamma_co"]
    assert sorted(names(execute(org, q + "<= TODAY"))) == ["Acme", "Gamma_co", "beta"]
    assert names(execute(org, q + "> TODAY")) == []


def test_date_and_datetime_literals_must_fit_the_field(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01")
    assert err.code == "INVALID_FIELD"
    assert "must be of type dateTime and should not be enclosed in quotes" in err.message
    err = error(org, f"SELECT Id FROM {STMT} WHERE vlocity_cmt__StatementDate__c > 2026-01-01T00:00:00Z")
    assert "must be of type date" in err.message
    err = error(org, "SELECT Id FROM Account WHERE Name = TODAY")
    assert err.code == "INVALID_FIELD"
    err = error(org, "SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS")
    assert err.code == "MALFORMED_QUERY"
    err = error(org, "SELECT Id FROM Account WHERE CreatedDate = SOMEDAY")
    assert err.code == "MALFORMED_QUERY" and "unexpected token: 'SOMEDAY'" in err.message


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("Name = 5", "field 'Name' must be of type string and should be enclosed in quotes"),
        ("AnnualRevenue = '5'", "field 'AnnualRevenue' must be of type currency and should not be enclosed in quotes"),
        ("IsDeleted = 'true'", "field 'IsDeleted' must be of type boolean"),
        ("Name LIKE 5", "must be of type string"),
    ],
)
def test_literal_type_errors(org: Org, where: str, message: str) -> None:
    err = error(org, f"SELECT Id FROM Account WHERE {where}")
    assert err.code == "INVALID_FIELD"
    assert message in err.message


def test_multipicklist_includes_excludes(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("objects:\n  Account:\n    fields:\n      Tags__c: {type: multipicklist, picklist: [a, b, c]}\n")
    org = Org(schema_overlay=overlay)
    insert(org, "Account", Name="one", Tags__c="a;b")
    insert(org, "Account", Name="two", Tags__c="c")
    insert(org, "Account", Name="three")
    q = "SELECT Name FROM Account WHERE Tags__c "
    assert names(execute(org, q + "INCLUDES ('A')")) == ["one"]
    assert names(execute(org, q + "INCLUDES ('a;b', 'c')")) == ["one", "two"]
    assert names(execute(org, q + "INCLUDES ('a;c')")) == []
    assert names(execute(org, q + "EXCLUDES ('a')")) == ["two", "three"]
    assert error(org, "SELECT Id FROM Account WHERE Name INCLUDES ('a')").code == "INVALID_FIELD"


def test_semi_join(org: Org) -> None:
    res = execute(org, f"SELECT Name FROM Account WHERE Id IN (SELECT vlocity_cmt__AccountId__c FROM {STMT} "
                       "WHERE vlocity_cmt__Status__c = 'pending')")
    assert names(res) == ["beta"]
    res = execute(org, f"SELECT Name FROM Account WHERE Id NOT IN (SELECT vlocity_cmt__AccountId__c FROM {STMT}) ")
    assert names(res) == ["Gamma_co"]
    assert error(org, f"SELECT Name FROM Account WHERE Id IN (SELECT Name FROM {STMT})").code == "INVALID_FIELD"


# ---------------------------------------------------------------------------- ORDER BY, LIMIT, OFFSET


def test_order_by_defaults_nulls_first_asc_last_desc(org: Org) -> None:
    asc = execute(org, "SELECT Name, AnnualRevenue FROM Account ORDER BY AnnualRevenue")
    assert names(asc) == ["beta", "Gamma_co", "Acme"]
    desc = execute(org, "SELECT Name FROM Account ORDER BY AnnualRevenue DESC")
    assert names(desc) == ["Acme", "Gamma_co", "beta"]
    assert names(execute(org, "SELECT Name FROM Account ORDER BY AnnualRevenue ASC NULLS LAST")) == [
        "Gamma_co", "Acme", "beta"]
    assert names(execute(org, "SELECT Name FROM Account ORDER BY AnnualRevenue DESC NULLS FIRST")) == [
        "beta", "Acme", "Gamma_co"]


def test_order_by_text_ignores_case_and_multiple_keys(org: Org) -> None:
    assert names(execute(org, "SELECT Name FROM Account ORDER BY Name")) == ["Acme", "beta", "Gamma_co"]
    res = execute(org, f"SELECT Name FROM {SLI} ORDER BY vlocity_cmt__StatementId__r.Name DESC, "
                       "vlocity_cmt__CurrencyAmount__c DESC NULLS LAST")
    assert names(res) == ["SLI-000000004", "SLI-000000005", "SLI-000000003", "SLI-000000002", "SLI-000000001"]


def test_limit_and_offset(org: Org) -> None:
    base = f"SELECT Name FROM {SLI} ORDER BY Name"
    every = names(execute(org, base))
    assert names(execute(org, base + " LIMIT 2")) == every[:2]
    assert names(execute(org, base + " LIMIT 2 OFFSET 2")) == every[2:4]
    assert names(execute(org, base + " OFFSET 4")) == every[4:]
    assert execute(org, base + " LIMIT 0").total_size == 0
    assert names(execute(org, f"SELECT Name FROM {SLI} LIMIT 3")) == every[:3]
    err = error(org, base + " OFFSET 2001")
    assert err.code == "NUMBER_OUTSIDE_VALID_RANGE"


# ---------------------------------------------------------------------------- aggregates


def test_count_star(org: Org) -> None:
    res = execute(org, "SELECT COUNT() FROM Account")
    assert (res.total_size, res.records) == (3, [])
    assert execute(org, "SELECT COUNT() FROM Account WHERE ParentId != null").total_size == 2
    assert execute(org, "SELECT COUNT() FROM Account LIMIT 1").total_size == 1
    assert error(org, "SELECT COUNT(), Name FROM Account").code == "MALFORMED_QUERY"


def test_count_field_without_group_by(org: Org) -> None:
    res = execute(org, "SELECT COUNT(Id), COUNT(AnnualRevenue) n FROM Account")
    assert res.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 3, "n": 2}]
    assert res.fields == ["expr0", "n"]
    empty = execute(org, "SELECT COUNT(Id), SUM(AnnualRevenue) FROM Account WHERE Name = 'nobody'")
    assert empty.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 0, "expr1": None}]


def test_group_by_with_aggregates(org: Org) -> None:
    res = execute(org, f"SELECT vlocity_cmt__Category__c, COUNT(Id) cnt, SUM(vlocity_cmt__CurrencyAmount__c), "
                       f"MIN(vlocity_cmt__ServiceStartDate__c), MAX(Name), AVG(vlocity_cmt__Amount__c) "
                       f"FROM {SLI} GROUP BY vlocity_cmt__Category__c ORDER BY vlocity_cmt__Category__c NULLS LAST")
    assert res.fields == ["vlocity_cmt__Category__c", "cnt", "expr0", "expr1", "expr2", "expr3"]
    rows = [[r[k] for k in res.fields] for r in res.records]
    assert rows == [
        ["Billed", 1, 5.0, None, "SLI-000000003", 2.0],
        ["Service", 1, 7.25, "2026-03-01", "SLI-000000004", 3.0],
        ["Usage", 2, 0.3, "2026-02-01", "SLI-000000002", 0.5],
        [None, 1, None, "2026-03-15", "SLI-000000005", 4.0],
    ]


def test_group_by_relationship_having_and_order_by_aggregate(org: Org) -> None:
    res = execute(org, f"SELECT vlocity_cmt__StatementId__r.Name, COUNT(Id) FROM {SLI} "
                       "GROUP BY vlocity_cmt__StatementId__r.Name HAVING COUNT(Id) > 2")
    assert [(r["Name"], r["expr0"]) for r in res.records] == [("S1", 3)]
    res = execute(org, f"SELECT vlocity_cmt__StatementId__c s, SUM(vlocity_cmt__Amount__c) total FROM {SLI} "
                       "GROUP BY vlocity_cmt__StatementId__c ORDER BY SUM(vlocity_cmt__Amount__c) DESC LIMIT 1")
    assert res.records[0]["total"] == 7.0 and res.records[0]["s"] == id_of(org, STMT, "S2")


def test_group_by_date_function(org: Org) -> None:
    res = execute(org, f"SELECT CALENDAR_MONTH(vlocity_cmt__ServiceStartDate__c), COUNT(Id) FROM {SLI} "
                       "WHERE vlocity_cmt__ServiceStartDate__c != null "
                       "GROUP BY CALENDAR_MONTH(vlocity_cmt__ServiceStartDate__c) ORDER BY CALENDAR_MONTH(vlocity_cmt__ServiceStartDate__c)")
    assert [(r["expr0"], r["expr1"]) for r in res.records] == [(2, 2), (3, 2)]
    assert execute(org, "SELECT Name FROM Account WHERE CALENDAR_YEAR(CreatedDate) = 2026").total_size == 3


def test_aggregate_errors(org: Org) -> None:
    err = error(org, "SELECT Name, COUNT(Id) FROM Account")
    assert err.code == "MALFORMED_QUERY" and err.message.endswith("Field must be grouped or aggregated: Name")
    err = error(org, "SELECT SUM(Name) FROM Account")
    assert err.code == "INVALID_FIELD" and "does not support aggregate operator SUM" in err.message
    err = error(org, "SELECT AccountNumber, COUNT(Id) FROM Account GROUP BY AccountNumber ORDER BY Name")
    assert "Ordered field must be grouped or aggregated: Name" in err.message


# ---------------------------------------------------------------------------- deleted rows


def test_deleted_rows_only_with_include_deleted(org: Org) -> None:
    gamma = id_of(org, "Account", "Gamma_co")
    assert org.dml("Account", "delete", [{"Id": gamma}])[0].success
    assert names(execute(org, "SELECT Name FROM Account ORDER BY Name")) == ["Acme", "beta"]
    everything = execute(org, "SELECT Name, IsDeleted FROM Account ORDER BY Name", include_deleted=True)
    assert [(r["Name"], r["IsDeleted"]) for r in everything.records] == [
        ("Acme", False), ("beta", False), ("Gamma_co", True)]
    assert execute(org, f"SELECT Id FROM Account WHERE Id = '{gamma}'").total_size == 0
    assert execute(org, f"SELECT Id FROM Account WHERE Id = '{gamma}'", include_deleted=True).total_size == 1
    assert execute(org, "SELECT COUNT() FROM Account WHERE IsDeleted = true", include_deleted=True).total_size == 1


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("soql", "token"),
    [
        ("SELECT Id FORM Account", "FORM"),
        ("SELECT Id FROM Account WHERE", "<EOF>"),
        ("SELECT FROM Account", "FROM"),
        ("SELECT Id FROM Account FOR UPDATE", "FOR"),
        ("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "OR"),
        ("SELECT Id FROM Account LIMIT 1.5", "1.5"),
        ("SELECT Id FROM Account WHERE Name = 'abc", "'abc"),
        ("SELECT Id, FROM Account", "FROM"),
        ("DELETE FROM Account", "DELETE"),
        ("", "<EOF>"),
    ],
)
def test_malformed_queries_name_the_token(org: Org, soql: str, token: str) -> None:
    err = error(org, soql)
    assert err.code == "MALFORMED_QUERY"
    assert err.message.endswith(f"unexpected token: '{token}'")


def test_malformed_message_points_at_the_token(org: Org) -> None:
    err = error(org, "SELECT Id FORM Account")
    assert err.message == "\nSELECT Id FORM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'"
    assert err.to_rest() == [{"message": err.message, "errorCode": "MALFORMED_QUERY"}]


def test_unknown_field_and_object(org: Org) -> None:
    err = error(org, "SELECT Id, Foo__c FROM Account")
    assert err.code == "INVALID_FIELD"
    assert err.message.endswith(
        "No such column 'Foo__c' on entity 'Account'. If you are attempting to use a custom field, be sure to "
        "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names.")
    assert "ERROR at Row:1:Column:12" in err.message
    err = error(org, "SELECT Id FROM Foo__c")
    assert err.code == "INVALID_TYPE"
    assert "sObject type 'Foo__c' is not supported." in err.message
    err = error(org, "SELECT Nope__r.Name FROM Account")
    assert err.code == "INVALID_FIELD" and "Didn't understand relationship 'Nope__r' in field path" in err.message
    err = error(org, "SELECT Id FROM Account WHERE Parent.Nope = 'x'")
    assert "No such column 'Parent.Nope' on entity 'Account'" in err.message
    assert error(org, "SELECT Id, id FROM Account").message.endswith("duplicate field selected: Id")


def test_keywords_are_case_insensitive_and_names_may_look_like_keywords(org: Org) -> None:
    res = execute(org, "select name from account where name like 'a%' order by name desc nulls last limit 5 offset 0")
    assert names(res) == ["Acme"]
    # A field named like a keyword is read as a name where a name is expected.
    assert parse("SELECT Id FROM Account WHERE Order = 1 AND Offset != 2 AND By = TRUE").where is not None


def test_parse_is_cached() -> None:
    assert parse("SELECT Id FROM Account") is parse("SELECT Id FROM Account")


def test_indexed_equality_matches_like_a_scan(org: Org) -> None:
    # External IDs and idLookup fields are answered from the org's index: same rows as a scan.
    q = f"SELECT Name FROM {STMT} WHERE vlocity_cmt__ExternalID__c "
    assert names(execute(org, q + "= 'st-1'")) == ["S1"]
    assert names(execute(org, q + "IN ('ST-2', 'st-1', 'nope')")) == ["S1", "S2"]
    assert names(execute(org, q + "= 'st-1' AND vlocity_cmt__Status__c = 'Pending'")) == []
    assert names(execute(org, "SELECT Name FROM Account WHERE Name = 'BETA'")) == ["beta"]
