"""Run a parsed formula over a whole batch with Arrow kernels.

Every node evaluates to an Arrow Array (one value per row) or a Scalar (a literal, a
variable); Arrow broadcasts scalars, so ``amount * 100`` is one multiply over the column.
Formula values have five kinds — string, number (float64), boolean, date (date32), datetime
(timestamp ms UTC) — plus lists from ``[]`` paths, which only the list aggregates accept.

Conversions between kinds follow Salesforce formulas: a string compared with or added to a
number is read as a number. A string that is not a number does not raise: the row gets a
:class:`RowError` (``INVALID_NUMBER``) and a null, and the compiler rejects it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.mappers import paths as P
from sfsync.mappers.expr import Call, Col, ExprError, Lit, Node, Op, Var
from sfsync.mappers.rows import RowError, as_array, blank_to_null, is_numeric, is_string, to_mask

# A pa.Array (one value per row) or a pa.Scalar (literal, variable). pyarrow ships no type
# stubs, so to mypy this is Any either way; the alias documents intent.
Value: TypeAlias = Any

NUMBER_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$"
ISO_DATE_RE = r"^\s*\d{4}-\d{1,2}-\d{1,2}\s*$"
TRUE_WORDS = ["true", "t", "yes", "y", "1", "on"]
FALSE_WORDS = ["false", "f", "no", "n", "0", "off"]
_NULL_STR = pa.scalar(None, pa.string())


@dataclass
class Context:
    """What a formula may read besides the row: the biller's name, today, the trim date."""

    biller: str = ""
    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    trim_date: date | None = None


