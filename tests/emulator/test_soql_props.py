"""Property tests for the SOQL engine: random filters agree with a plain Python model,
LIMIT/OFFSET slice, ORDER BY is a stable sort, and garbage only ever raises SoqlError."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsync.emulator.org import Org
from sfsync.emulator.soql import SoqlError, execute

STMT = "vlocity_cmt__Statement__c"
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_ORG = Org(clock=lambda: NOW)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAME = "Name"
EXT = "vlocity_cmt__ExternalID__c"
DAY = "vlocity_cmt__StatementDate__c"
MONEY = "vlocity_cmt__BalanceDue__c"
STATUS = "vlocity_cmt__Status__c"

names = st.text(alphabet="abAB_%x", min_size=0, max_size=4)
statuses = st.sampled_from(["Pending", "Approved", "Rejected", "Applied"])
days = st.dates(min_value=date(2025, 12, 1), max_value=date(2026, 4, 30))
money = st.integers(min_value=-300, max_value=300).map(lambda n: n / 4)
rows = st.lists(
    st.fixed_dictionaries({
        NAME: names.filter(bool),
        DAY: st.none() | days,
        MONEY: st.none() | money,
        STATUS: st.none() | statuses,
    }),
    max_size=25,
)


def load(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reset the shared org, insert ``data`` as statements, return the stored records."""
    _ORG.reset()
    account = _ORG.dml("Account", "insert", [{"Name": "Parent"}])[0].id
    payload = []
    for i, row in enumerate(data):
        rec = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items() if v is not None}
        payload.append({**rec, EXT: f"E-{i}", "vlocity_cmt__AccountId__c": account})
    results = _ORG.dml(STMT, "insert", payload)
    assert all(r.success for r in results), [r.errors for r in results if not r.success]
    return _ORG.records(STMT)


# ---------------------------------------------------------------------------- the model


def like_model(pattern: str, value: str) -> bool:
    """SOQL LIKE by recursion (independent of the engine's regular expressions)."""
    p, v = pattern.lower(), value.lower()
    if not p:
        return not v
    head = p[0]
    if head == "%":
        return any(like_model(p[1:], v[i:]) for i in range(len(v) + 1))
    if not v:
        return False
    return (head == "_" or head == v[0]) and like_model(p[1:], v[1:])


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compare(v: Any, op: str, lit: Any) -> bool:
    if lit is None:
        return (v is None) if op == "=" else (v is not None) if op == "!=" else False
    if v is None:
        return op == "!="
    if isinstance(v, str):
        v, lit = v.lower(), lit.lower()
    return {"=": v == lit, "!=": v != lit, "<": v < lit, "<=": v <= lit, ">": v > lit, ">=": v >= lit}[op]


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, Any]:
    """One comparison: (SOQL text, model predicate)."""
    kind = draw(st.sampled_from(["name", "day", "money", "status", "in", "like", "ext", "relday"]))
    op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
    if kind == "name":
        lit = draw(st.text(alphabet="abAB'\\x", max_size=3))
        return f"{NAME} {op} {quote(lit)}", lambda r: compare(r.get(NAME), op, lit)
    if kind == "day":
        d = draw(st.none() | days)
        if d is None:
            op = draw(st.sampled_from(["=", "!="]))
        text = "null" if d is None else d.isoformat()
        lit = None if d is None else d.isoformat()
        return f"{DAY} {op} {text}", lambda r: compare(r.get(DAY), op, lit)
    if kind == "money":
        m = draw(money)
        return f"{MONEY} {op} {m}", lambda r: compare(r.get(MONEY), op, m)
    if kind == "status":
        s = draw(statuses)
        return f"{STATUS} {op} {quote(s.upper())}", lambda r: compare(r.get(STATUS), op, s)
    if kind == "in":
        values = draw(st.lists(st.none() | statuses, min_size=1, max_size=3))
        negate = draw(st.booleans())
        wanted = {v.lower() if v else None for v in values}
        text = ", ".join("null" if v is None else quote(v) for v in values)

        def member(r: dict[str, Any]) -> bool:
            v = r.get(STATUS)
            return ((v.lower() if v else None) in wanted) != negate
        return f"{STATUS} {'NOT IN' if negate else 'IN'} ({text})", member
    if kind == "like":
        pattern = draw(st.text(alphabet="ab%_", max_size=4))
        return f"{NAME} LIKE {quote(pattern)}", lambda r: like_model(pattern, r[NAME])
    if kind == "ext":
        n = draw(st.integers(min_value=0, max_value=30))
        # Equality on an external ID goes through the org's index: same answer as a scan.
        return f"{EXT} = 'e-{n}'", lambda r: r[EXT] == f"E-{n}"
    # Relative date literals, against the model's own idea of the ranges (today = NOW's date).
    lit, lo, hi = draw(st.sampled_from([
        ("TODAY", "2026-03-15", "2026-03-16"), ("LAST_MONTH", "2026-02-01", "2026-03-01"),
        ("THIS_MONTH", "2026-03-01", "2026-04-01"), ("LAST_N_DAYS:10", "2026-03-05", "2026-03-16"),
        ("NEXT_N_DAYS:20", "2026-03-16", "2026-04-05"), ("THIS_YEAR", "2026-01-01", "2027-01-01"),
        ("LAST_YEAR", "2025-01-01", "2026-01-01"), ("YESTERDAY", "2026-03-14", "2026-03-15"),
    ]))

    def in_range(r: dict[str, Any]) -> bool:
        v = r.get(DAY)
        if v is None:
            return op == "!="
        return {"=": lo <= v < hi, "!=": not lo <= v < hi, "<": v < lo, "<=": v < hi, ">": v >= hi, ">=": v >= lo}[op]
    return f"{DAY} {op} {lit}", in_range


