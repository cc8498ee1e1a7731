"""Turn mapped values into what Salesforce accepts, by the target field's describe type.

The output of every coercer is a string column holding exactly what goes into a Bulk CSV
cell: dates ``YYYY-MM-DD``, datetimes ``YYYY-MM-DDTHH:MM:SS.000Z`` in UTC, numbers as plain
decimals at the field's scale (``12.30``), booleans ``true``/``false``; null means an empty
cell. Strings make the output format-neutral (CSV for Bulk, JSON strings for REST, stable
text for the load job's change detection).

Each coercer works on the whole column with Arrow kernels and returns the rows it could not
convert as :class:`~sfsync.mappers.rows.RowError` values; those rows are rejected alone.
Numbers go through ``decimal128`` rather than floats so that ``0.005`` rounds to ``0.01``
(half away from zero, as Salesforce does) and 18-digit currency values stay exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.mappers.rows import RowError, as_array, is_numeric, is_string, to_mask

STRING_KINDS = frozenset({"string", "textarea", "email", "url", "phone", "encryptedstring", "id", "reference", "combobox"})
NUMBER_KINDS = frozenset({"double", "currency", "percent", "int", "long"})
PICKLIST_KINDS = frozenset({"picklist", "multipicklist"})
ALL_KINDS = STRING_KINDS | NUMBER_KINDS | PICKLIST_KINDS | {"date", "datetime", "boolean"}

_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)$"
# decimal128(38, 10) keeps 28 digits before the point; anything longer is out of every range.
_TOO_BIG_RE = r"^[+-]?0*[1-9]\d{27,}"
_WORK = pa.decimal128(38, 10)
_ISO_DATETIME_ZONED = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)$"
_ISO_DATETIME_NAIVE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_ISO_DATE_PREFIX = r"^\d{4}-\d{2}-\d{2}([T ].*)?$"
_NULL_STR = pa.scalar(None, pa.string())
TRUE_WORDS = ["true", "t", "yes", "y", "1", "on"]
FALSE_WORDS = ["false", "f", "no", "n", "0", "off"]


@dataclass(frozen=True)
class FieldType:
    """What a target field accepts; built from describe (import) or declared (export)."""

    name: str
    kind: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    picklist: frozenset[str] = field(default_factory=frozenset)
    restricted: bool = False

    @classmethod
    def from_describe(cls, f: dict[str, Any]) -> FieldType:
        """From one entry of a describe's ``fields`` list."""
        kind = str(f.get("type", "string")).lower()
        precision = int(f.get("precision") or f.get("digits") or 0)
        scale = int(f.get("scale") or 0)
        values = frozenset(str(p["value"]) for p in f.get("picklistValues") or [] if p.get("active", True))
        return cls(
            name=f["name"], kind=kind if kind in ALL_KINDS else "string", length=int(f.get("length") or 0),
            precision=precision, scale=0 if kind in ("int", "long") else scale, picklist=values,
            restricted=bool(f.get("restrictedPicklist")),
        )

    def label(self) -> str:
        """Human type name for messages: Currency(18,2), Text(80), Date…"""
        k = self.kind
        if k in ("double", "currency", "percent") and self.precision:
            return f"{'Number' if k == 'double' else k.capitalize()}({self.precision},{self.scale})"
        if k in STRING_KINDS and self.length:
            return f"Text({self.length})"
        return k.capitalize()


@dataclass(frozen=True)
class CoerceOptions:
    """Per-field parsing choices from the mapping."""

    date_formats: tuple[str, ...] = ("%Y-%m-%d", "iso")
    datetime_formats: tuple[str, ...] = ("iso",)
    timezone: str = "UTC"
    length: str = "reject"


def coerce(values: pa.Array, ft: FieldType, opts: CoerceOptions) -> tuple[pa.Array, list[RowError]]:
    """Coerce a column to the CSV text Salesforce expects for ``ft``.

    Args:
        values: Any Arrow array (strings from CSV, native types from parquet/JSON).
        ft: The target field.
        opts: Date formats, time zone, string length policy.

    Returns:
        ``(strings, errors)``: a string array of the same length (null where the row failed or
        the value is null) and the failed rows.
    """
    k = ft.kind
    if k in NUMBER_KINDS:
        return _numbers(values, ft)
    if k == "date":
        return _dates(values, ft, opts)
    if k == "datetime":
        return _datetimes(values, ft, opts)
    if k == "boolean":
        return _booleans(values, ft)
    return _strings(values, ft, opts)


