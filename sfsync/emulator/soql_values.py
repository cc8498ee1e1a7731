"""Values in SOQL: field categories, literal coercion, date literal ranges, REST output form.

Everything a condition compares is first brought to a *key*: text is lower-cased
(SOQL's ``=`` and ORDER BY ignore case), numbers are int/float, dates are ``YYYY-MM-DD``
text and datetimes UTC text ``YYYY-MM-DDTHH:MM:SS.fff+0000`` — the org's own stored
forms, which order correctly as text, so most rows need no parsing at all. Literals are turned into keys
once per query; field values once per row, by a normalizer chosen per field type.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sfsync.emulator.ids import normalize_id
from sfsync.emulator.soql_parse import Literal, SoqlError, located

TEXT = "text"
ID = "id"
NUMBER = "number"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
TIME = "time"

_CATEGORY = {
    "id": ID,
    "reference": ID,
    "double": NUMBER,
    "currency": NUMBER,
    "percent": NUMBER,
    "int": NUMBER,
    "long": NUMBER,
    "boolean": BOOLEAN,
    "date": DATE,
    "datetime": DATETIME,
    "time": TIME,
}

# How Salesforce names the expected type in "must be of type X" messages.
_TYPE_WORD = {"datetime": "dateTime", "reference": "id"}

Normalizer = Callable[[Any], Any]


def category(field_type: str) -> str:
    """The comparison category of a describe field type (``string`` and friends are TEXT)."""
    return _CATEGORY.get(field_type, TEXT)


# ---------------------------------------------------------------------------- datetimes


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 / Salesforce datetime (``...Z``, ``+01:00``, ``.000+0000``) to aware UTC.

    Raises:
        ValueError: When the text is no datetime.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Salesforce's REST form: ``2026-01-31T10:00:00.000+0000`` (always UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# ---------------------------------------------------------------------------- normalizers


def _norm_text(v: Any) -> Any:
    return v.lower() if type(v) is str else str(v).lower()


def _norm_number(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        return v
    if t is bool:
        return int(v)
    return float(v)


def _norm_date(v: Any) -> Any:
    # The org stores dates as "YYYY-MM-DD", which compares correctly as text.
    if type(v) is str and len(v) == 10:
        return v
    return to_date(v).isoformat()


def _norm_datetime(v: Any) -> Any:
    # The org stores datetimes as "YYYY-MM-DDTHH:MM:SS.fffZ"-like UTC text of one fixed
    # shape (…+0000); anything else is parsed and brought to that shape.
    if type(v) is str and len(v) == 28 and v.endswith("+0000"):
        return v
    return format_datetime(to_datetime(v))


def to_date(v: Any) -> date:
    """A stored date (text, date or datetime) as a ``datetime.date``."""
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    return date.fromisoformat(str(v)[:10])


def to_datetime(v: Any) -> datetime:
    """A stored datetime (text, datetime or date) as an aware UTC ``datetime``."""
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    if isinstance(v, date):
        return _midnight(v)
    return parse_datetime(_iso_offset(str(v)))


def normalizer(cat: str) -> Normalizer | None:
    """The per-row normalizer for a category, or None when values compare as stored."""
    return {TEXT: _norm_text, NUMBER: _norm_number, DATE: _norm_date, DATETIME: _norm_datetime}.get(cat)


def safe_key(norm: Normalizer | None, value: Any) -> Any:
    """Normalize ``value`` for sorting and grouping; bad stored data sorts as its text."""
    if value is None or norm is None:
        return value
    try:
        return norm(value)
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------- literals


def _type_error(text: str, lit: Literal, field_name: str, field_type: str, quoted: bool) -> SoqlError:
    word = _TYPE_WORD.get(field_type, field_type)
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return SoqlError(
        "INVALID_FIELD",
        located(text, lit.line, lit.column,
                f"value of filter criterion for field '{field_name}' must be of type {word} and {how}"),
    )


def literal_key(text: str, lit: Literal, cat: str, field_name: str, field_type: str) -> Any:
    """Turn a literal into the comparison key for a field of ``cat``, checking its type.

    Args:
        text: The query text (for error positions).
        lit: The literal (not NULL, not a relative date literal).
        cat: The field's category.
        field_name: The field's canonical name (for messages).
        field_type: The describe type (for messages).

    Raises:
        SoqlError: INVALID_FIELD when the literal's type does not fit the field, like
            Salesforce; INVALID_QUERY_FILTER_OPERATOR for a malformed Id.
    """
    kind = lit.kind
    if cat == TEXT or cat == TIME:
        if kind != "string":
            raise _type_error(text, lit, field_name, "string" if cat == TEXT else field_type, cat == TEXT)
        return lit.value.lower() if cat == TEXT else lit.value
    if cat == ID:
        if kind != "string":
            raise _type_error(text, lit, field_name, "id", True)
        if lit.value == "":
            # Salesforce accepts Id = '' and matches nothing.
            return ""
        canonical = normalize_id(lit.value)
        if canonical is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR",
                            located(text, lit.line, lit.column, f"invalid ID field: {lit.value}"))
        return canonical
    if cat == NUMBER:
        if kind != "number":
            raise _type_error(text, lit, field_name, field_type, False)
        return lit.value
    if cat == BOOLEAN:
        if kind != "boolean":
            raise _type_error(text, lit, field_name, "boolean", False)
        return lit.value
    if cat == DATE:
        if kind != "date":
            raise _type_error(text, lit, field_name, "date", False)
        try:
            return date.fromisoformat(lit.value).isoformat()
        except ValueError:
            raise _type_error(text, lit, field_name, "date", False) from None
    if cat == DATETIME:
        if kind != "datetime":
            raise _type_error(text, lit, field_name, "datetime", False)
        try:
            return format_datetime(parse_datetime(_iso_offset(lit.value)))
        except ValueError:
            raise _type_error(text, lit, field_name, "datetime", False) from None
    raise _type_error(text, lit, field_name, field_type, False)


def _iso_offset(text: str) -> str:
    """Python wants ``+01:00``; SOQL also allows ``+0100``."""
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        return text[:-2] + ":" + text[-2:]
    return text


# ---------------------------------------------------------------------------- date literals

_WEEK_START = 6  # Sunday (date.weekday() numbering), as in Salesforce's default en_US locale


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _fixed_ranges(today: date) -> dict[str, tuple[date, date]]:
    week = today - timedelta(days=(today.weekday() - _WEEK_START) % 7)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    ranges = {
        "YESTERDAY": (today - timedelta(days=1), today),
        "TODAY": (today, today + timedelta(days=1)),
        "TOMORROW": (today + timedelta(days=1), today + timedelta(days=2)),
        "LAST_WEEK": (week - timedelta(days=7), week),
        "THIS_WEEK": (week, week + timedelta(days=7)),
        "NEXT_WEEK": (week + timedelta(days=7), week + timedelta(days=14)),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_90_DAYS": (today - timedelta(days=90), today + timedelta(days=1)),
        "NEXT_90_DAYS": (today + timedelta(days=1), today + timedelta(days=91)),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
    }
    # The org's fiscal year is the calendar year (Salesforce's default).
    for span in ("QUARTER", "YEAR"):
        for when in ("LAST", "THIS", "NEXT"):
            ranges[f"{when}_FISCAL_{span}"] = ranges[f"{when}_{span}"]
    return ranges


def _n_ranges(name: str, n: int, today: date) -> tuple[date, date] | None:
    week = today - timedelta(days=(today.weekday() - _WEEK_START) % 7)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    tomorrow = today + timedelta(days=1)
    table: dict[str, Callable[[], tuple[date, date]]] = {
        # LAST_N_DAYS:1 is yesterday and today: the current day counts.
        "LAST_N_DAYS": lambda: (today - timedelta(days=n), tomorrow),
        "NEXT_N_DAYS": lambda: (tomorrow, tomorrow + timedelta(days=n)),
        "N_DAYS_AGO": lambda: (today - timedelta(days=n), today - timedelta(days=n - 1)),
        "LAST_N_WEEKS": lambda: (week - timedelta(weeks=n), week),
        "NEXT_N_WEEKS": lambda: (week + timedelta(weeks=1), week + timedelta(weeks=n + 1)),
        "N_WEEKS_AGO": lambda: (week - timedelta(weeks=n), week - timedelta(weeks=n - 1)),
        "LAST_N_MONTHS": lambda: (_add_months(month, -n), month),
        "NEXT_N_MONTHS": lambda: (_add_months(month, 1), _add_months(month, n + 1)),
        "N_MONTHS_AGO": lambda: (_add_months(month, -n), _add_months(month, -n + 1)),
        "LAST_N_QUARTERS": lambda: (_add_months(quarter, -3 * n), quarter),
        "NEXT_N_QUARTERS": lambda: (_add_months(quarter, 3), _add_months(quarter, 3 * n + 3)),
        "N_QUARTERS_AGO": lambda: (_add_months(quarter, -3 * n), _add_months(quarter, -3 * n + 3)),
        "LAST_N_YEARS": lambda: (date(today.year - n, 1, 1), date(today.year, 1, 1)),
        "NEXT_N_YEARS": lambda: (date(today.year + 1, 1, 1), date(today.year + n + 1, 1, 1)),
        "N_YEARS_AGO": lambda: (date(today.year - n, 1, 1), date(today.year - n + 1, 1, 1)),
    }
    for span in ("QUARTERS", "YEARS"):
        for when in ("LAST_N", "NEXT_N", "N"):
            alias = f"{when}_FISCAL_{span}" + ("_AGO" if when == "N" else "")
            table[alias] = table[f"{when}_{span}" + ("_AGO" if when == "N" else "")]
    make = table.get(name)
    return make() if make is not None else None


def relative_range(text: str, lit: Literal, cat: str, field_name: str, today: date) -> tuple[Any, Any]:
    """The half-open ``[start, end)`` range a date literal stands for, as keys of ``cat``.

    Raises:
        SoqlError: MALFORMED_QUERY for an unknown literal or a missing/extra ``:n``;
            INVALID_FIELD when the field is neither a date nor a datetime.
    """
    name, n = lit.value
    if n is None:
        span = _fixed_ranges(today).get(name)
    else:
        span = _n_ranges(name, n, today)
    if span is None:
        raise SoqlError("MALFORMED_QUERY", located(text, lit.line, lit.column, f"unexpected token: '{lit.raw}'"))
    if cat == DATE:
        return span[0].isoformat(), span[1].isoformat()
    if cat == DATETIME:
        return format_datetime(_midnight(span[0])), format_datetime(_midnight(span[1]))
    raise SoqlError(
        "INVALID_FIELD",
        located(text, lit.line, lit.column,
                f"value of filter criterion for field '{field_name}' must be of type {_TYPE_WORD.get(cat, 'string')} "
                "and should be enclosed in quotes"),
    )


# ---------------------------------------------------------------------------- output


def _out_date(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v


def _out_datetime(v: Any) -> Any:
    if isinstance(v, datetime):
        return format_datetime(v)
    if isinstance(v, date):
        return format_datetime(_midnight(v))
    return v


def _out_number(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def _out_double(v: Any) -> Any:
    # Salesforce answers 5.0 for a Number(18,0) field: JSON numbers of double fields are floats.
    if isinstance(v, (Decimal, int)) and not isinstance(v, bool):
        return float(v)
    return v


def formatter(field_type: str) -> Callable[[Any], Any] | None:
    """How a stored value of ``field_type`` appears in a REST record (None: as stored)."""
    if field_type == "date":
        return _out_date
    if field_type == "datetime":
        return _out_datetime
    if field_type in ("double", "currency", "percent"):
        return _out_double
    if field_type in ("int", "long"):
        return _out_number
    return None


def json_value(v: Any) -> Any:
    """Make a computed value (aggregate results) JSON-ready."""
    if isinstance(v, datetime):
        return format_datetime(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v