def conditions(depth: int = 2) -> st.SearchStrategy[tuple[str, Any]]:
    """Random AND/OR/NOT trees; mixed AND and OR are always parenthesized, as SOQL demands."""
    if depth == 0:
        return comparisons()

    def combine(parts: list[tuple[str, Any]], joiner: str) -> tuple[str, Any]:
        preds = [p for _, p in parts]
        text = f" {joiner} ".join(f"({t})" for t, _ in parts)
        if joiner == "AND":
            return text, lambda r: all(p(r) for p in preds)
        return text, lambda r: any(p(r) for p in preds)

    sub = conditions(depth - 1)
    return st.one_of(
        comparisons(),
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: combine(ps, "AND")),
        st.lists(sub, min_size=2, max_size=3).map(lambda ps: combine(ps, "OR")),
        sub.map(lambda c: (f"NOT ({c[0]})", lambda r, p=c[1]: not p(r))),
    )


# ---------------------------------------------------------------------------- properties


@SETTINGS
@given(data=rows, cond=conditions())
def test_random_where_equals_python_filter(data: list[dict[str, Any]], cond: tuple[str, Any]) -> None:
    stored = load(data)
    text, model = cond
    res = execute(_ORG, f"SELECT Id FROM {STMT} WHERE {text}")
    assert [r["Id"] for r in res.records] == [r["Id"] for r in stored if model(r)]
    assert res.total_size == len(res.records)
    count = execute(_ORG, f"SELECT COUNT() FROM {STMT} WHERE {text}")
    assert count.total_size == res.total_size


@SETTINGS
@given(data=rows, limit=st.none() | st.integers(0, 30), offset=st.none() | st.integers(0, 30),
       ordered=st.booleans())