def _err(mask: Any, code: str, message: str, values: pa.Array | None, n: int) -> list[RowError]:
    # pc.any is a single pass without a copy: clean columns never build a numpy mask.
    if isinstance(mask, pa.Array | pa.ChunkedArray) and not pc.any(mask).as_py():
        return []
    m = to_mask(mask, n)
    return [RowError(m, code, message, values)] if m.any() else []


def _canonical_number_re(ft: FieldType) -> str:
    """Text that already is what Salesforce wants: no sign noise, exactly ``scale`` decimals, fits."""
    whole = max((ft.precision or 18) - ft.scale, 1)
    frac = rf"\.\d{{{ft.scale}}}" if ft.scale else ""
    return rf"^-?(0|[1-9]\d{{0,{whole - 1}}}){frac}$"


def _numbers(v: pa.Array, ft: FieldType) -> tuple[pa.Array, list[RowError]]:
    n = len(v)
    errors: list[RowError] = []
    t = v.type
    if is_string(t) and ft.precision:
        # Fast path: billers nearly always write amounts exactly as Salesforce wants them
        # ("12.30" for Currency(18,2)); then the input is the output, checked by one regex.
        canonical = pc.match_substring_regex(v, _canonical_number_re(ft))
        if pc.all(pc.or_kleene(canonical, pc.is_null(v))).as_py():
            return (v if pa.types.is_string(t) else v.cast(pa.string())), []
    if is_string(t):
        s = pc.utf8_trim_whitespace(v)
        ok = pc.match_substring_regex(s, _NUMBER_RE)
        bad = pc.and_(pc.invert(ok), pc.not_equal(s, ""))
        errors += _err(bad, "INVALID_NUMBER", f"{ft.name}: {{value}} is not a number", v, n)
        big = pc.and_(ok, pc.match_substring_regex(s, _TOO_BIG_RE))
        errors += _err(big, "NUMBER_OUTSIDE_VALID_RANGE", f"{ft.name}: {{value}} is out of range for {ft.label()}", v, n)
        keep = pc.and_(ok, pc.invert(big))
        dec = pc.if_else(keep, s, _NULL_STR).cast(_WORK, safe=False)
    elif pa.types.is_floating(t):
        finite = pc.is_finite(v)
        errors += _err(pc.invert(finite), "INVALID_NUMBER", f"{ft.name}: {{value}} is not a number", v, n)
        big = pc.greater_equal(pc.abs(v), 1e27)
        errors += _err(big, "NUMBER_OUTSIDE_VALID_RANGE", f"{ft.name}: {{value}} is out of range for {ft.label()}", v, n)
        ok = pc.and_(finite, pc.invert(big))
        dec = pc.if_else(ok, v, pa.scalar(None, t)).cast(_WORK, safe=False)
    elif pa.types.is_integer(t) or pa.types.is_decimal(t):
        dec = v.cast(_WORK, safe=False)
    elif t == pa.null():
        return pa.nulls(n, pa.string()), []
    else:
        errors += _err(pc.is_valid(v), "INVALID_NUMBER", f"{ft.name}: {{value}} is not a number", v, n)
        return pa.nulls(n, pa.string()), errors
    scale = ft.scale
    rounded = pc.round(dec, ndigits=scale, round_mode="half_towards_infinity")
    if scale == 0 and ft.kind != "percent":
        frac = pc.not_equal(rounded, dec)
        errors += _err(frac, "FRACTION_NOT_ALLOWED",
                       f"{ft.name}: {{value}} has decimals; the field is {ft.label() if ft.precision else 'a whole number'}",
                       v, n)
    if ft.precision:
        limit = pa.scalar(Decimal(10) ** (ft.precision - scale), _WORK)
        over = pc.greater_equal(pc.abs(rounded), limit)
        errors += _err(over, "NUMBER_OUTSIDE_VALID_RANGE",
                       f"{ft.name}: {{value}} does not fit {ft.label()} ({ft.precision - scale} digits before the point)",
                       v, n)
    out = rounded.cast(pa.decimal128(38, scale), safe=False).cast(pa.string())
    return _blank_failed(out, errors, n), errors


