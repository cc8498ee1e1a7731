"""Coercion by describe type, including property tests: round trips, never raising."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.mappers.coerce import CoerceOptions, FieldType, coerce

CURRENCY = FieldType("Amount__c", "currency", precision=18, scale=2)
WHOLE = FieldType("Count__c", "double", precision=18, scale=0)
DAY = FieldType("Day__c", "date")
WHEN = FieldType("When__c", "datetime")
FLAG = FieldType("Flag__c", "boolean")
TEXT5 = FieldType("Short__c", "string", length=5)
KIND = FieldType("Kind__c", "picklist", picklist=frozenset({"A", "B"}), restricted=True)


def run(values, ft, **opts):  # type: ignore[no-untyped-def]
    out, errors = coerce(pa.array(values), ft, CoerceOptions(**opts))
    return out.to_pylist(), {e.code: e.mask.nonzero()[0].tolist() for e in errors}


def test_numbers():
    assert run(["1", "1.005", "-0.005", " 2 ", "", None], CURRENCY) == (["1.00", "1.01", "-0.01", "2.00", None, None], {})
    assert run([1.005, 3, None], CURRENCY)[0] == ["1.01", "3.00", None]
    assert run(["1.5", "2"], WHOLE) == ([None, "2"], {"FRACTION_NOT_ALLOWED": [0]})
    assert run(["1e3", "1,5", "x"], CURRENCY)[1] == {"INVALID_NUMBER": [0, 1, 2]}
    assert run(["12345678901234567"], CURRENCY)[1] == {"NUMBER_OUTSIDE_VALID_RANGE": [0]}
    assert run([float("inf")], CURRENCY)[1]["INVALID_NUMBER"] == [0]


def test_dates_and_datetimes():
    assert run(["2026-01-05", "2026-02-30", "05/01/2026"], DAY, date_formats=("%Y-%m-%d",)) == (
        ["2026-01-05", None, None], {"INVALID_DATE": [1, 2]})
    assert run([date(2026, 1, 5)], DAY)[0] == ["2026-01-05"]
    assert run(["1600-01-01"], DAY)[1] == {"INVALID_DATE": [0]}
    got, errs = run(["2026-07-01T12:00:00+02:00", "2026-07-01", "nope"], WHEN, timezone="America/New_York")
    assert got == ["2026-07-01T10:00:00.000Z", "2026-07-01T04:00:00.000Z", None] and errs == {"INVALID_DATETIME": [2]}


def test_booleans_picklists_strings():
    assert run(["Y", "n", "1", "0", "TRUE", "off", "x"], FLAG) == (
        ["true", "false", "true", "false", "true", "false", None], {"INVALID_BOOLEAN": [6]})
    assert run([True, None], FLAG)[0] == ["true", None]
    assert run(["A", "C"], KIND) == (["A", None], {"BAD_PICKLIST_VALUE": [1]})
    assert run(["A", "C"], FieldType("L", "picklist", picklist=frozenset({"A"})))[0] == ["A", "C"]
    assert run(["abcdef"], TEXT5) == ([None], {"STRING_TOO_LONG": [0]})
    assert run(["abcdef"], TEXT5, length="truncate") == (["abcde"], {})
    # Lengths are characters: "éééé" is 8 bytes but fits in 5; only the longer rows are touched.
    assert run(["éééé", "ééééé", "éééééé", None, "ab"], TEXT5) == (
        ["éééé", "ééééé", None, None, "ab"], {"STRING_TOO_LONG": [2]})
    assert run(["éééé", "éééééé", "abcdefgh", "ab"], TEXT5, length="truncate") == (
        ["éééé", "ééééé", "abcde", "ab"], {})
    assert run([12.0, 1.5], FieldType("S", "string"))[0] == ["12", "1.5"]


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-99999999999999.999"), max_value=Decimal("99999999999999.999"),
                   allow_nan=False, allow_infinity=False, places=3))
def test_currency_round_trip_half_away_from_zero(x: Decimal) -> None:
    out, errs = run([str(x)], CURRENCY)
    expected = x.copy_abs().quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).copy_sign(x)
    assert not errs and Decimal(out[0]) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**17 + 1, 10**17 - 1))
def test_whole_numbers_round_trip(n: int) -> None:
    assert run([str(n)], WHOLE) == ([str(n)], {})


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1700, 1, 1), max_value=date(4000, 12, 31)))
def test_dates_round_trip(d: date) -> None:
    assert run([d.isoformat()], DAY)[0] == [d.isoformat()]
    assert run([d.strftime("%d/%m/%Y")], DAY, date_formats=("%d/%m/%Y",))[0] == [d.isoformat()]
    nxt = d + timedelta(days=1)
    assert run([nxt.isoformat() + "T00:00:00Z"], WHEN)[0] == [nxt.isoformat() + "T00:00:00.000Z"]


TYPES = [CURRENCY, WHOLE, DAY, WHEN, FLAG, TEXT5, KIND, FieldType("P", "percent", precision=5, scale=2),
         FieldType("M", "multipicklist", picklist=frozenset({"A", "B"}), restricted=True)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=10))
def test_arbitrary_strings_never_raise_only_reject(values: list) -> None:
    arr = pa.array(values, type=pa.string())
    for ft in TYPES:
        out, errors = coerce(arr, ft, CoerceOptions(date_formats=("%Y-%m-%d", "%d/%m/%Y", "iso")))
        assert len(out) == len(values)
        failed = set()
        for e in errors:
            failed |= set(e.mask.nonzero()[0].tolist())
            e.messages(e.mask.nonzero()[0])
        for i in failed:
            assert out[i].as_py() is None  # a rejected value never reaches Salesforce