def test_limit_offset_slice_the_full_result(data: list[dict[str, Any]], limit: int | None, offset: int | None,
                                            ordered: bool) -> None:
    load(data)
    base = f"SELECT Id FROM {STMT}" + (f" ORDER BY {MONEY} DESC, {NAME}" if ordered else "")
    full = [r["Id"] for r in execute(_ORG, base).records]
    text = base + (f" LIMIT {limit}" if limit is not None else "") + (f" OFFSET {offset}" if offset is not None else "")
    start = offset or 0
    assert [r["Id"] for r in execute(_ORG, text).records] == full[start: None if limit is None else start + limit]


@SETTINGS
@given(data=rows, field=st.sampled_from([NAME, DAY, MONEY, STATUS]), desc=st.booleans(),
       nulls=st.sampled_from(["", " NULLS FIRST", " NULLS LAST"]))
def test_order_by_is_a_stable_sort(data: list[dict[str, Any]], field: str, desc: bool, nulls: str) -> None:
    stored = load(data)
    res = execute(_ORG, f"SELECT Id FROM {STMT} ORDER BY {field}{' DESC' if desc else ''}{nulls}")
    nulls_first = (not desc) if not nulls else nulls == " NULLS FIRST"

    def value(r: dict[str, Any]) -> Any:
        v = r.get(field)
        return v.lower() if isinstance(v, str) and field in (NAME, STATUS) else v

    present = [r for r in stored if r.get(field) is not None]
    blanks = [r for r in stored if r.get(field) is None]
    # Stability: equal keys keep the org's own order in either direction (sorted() with
    # reverse=True does too).
    ordered = sorted(present, key=value, reverse=desc)
    expected = blanks + ordered if nulls_first else ordered + blanks
    assert [r["Id"] for r in res.records] == [r["Id"] for r in expected]


@SETTINGS
@given(data=rows)
def test_ids_match_in_15_and_18_characters(data: list[dict[str, Any]]) -> None:
    stored = load(data)
    for rec in stored[:5]:
        for literal in (rec["Id"], rec["Id"][:15]):
            res = execute(_ORG, f"SELECT Id, Name FROM {STMT} WHERE Id = '{literal}'")
            assert [r["Id"] for r in res.records] == [rec["Id"]]


@SETTINGS
@given(data=rows)
def test_group_by_counts_add_up(data: list[dict[str, Any]]) -> None:
    stored = load(data)
    res = execute(_ORG, f"SELECT {STATUS}, COUNT(Id), SUM({MONEY}) FROM {STMT} GROUP BY {STATUS}")
    assert sum(r["expr0"] for r in res.records) == len(stored)
    for r in res.records:
        members = [s for s in stored if s.get(STATUS) == r[STATUS]]
        assert r["expr0"] == len(members)
        amounts = [s[MONEY] for s in members if s.get(MONEY) is not None]
        assert r["expr1"] == (round(sum(amounts), 2) if amounts else None)


_WORDS = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "GROUP", "HAVING", "LIMIT",
          "OFFSET", "NULLS", "FIRST", "LAST", "ASC", "DESC", "COUNT", "(", ")", ",", ".", "=", "!=", "<", ">=",
          "Id", "Name", STMT, "Account", MONEY, DAY, STATUS, "Parent", "Account.Name", "'x'", "'a%'", "1", "-2.5",
          "2026-01-31", "2026-01-31T10:00:00Z", "TODAY", "LAST_N_DAYS:3", "null", "true", "SUM(", "MAX(", "Foo__c",
          "vlocity_cmt__AccountId__r.Name", "\\", "'", ":", "expr0", "CALENDAR_YEAR(", "INCLUDES", "SELECT Id FROM"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=14).map(" ".join) | st.text(max_size=60))
def test_garbage_only_raises_soql_errors(text: str) -> None:
    try:
        result = execute(_ORG, text)
    except SoqlError as exc:
        assert exc.status == 400
        assert exc.code in {"MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE", "INVALID_QUERY_FILTER_OPERATOR",
                            "NUMBER_OUTSIDE_VALID_RANGE"}
        assert exc.message
    else:
        assert result.total_size >= 0