def _blank_failed(out: pa.Array, errors: list[RowError], n: int) -> pa.Array:
    # A failed row's value must never reach Salesforce, even if a caller ignores the rejects.
    if not errors:
        return out
    mask = np.zeros(n, dtype=bool)
    for e in errors:
        mask |= e.mask
    return pc.if_else(pa.array(mask), _NULL_STR, out)


def parse_dates(s: pa.Array, formats: tuple[str, ...] | list[str]) -> pa.Array:
    """Strings to date32 trying ``formats`` in order ('iso' = a leading ``YYYY-MM-DD``)."""
    result: pa.Array | None = None
    for fmt in formats:
        if result is not None and not pc.any(pc.and_(pc.is_null(result), pc.is_valid(s))).as_py():
            break
        if fmt == "iso":
            iso = pc.match_substring_regex(s, _ISO_DATE_PREFIX)
            head = pc.utf8_slice_codeunits(pc.if_else(iso, s, _NULL_STR), 0, 10)
            got = strict_strptime(head, "%Y-%m-%d", "s")
        else:
            got = strict_strptime(s, fmt, "s")
        got = got.cast(pa.timestamp("s")).cast(pa.date32()) if got.type.tz is None else got.cast(pa.date32())
        result = got if result is None else pc.coalesce(result, got)
    return result if result is not None else pa.nulls(len(s), pa.date32())


def strict_strptime(s: pa.Array, fmt: str, unit: str) -> pa.Array:
    """``pc.strptime`` that refuses impossible days instead of rolling them over.

    Arrow's strptime reads ``2026-02-30`` as March 2nd. When the format has ``%d``, the day
    written is extracted with a regex built from the format and compared with the parsed day.
    """
    got = pc.strptime(s, fmt, unit, error_is_null=True)
    if "%d" not in fmt:
        return got
    pattern = "^" + re.escape(fmt).replace("%d", r"(?P<day>\d{1,2})")
    pattern = re.sub(r"%[A-Za-z]", ".+?", pattern.replace(r"\%", "%"))
    written = pc.struct_field(pc.extract_regex(s, pattern), [0])
    parsed_day = pc.day(got)
    ok = pc.equal(pc.cast(written, pa.int64(), safe=False), parsed_day)
    return pc.if_else(pc.fill_null(ok, False), got, pa.scalar(None, got.type))