def kind(v: Value) -> str:
    """The formula kind of a value: string, number, boolean, date, datetime, list or null."""
    t = v.type
    if t == pa.null():
        return "null"
    if is_string(t):
        return "string"
    if is_numeric(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return "other"


class Evaluator:
    """Evaluates formulas over one batch; collects row errors in ``errors``."""

    def __init__(self, table: pa.Table, ctx: Context, label: str, errors: list[RowError],
                 cache: dict[str, pa.Array] | None = None, blank_is_null: bool = True) -> None:
        self.table = table
        self.n = table.num_rows
        self.ctx = ctx
        self.label = label
        self.errors = errors
        self.cache = cache if cache is not None else {}
        self.blank_is_null = blank_is_null

    # -- entry points -------------------------------------------------------------------------
    def column(self, path: P.Path) -> pa.Array:
        """A source path's values (cached per batch; blanks as nulls)."""
        got = self.cache.get(path.text)
        if got is None:
            got = P.resolve(self.table, path)
            if self.blank_is_null:
                got = blank_to_null(got)
            self.cache[path.text] = got
        return got

    def array(self, node: Node) -> pa.Array:
        """Evaluate and broadcast to a batch-length Array."""
        return as_array(self.eval(node), self.n)

    def eval(self, node: Node) -> Value:
        """Evaluate one node."""
        if isinstance(node, Lit):
            return _literal(node.value)
        if isinstance(node, Col):
            return self.column(node.path)
        if isinstance(node, Var):
            if node.name == "biller":
                return pa.scalar(self.ctx.biller, pa.string())
            if node.name == "today":
                return pa.scalar(self.ctx.today, pa.date32())
            return pa.scalar(self.ctx.trim_date, pa.date32())
        if isinstance(node, Op):
            return self._op(node)
        return self._call(node)

    # -- conversions --------------------------------------------------------------------------
    def num(self, v: Value) -> Value:
        """As float64; strings that are not numbers become null with an INVALID_NUMBER row error."""
        k = kind(v)
        if k == "number" or k == "boolean":
            return v.cast(pa.float64())
        if k == "null":
            return pa.scalar(None, pa.float64()) if isinstance(v, pa.Scalar) else pa.nulls(len(v), pa.float64())
        if k == "string":
            try:
                # Arrow's cast is strict (all-or-nothing) and fast: the common clean case. It also
                # reads "nan"/"inf", which are not numbers to a biller: those take the slow path.
                fast = v.cast(pa.float64())
                if pc.all(pc.or_kleene(pc.is_finite(fast), pc.is_null(fast))).as_py():
                    return fast
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
            ok = pc.match_substring_regex(v, NUMBER_RE)
            self._flag(pc.invert(ok), "INVALID_NUMBER", "{value} is not a number", v)
            return pc.if_else(ok, pc.utf8_trim_whitespace(v), _NULL_STR).cast(pa.float64())
        raise ExprError(f"a {k} cannot be used as a number")

    def str_(self, v: Value) -> Value:
        """As string: numbers without a trailing .0, dates ISO, datetimes ISO UTC, true/false."""
        k = kind(v)
        if k == "string":
            return v
        if k == "null":
            return _NULL_STR if isinstance(v, pa.Scalar) else pa.nulls(len(v), pa.string())
        if k == "boolean":
            return pc.if_else(v, pa.scalar("true"), pa.scalar("false"))
        if k == "datetime":
            return pc.strftime(v, "%Y-%m-%dT%H:%M:%S.000Z") if v.type.tz else pc.strftime(v, "%Y-%m-%dT%H:%M:%S")
        if k == "list":
            raise ExprError("a list ([] path) needs SUM/COUNT/FIRST/JOIN before it can be used as text")
        return v.cast(pa.string())

    def bool_(self, v: Value) -> Value:
        """As boolean: true/false/yes/no/y/n/1/0 (case-insensitive); numbers are true when non-zero."""
        k = kind(v)
        if k == "boolean":
            return v
        if k == "null":
            return pa.scalar(None, pa.bool_()) if isinstance(v, pa.Scalar) else pa.nulls(len(v), pa.bool_())
        if k == "number":
            return pc.not_equal(v, 0)
        if k == "string":
            low = pc.utf8_lower(pc.utf8_trim_whitespace(v))
            yes = pc.is_in(low, value_set=pa.array(TRUE_WORDS))
            no = pc.is_in(low, value_set=pa.array(FALSE_WORDS))
            bad = pc.and_(pc.invert(pc.or_(yes, no)), pc.is_valid(v))
            self._flag(bad, "INVALID_BOOLEAN", "{value} is not a boolean", v)
            return pc.if_else(yes, True, pc.if_else(no, False, pa.scalar(None, pa.bool_())))
        raise ExprError(f"a {k} cannot be used as a boolean")

    def date_(self, v: Value) -> Value:
        """As date32; strings must be ``YYYY-MM-DD`` (use a field's date_format for others)."""
        k = kind(v)
        if k == "date":
            return v
        if k == "datetime":
            return v.cast(pa.date32())
        if k == "null":
            return pa.scalar(None, pa.date32()) if isinstance(v, pa.Scalar) else pa.nulls(len(v), pa.date32())
        if k == "string":
            from sfsync.mappers.coerce import parse_dates

            arr = as_array(v, 1) if isinstance(v, pa.Scalar) else v
            parsed = parse_dates(pc.utf8_trim_whitespace(arr), ("%Y-%m-%d", "iso"))
            bad = pc.and_(pc.is_null(parsed), pc.is_valid(arr))
            if isinstance(v, pa.Scalar):
                if bad[0].as_py():
                    raise ExprError(f"{v.as_py()!r} is not a date (YYYY-MM-DD)")
                return parsed[0]
            self._flag(bad, "INVALID_DATE", "{value} is not a date (YYYY-MM-DD)", v)
            return parsed
        raise ExprError(f"a {k} cannot be used as a date")

    def datetime_(self, v: Value) -> Value:
        """As timestamp(ms, UTC); strings ISO 8601 with an offset or Z (naive means UTC)."""
        from sfsync.mappers.coerce import parse_datetimes

        k = kind(v)
        if k == "datetime":
            return v
        if k == "date":
            return v.cast(pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC"))
        if k == "null":
            return pa.nulls(self.n, pa.timestamp("ms", tz="UTC"))
        arr = as_array(self.str_(v), self.n)
        parsed = parse_datetimes(arr, ["iso"], "UTC")
        self._flag(pc.and_(pc.is_null(parsed), pc.is_valid(arr)), "INVALID_DATETIME", "{value} is not a datetime", arr)
        return parsed

    def _flag(self, bad: Value, code: str, message: str, values: Value) -> None:
        # A scalar condition (literals only) fails every row or none.
        mask = to_mask(bad, self.n)
        if mask.any():
            self.errors.append(RowError(mask, code, f"{self.label}: {message}", as_array(values, self.n)))

    def unify(self, values: list[Value]) -> list[Value]:
        """Bring values to one kind (for IF/CASE/COALESCE/MIN/MAX): nulls follow, else string."""
        kinds = {kind(v) for v in values} - {"null"}
        if not kinds:
            return values
        if len(kinds) == 1:
            only = kinds.pop()
            target = {"number": self.num, "string": self.str_, "boolean": self.bool_,
                      "date": self.date_, "datetime": self.datetime_}.get(only)
            if target is None:
                raise ExprError(f"cannot use a {only} here")
            return [target(v) for v in values]
        if kinds <= {"date", "datetime"}:
            return [self.datetime_(v) for v in values]
        return [self.str_(v) for v in values]

    # -- operators ----------------------------------------------------------------------------
    def _op(self, node: Op) -> Value:
        op = node.op
        if op in ("and", "or"):
            vals = [self.bool_(self.eval(a)) for a in node.args]
            fn = pc.and_kleene if op == "and" else pc.or_kleene
            out = vals[0]
            for v in vals[1:]:
                out = fn(out, v)
            return out
        if op == "not":
            return pc.invert(self.bool_(self.eval(node.args[0])))
        if op == "neg":
            return pc.negate(self.num(self.eval(node.args[0])))
        if op == "&":
            return self._concat([self.eval(a) for a in node.args])
        a, b = (self.eval(x) for x in node.args)
        if op in ("=", "!=", "<", "<=", ">", ">="):
            return self._compare(op, a, b)
        ka, kb = kind(a), kind(b)
        if op in ("+", "-") and ka == "date":
            days = self.num(b) if op == "+" else pc.negate(self.num(b))
            if kb == "date" and op == "-":
                return pc.subtract(a.cast(pa.int32()), b.cast(pa.int32())).cast(pa.float64())
            return _add_days(a, days)
        if op == "+" and kb == "date":
            return _add_days(b, self.num(a))
        x, y = self.num(a), self.num(b)
        if op == "+":
            return pc.add(x, y)
        if op == "-":
            return pc.subtract(x, y)
        if op == "*":
            return pc.multiply(x, y)
        zero = pc.equal(y, 0.0)
        self._flag(zero, "DIVISION_BY_ZERO", "division by zero (divisor {value})", y)
        return pc.if_else(pc.fill_null(zero, False), pa.scalar(None, pa.float64()), pc.divide(x, y))

    def _compare(self, op: str, a: Value, b: Value) -> Value:
        kinds = {kind(a), kind(b)}
        if "number" in kinds:
            a, b = self.num(a), self.num(b)
        elif kinds & {"date", "datetime"}:
            if "datetime" in kinds:
                a, b = self.datetime_(a), self.datetime_(b)
            else:
                a, b = self.date_(a), self.date_(b)
        elif "boolean" in kinds:
            a, b = self.bool_(a), self.bool_(b)
        else:
            a, b = self.str_(a), self.str_(b)
        fn = {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
              ">": pc.greater, ">=": pc.greater_equal}[op]
        return fn(a, b)

    def _concat(self, vals: list[Value]) -> Value:
        # Salesforce's & treats a blank operand as empty text, not as "null poisons all".
        strs = [self.str_(v) for v in vals]
        return pc.binary_join_element_wise(*strs, "", null_handling="replace", null_replacement="")

    # -- functions ----------------------------------------------------------------------------
    def _call(self, node: Call) -> Value:
        from sfsync.mappers.functions import call

        return call(self, node)


def _literal(value: object) -> pa.Scalar:
    if value is None:
        return pa.scalar(None)
    if isinstance(value, bool):
        return pa.scalar(value, pa.bool_())
    if isinstance(value, Decimal | int | float):
        return pa.scalar(float(value), pa.float64())
    return pa.scalar(str(value), pa.string())


def _add_days(d: Value, days: Value) -> Value:
    whole = pc.round(days, 0).cast(pa.int32())
    return pc.add(d.cast(pa.int32()), whole).cast(pa.date32())


def add_months(d: pa.Array, months: pa.Array, n: int) -> pa.Array:
    """Calendar month arithmetic: Jan 31 + 1 month is Feb 28/29 (the month's last day)."""
    d = as_array(d, n)
    k = as_array(months, n)
    null = (pc.is_null(d).to_numpy(zero_copy_only=False) | pc.is_null(k).to_numpy(zero_copy_only=False))
    days = pc.fill_null(d.cast(pa.int32()), 0).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    month0 = days.astype("datetime64[M]")
    dom = (days - month0.astype("datetime64[D]")).astype(np.int64)
    step = np.round(pc.fill_null(k.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)).astype(np.int64)
    target = month0 + step
    dim = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    out = target.astype("datetime64[D]") + np.minimum(dom, dim - 1)
    return pa.array(out.astype(np.int64).astype(np.int32), type=pa.int32(), mask=null).cast(pa.date32())


def make_dates(y: pa.Array, m: pa.Array, d: pa.Array, n: int) -> tuple[pa.Array, np.ndarray]:
    """DATE(y, m, d) over columns; returns the dates and a mask of impossible dates."""
    ys, ms, ds = (as_array(x, n) for x in (y, m, d))
    null = np.zeros(n, dtype=bool)
    cols = []
    for x in (ys, ms, ds):
        null |= pc.is_null(x).to_numpy(zero_copy_only=False)
        cols.append(np.round(pc.fill_null(x.cast(pa.float64()), 1.0).to_numpy(zero_copy_only=False)).astype(np.int64))
    yy, mm, dd = cols
    bad_month = (mm < 1) | (mm > 12) | (yy < 1) | (yy > 9999)
    mm = np.where(bad_month, 1, mm)
    yy = np.where(bad_month, 1970, yy)
    month = ((yy - 1970) * 12 + (mm - 1)).astype("datetime64[M]")
    dim = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
    bad = (bad_month | (dd < 1) | (dd > dim)) & ~null
    out = month.astype("datetime64[D]") + np.clip(dd - 1, 0, None)
    arr = pa.array(out.astype(np.int64).astype(np.int32), type=pa.int32(), mask=null | bad).cast(pa.date32())
    return arr, bad
