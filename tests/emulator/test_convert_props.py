"""Property tests for value coercion and Ids: no input makes a converter fail other than with a
Salesforce error, and good values round-trip."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from sfsync.emulator.convert import build_converter
from sfsync.emulator.errors import FieldError
from sfsync.emulator.ids import _slow_id, make_id, normalize_id
from sfsync.emulator.schema import FieldDef

CURRENCY = FieldDef("Amount__c", "currency", label="Amount", precision=18, scale=2)
WHOLE = FieldDef("Count__c", "double", label="Count", precision=18, scale=0)
DATE = FieldDef("D__c", "date", label="D")
DATETIME = FieldDef("T__c", "datetime", label="T")
BOOL = FieldDef("B__c", "boolean", label="B")
TEXT = FieldDef("S__c", "string", label="S", length=10)


@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                 st.lists(st.integers(), max_size=2)))
def test_converters_only_raise_field_errors(value: object) -> None:
    for fd in (CURRENCY, WHOLE, DATE, DATETIME, BOOL, TEXT):
        try:
            build_converter(fd)(value)
        except FieldError as exc:
            assert exc.error.fields == [fd.name] and exc.error.status_code


@given(st.decimals(min_value=-10**15, max_value=10**15, places=2, allow_nan=False))
def test_currency_keeps_two_decimals(value: object) -> None:
    assert build_converter(CURRENCY)(str(value)) == round(float(str(value)), 2)


@given(st.integers(min_value=-10**15, max_value=10**15))
def test_whole_numbers_accepted_decimals_refused(value: int) -> None:
    conv = build_converter(WHOLE)
    assert conv(str(value)) == float(value)
    try:
        conv(f"{value}.5")
    except FieldError as exc:
        assert exc.error.status_code == "NUMBER_OUTSIDE_VALID_RANGE"
    else:
        raise AssertionError("a decimal went into a Number(18,0)")


@given(st.dates())
def test_dates_round_trip_inside_salesforce_range(day: dt.date) -> None:
    conv = build_converter(DATE)
    if 1700 <= day.year <= 4000:
        assert conv(day.isoformat()) == day.isoformat()
    else:
        try:
            conv(day.isoformat())
        except FieldError as exc:
            assert exc.error.status_code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
        else:
            raise AssertionError("a date outside 1700..4000 was accepted")


@given(st.datetimes(min_value=dt.datetime(1701, 1, 1), max_value=dt.datetime(3999, 12, 31),
                    timezones=st.just(dt.UTC)))
def test_datetimes_normalize_to_salesforce_form(moment: dt.datetime) -> None:
    out = build_converter(DATETIME)(moment.isoformat())
    assert isinstance(out, str) and out.endswith("+0000") and out[:19] == moment.strftime("%Y-%m-%dT%H:%M:%S")


@given(st.sampled_from(["001", "a3U", "500"]), st.integers(min_value=1, max_value=62**9 - 1))
def test_ids(prefix: str, counter: int) -> None:
    rid = make_id(prefix, counter)
    assert rid == _slow_id(prefix, counter)
    assert normalize_id(rid) == rid == normalize_id(rid[:15])
    assert normalize_id(rid[:15] + rid[15:].lower()) == rid  # the suffix is case-insensitive