def _to_text_for_parse(v: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(v if is_string(v.type) else v.cast(pa.string()))


def _dates(v: pa.Array, ft: FieldType, opts: CoerceOptions) -> tuple[pa.Array, list[RowError]]:
    n = len(v)
    errors: list[RowError] = []
    t = v.type
    if pa.types.is_date(t):
        d = v.cast(pa.date32())
    elif pa.types.is_timestamp(t):
        d = (pc.cast(v, pa.timestamp(t.unit, tz="UTC")) if t.tz else v).cast(pa.date32())
    elif t == pa.null():
        return pa.nulls(n, pa.string()), []
    else:
        fast = _iso_dates(v) if opts.date_formats and opts.date_formats[0] in ("%Y-%m-%d", "iso") else None
        if fast is not None:
            errs = _date_range_errors(fast[1], ft, v, n)
            return _blank_failed(fast[0], errs, n), errs
        s = _to_text_for_parse(v)
        d = parse_dates(s, opts.date_formats)
        bad = pc.and_(pc.is_null(d), pc.not_equal(s, ""))
        errors += _err(bad, "INVALID_DATE",
                       f"{ft.name}: {{value}} is not a date (formats: {', '.join(opts.date_formats)})", v, n)
    errors += _date_range_errors(d, ft, v, n)
    return _blank_failed(d.cast(pa.string()), errors, n), errors


def _date_range_errors(d: pa.Array, ft: FieldType, v: pa.Array, n: int) -> list[RowError]:
    # Salesforce stores dates from 1700 to 4000; outside that the insert fails anyway.
    year = pc.year(d)
    out_of_range = pc.or_(pc.less(year, 1700), pc.greater(year, 4000))
    return _err(out_of_range, "INVALID_DATE", f"{ft.name}: {{value}} is outside 1700-4000", v, n)


def _iso_dates(v: pa.Array) -> tuple[pa.Array, pa.Array] | None:
    """Strings that are all strict ``YYYY-MM-DD`` dates: themselves (and their date32), else None.

    Arrow's string→date32 cast is strict and fast but all-or-nothing, so it is the fast path
    for clean columns; any bad value sends the column through the per-row path instead.
    """
    if not is_string(v.type):
        return None
    lengths = pc.binary_length(v)
    if pc.min(lengths).as_py() != 10 or pc.max(lengths).as_py() != 10:
        return None
    try:
        d = v.cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    out = v if pa.types.is_string(v.type) else v.cast(pa.string())
    return out, d


def parse_datetimes(s: pa.Array, formats: tuple[str, ...] | list[str], timezone: str) -> pa.Array:
    """Strings to timestamp(ms, UTC). 'iso' = ISO 8601; values without an offset are in ``timezone``."""
    utc = pa.timestamp("ms", tz="UTC")
    result: pa.Array | None = None
    for fmt in formats:
        if fmt == "iso":
            zoned = pc.match_substring_regex(s, _ISO_DATETIME_ZONED)
            naive = pc.match_substring_regex(s, _ISO_DATETIME_NAIVE)
            a = _cast_ts(pc.if_else(zoned, s, _NULL_STR), pa.timestamp("us", tz="UTC"))
            b = _cast_ts(pc.if_else(naive, pc.replace_substring(s, " ", "T", max_replacements=1), _NULL_STR),
                         pa.timestamp("us"))
            b = pc.assume_timezone(b, timezone=timezone, ambiguous="earliest", nonexistent="latest")
            got = pc.coalesce(a.cast(utc, safe=False), b.cast(utc, safe=False))
        else:
            got = strict_strptime(s, fmt, "ms")
            if got.type.tz is None:
                got = pc.assume_timezone(got, timezone=timezone, ambiguous="earliest", nonexistent="latest")
            got = got.cast(utc)
        result = got if result is None else pc.coalesce(result, got)
    return result if result is not None else pa.nulls(len(s), utc)


def _cast_ts(s: pa.Array, t: pa.DataType) -> pa.Array:
    try:
        return s.cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # The regexes admit a few shapes Arrow's parser refuses (e.g. 'z'); parse those rows
        # one by one rather than failing the batch. Rare by construction.
        from dateutil import parser as du

        out = []
        for x in s.to_pylist():
            try:
                out.append(du.isoparse(x) if x is not None else None)
            except (ValueError, OverflowError):
                out.append(None)
        return pa.array(out, type=t, from_pandas=True) if t.tz is None else pa.array(
            [o if o is None or o.tzinfo else None for o in out], type=t)


def _datetimes(v: pa.Array, ft: FieldType, opts: CoerceOptions) -> tuple[pa.Array, list[RowError]]:
    n = len(v)
    errors: list[RowError] = []
    t = v.type
    utc = pa.timestamp("ms", tz="UTC")
    if pa.types.is_timestamp(t):
        ts = v.cast(pa.timestamp(t.unit, tz="UTC")) if t.tz else pc.assume_timezone(v, timezone=opts.timezone)
        ts = ts.cast(utc, safe=False)
    elif pa.types.is_date(t):
        ts = v.cast(pa.date32()).cast(pa.timestamp("ms")).cast(utc)
    elif t == pa.null():
        return pa.nulls(n, pa.string()), []
    else:
        s = _to_text_for_parse(v)
        ts = parse_datetimes(s, opts.datetime_formats, opts.timezone)
        bad = pc.and_(pc.is_null(ts), pc.not_equal(s, ""))
        errors += _err(bad, "INVALID_DATETIME",
                       f"{ft.name}: {{value}} is not a datetime (formats: {', '.join(opts.datetime_formats)})", v, n)
    text = pc.replace_substring(ts.cast(pa.string()), " ", "T", max_replacements=1)
    return _blank_failed(text, errors, n), errors


def _booleans(v: pa.Array, ft: FieldType) -> tuple[pa.Array, list[RowError]]:
    n = len(v)
    t = v.type
    if pa.types.is_boolean(t):
        b = v
        errors: list[RowError] = []
    elif is_numeric(t):
        b = pc.not_equal(v, 0)
        bad = pc.and_(pc.not_equal(v, 0), pc.not_equal(v, 1))
        errors = _err(bad, "INVALID_BOOLEAN", f"{ft.name}: {{value}} is not a boolean (0 or 1)", v, n)
    elif t == pa.null():
        return pa.nulls(n, pa.string()), []
    else:
        low = pc.utf8_lower(_to_text_for_parse(v))
        yes = pc.is_in(low, value_set=pa.array(TRUE_WORDS))
        no = pc.is_in(low, value_set=pa.array(FALSE_WORDS))
        bad = pc.and_(pc.invert(pc.or_(yes, no)), pc.not_equal(low, ""))
        errors = _err(bad, "INVALID_BOOLEAN",
                      f"{ft.name}: {{value}} is not a boolean (true/false, yes/no, y/n, 1/0)", v, n)
        b = pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
    out = pc.if_else(b, pa.scalar("true"), pa.scalar("false"))
    return _blank_failed(out, errors, n), errors


def to_text(v: pa.Array) -> pa.Array:
    """Any column as text the way a user wrote it: 12.0 → '12', dates ISO, booleans true/false."""
    t = v.type
    if is_string(t):
        return v if pa.types.is_string(t) else v.cast(pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(v, pa.scalar("true"), pa.scalar("false"))
    if pa.types.is_timestamp(t):
        utc = v.cast(pa.timestamp("ms", tz="UTC"), safe=False) if t.tz else v.cast(pa.timestamp("ms"), safe=False)
        return pc.replace_substring(utc.cast(pa.string()), " ", "T", max_replacements=1)
    if t == pa.null():
        return pa.nulls(len(v), pa.string())
    return v.cast(pa.string())


def _strings(v: pa.Array, ft: FieldType, opts: CoerceOptions) -> tuple[pa.Array, list[RowError]]:
    n = len(v)
    s = to_text(v)
    errors: list[RowError] = []
    if ft.kind in PICKLIST_KINDS and ft.picklist:
        allowed = pa.array(sorted(ft.picklist))
        if ft.kind == "multipicklist":
            parts = pc.split_pattern(s, ";")
            ok_each = pc.is_in(pc.list_flatten(parts), value_set=allowed)
            bad_rows = np.zeros(n, dtype=bool)
            parents = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False)
            bad_rows[parents[~ok_each.to_numpy(zero_copy_only=False)]] = True
            unknown = pa.array(bad_rows)
        else:
            unknown = pc.and_(pc.invert(pc.is_in(s, value_set=allowed)), pc.is_valid(s))
        if ft.restricted:
            errors += _err(unknown, "BAD_PICKLIST_VALUE",
                           f"{ft.name}: {{value}} is not a value of the restricted picklist", v, n)
    limit = ft.length or (255 if ft.kind in PICKLIST_KINDS else 0)
    if limit:
        # Bytes ≥ characters: only values longer than `limit` bytes can be too long, and they
        # are few; the characters of just those are counted (no pass decoding every value).
        s = as_array(s, n)
        candidates = pc.greater(pc.binary_length(s), limit)
        if pc.any(candidates).as_py():
            at = np.flatnonzero(to_mask(candidates, n))
            over = to_mask(pc.greater(pc.utf8_length(s.take(pa.array(at))), limit), len(at))
            if over.any():
                long = np.zeros(n, dtype=bool)
                long[at[over]] = True
                if opts.length == "truncate":
                    cut = pc.utf8_slice_codeunits(s.filter(pa.array(long)), 0, limit)
                    s = pc.replace_with_mask(s, pa.array(long), cut)
                else:
                    errors += _err(pa.array(long), "STRING_TOO_LONG", f"{ft.name}: {{value}} is longer than {ft.label()}", s, n)
    return _blank_failed(as_array(s, n), errors, n), errors
