"""Per-field value converters: client value (CSV string or JSON value) → stored value.

A converter is built once per field (and cached on the org), then called for each
non-null cell. It returns the value to store or raises :class:`FieldError` with
Salesforce's code and message. Stored values are JSON-ready: text as ``str``, numbers as
``float`` (``int`` for int fields), booleans, dates as ``YYYY-MM-DD`` and datetimes as
``YYYY-MM-DDTHH:MM:SS.fff+0000`` — both of which sort correctly as strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from sfsync.emulator.errors import FieldError
from sfsync.emulator.schema import FieldDef

Converter = Callable[[object], object]

_NUMBER_RE = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = frozenset({"true", "1"})
# Salesforce's valid range for Date and DateTime values.
MIN_YEAR, MAX_YEAR = 1700, 4000
_FALSE = frozenset({"false", "0"})


def format_datetime(dt: datetime) -> str:
    """Format an aware datetime as Salesforce does: ``2026-11-25T10:00:00.000+0000`` (UTC)."""
    dt = dt.astimezone(UTC)
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
            f"{dt.microsecond // 1000:03d}+0000")


def _not_of_type(fd: FieldDef, value: object) -> FieldError:
    return FieldError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{fd.label}: value not of required type: {value}", [fd.name])


def _text(fd: FieldDef) -> Converter:
    limit = fd.length

    def conv(value: object) -> object:
        if not isinstance(value, str):
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = str(value)
            else:
                raise _not_of_type(fd, value)
        if len(value) > limit:
            raise FieldError("STRING_TOO_LONG", f"{fd.label}: data value too large: {value} (max length={limit})", [fd.name])
        return value

    return conv


def _email(fd: FieldDef) -> Converter:
    text = _text(fd)

    def conv(value: object) -> object:
        out = text(value)
        if not _EMAIL_RE.match(str(out)):
            raise FieldError("INVALID_EMAIL_ADDRESS", f"{fd.label}: invalid email address: {out}", [fd.name])
        return out

    return conv


def _picklist(fd: FieldDef) -> Converter:
    text = _text(fd)
    allowed = frozenset(fd.picklist)
    multi = fd.type == "multipicklist"

    def conv(value: object) -> object:
        out = str(text(value))
        if fd.restricted:
            parts = out.split(";") if multi else [out]
            for part in parts:
                if part not in allowed:
                    raise FieldError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                     f"{fd.label}: bad value for restricted picklist field: {part}", [fd.name])
        return out

    return conv


def _number(fd: FieldDef) -> Converter:
    limit = 10 ** (fd.precision - fd.scale)
    scale = fd.scale
    as_int = fd.type == "int"

    def conv(value: object) -> object:
        if isinstance(value, str):
            if not _NUMBER_RE.match(value):
                raise _not_of_type(fd, value)
            num = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            num = float(value)
        else:
            raise _not_of_type(fd, value)
        if not math.isfinite(num) or abs(num) >= limit:
            raise FieldError("NUMBER_OUTSIDE_VALID_RANGE",
                             f"{fd.label}: value outside of valid range on numeric field: {value}", [fd.name])
        if scale == 0:
            if num != int(num):
                # Number(p,0) fields refuse decimals (see docs/emulator.md: stricter than the API).
                raise FieldError("NUMBER_OUTSIDE_VALID_RANGE",
                                 f"{fd.label}: value outside of valid range on numeric field: {value}", [fd.name])
            return int(num) if as_int else float(int(num))
        return round(num, scale)

    return conv


def _boolean(fd: FieldDef) -> Converter:
    def conv(value: object) -> object:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        elif isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _not_of_type(fd, value)

    return conv


def _date(fd: FieldDef) -> Converter:
    cache: dict[str, str] = {}

    def conv(value: object) -> object:
        if not isinstance(value, str):
            raise _not_of_type(fd, value)
        hit = cache.get(value)
        if hit is not None:
            return hit
        text = value.strip()
        try:
            if len(text) > 10 and text[10] in "T ":
                out = datetime.fromisoformat(text.replace(" ", "T")).date().isoformat()
            elif len(text) == 10:
                out = date.fromisoformat(text).isoformat()
            else:
                raise ValueError(text)
            if not MIN_YEAR <= int(out[:4]) <= MAX_YEAR:
                raise ValueError(text)
        except ValueError:
            raise _not_of_type(fd, value) from None
        if len(cache) < 100_000:
            cache[value] = out
        return out

    return conv


def _datetime(fd: FieldDef) -> Converter:
    cache: dict[str, str] = {}

    def conv(value: object) -> object:
        if not isinstance(value, str):
            raise _not_of_type(fd, value)
        hit = cache.get(value)
        if hit is not None:
            return hit
        text = value.strip()
        try:
            if len(text) == 10:
                dt = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            else:
                # Salesforce writes +0000 without a colon; fromisoformat wants +00:00.
                if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
                    text = text[:-2] + ":" + text[-2:]
                dt = datetime.fromisoformat(text)
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=UTC)
            if not MIN_YEAR <= dt.year <= MAX_YEAR:
                raise ValueError(text)
        except (ValueError, OverflowError):
            raise _not_of_type(fd, value) from None
        out = format_datetime(dt)
        if len(cache) < 100_000:
            cache[value] = out
        return out

    return conv


def build_converter(fd: FieldDef) -> Converter:
    """The converter for a non-reference field (references are resolved by the DML engine)."""
    if fd.type == "email":
        return _email(fd)
    if fd.type in ("picklist", "multipicklist"):
        return _picklist(fd)
    if fd.type in ("double", "currency", "percent", "int"):
        return _number(fd)
    if fd.type == "boolean":
        return _boolean(fd)
    if fd.type == "date":
        return _date(fd)
    if fd.type == "datetime":
        return _datetime(fd)
    return _text(fd)
