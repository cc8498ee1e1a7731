"""The formula functions, each one or a few Arrow kernels over whole columns.

Arguments that shape the computation — a length for LEFT, the digits for ROUND, the text
SUBSTITUTE replaces — must be literals, so that each function stays a single kernel call
rather than a per-row loop. The catalogue (names and argument counts) is in
:data:`sfsync.mappers.expr.FUNCTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from sfsync.mappers import paths as P
from sfsync.mappers.evaluate import Evaluator, Value, add_months, kind, make_dates
from sfsync.mappers.expr import Call, Col, ExprError, Lit, Node, Op
from sfsync.mappers.rows import as_array, to_mask


def _literal_int(node: Node, fn: str, what: str) -> int:
    if isinstance(node, Lit) and node.value is not None and not isinstance(node.value, bool | str):
        return int(node.value)
    raise ExprError(f"{fn}(): the {what} must be a number literal")


def _literal_str(node: Node, fn: str, what: str, ev: Evaluator | None = None) -> str:
    if isinstance(node, Lit) and isinstance(node.value, str):
        return node.value
    if ev is not None:
        # Anything that is one value for the whole batch ($biller & ':') works like a literal.
        value = ev.eval(node)
        if isinstance(value, pa.Scalar) and kind(value) == "string" and value.is_valid:
            return str(value.as_py())
    raise ExprError(f"{fn}(): the {what} must be a text literal (or $biller)")


def _list_arg(ev: Evaluator, node: Node) -> Value:
    if isinstance(node, Col):
        return ev.column(node.path)
    return ev.eval(node)


def _if(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    cond = pc.fill_null(ev.bool_(ev.eval(a[0])), False)
    yes, no = ev.unify([ev.eval(a[1]), ev.eval(a[2])])
    return pc.if_else(cond, yes, no)


def _case(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    subject = ev.eval(a[0])
    rest = list(a[1:])
    otherwise: Value = pa.scalar(None)
    if len(rest) % 2:
        otherwise = ev.eval(rest.pop())
    whens = [ev.eval(x) for x in rest[0::2]]
    thens = [ev.eval(x) for x in rest[1::2]]
    unified = ev.unify(thens + [otherwise])
    out = unified[-1]
    for when, then in zip(reversed(whens), reversed(unified[:-1]), strict=True):
        hit = pc.fill_null(ev._compare("=", subject, when), False)
        out = pc.if_else(hit, then, out)
    return out


def _isblank(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    v = ev.eval(a[0])
    if kind(v) == "string":
        return pc.or_kleene(pc.is_null(v), pc.equal(pc.utf8_trim_whitespace(v), ""))
    return pc.is_null(v)


def _coalesce(ev: Evaluator, a: tuple[Node, ...], blank: bool = False) -> Value:
    vals = [ev.eval(x) for x in a]
    if blank:
        vals = [pc.if_else(pc.equal(pc.utf8_trim_whitespace(v), ""), pa.scalar(None, v.type), v)
                if kind(v) == "string" else v for v in vals]
    vals = ev.unify(vals)
    return pc.coalesce(*vals) if len(vals) > 1 else vals[0]


def _minmax(ev: Evaluator, a: tuple[Node, ...], fn: str) -> Value:
    if len(a) == 1:
        return P.aggregate(as_array(_list_arg(ev, a[0]), ev.n), fn)
    vals = [ev.eval(x) for x in a]
    kinds = {kind(v) for v in vals} - {"null"}
    vals = ev.unify(vals) if kinds - {"number", "string"} else [ev.num(v) for v in vals]
    f = pc.min_element_wise if fn == "min" else pc.max_element_wise
    return f(*vals, skip_nulls=False)


def _date(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    y, m, d = (as_array(ev.num(ev.eval(x)), ev.n) for x in a)
    dates, bad = make_dates(y, m, d, ev.n)
    if bad.any():
        shown = pc.binary_join_element_wise(*(ev.str_(v) for v in (y, m, d)), "-")
        ev._flag(pa.array(bad), "INVALID_DATE", "DATE({value}) is not a calendar date", shown)
    return dates


def _mod(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    x, y = ev.num(ev.eval(a[0])), ev.num(ev.eval(a[1]))
    zero = pc.equal(y, 0.0)
    ev._flag(zero, "DIVISION_BY_ZERO", "MOD by zero (divisor {value})", y)
    safe = pc.if_else(pc.fill_null(zero, False), pa.scalar(None, pa.float64()), y)
    return pc.subtract(x, pc.multiply(safe, pc.floor(pc.divide(x, safe))))


def _pad(ev: Evaluator, a: tuple[Node, ...], left: bool) -> Value:
    s = ev.str_(ev.eval(a[0]))
    width = _literal_int(a[1], "LPAD" if left else "RPAD", "length")
    pad = _literal_str(a[2], "LPAD", "padding") if len(a) > 2 else " "
    if len(pad) != 1:
        raise ExprError("LPAD()/RPAD(): the padding must be one character")
    padded = (pc.utf8_lpad if left else pc.utf8_rpad)(s, width=width, padding=pad)
    # Salesforce's LPAD/RPAD also cut text longer than the width.
    return pc.utf8_slice_codeunits(padded, 0, width)


def _round(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    digits = _literal_int(a[1], "ROUND", "number of digits") if len(a) > 1 else 0
    return pc.round(ev.num(ev.eval(a[0])), ndigits=digits, round_mode="half_towards_infinity")


def _str_fn(kernel: Callable[[Value], Value]) -> Callable[[Evaluator, tuple[Node, ...]], Value]:
    return lambda ev, a: kernel(ev.str_(ev.eval(a[0])))


def _num_fn(kernel: Callable[[Value], Value]) -> Callable[[Evaluator, tuple[Node, ...]], Value]:
    return lambda ev, a: kernel(ev.num(ev.eval(a[0])))


def _date_part(kernel: Callable[[Value], Value]) -> Callable[[Evaluator, tuple[Node, ...]], Value]:
    return lambda ev, a: kernel(ev.date_(ev.eval(a[0]))).cast(pa.float64())


def _agg(how: str) -> Callable[[Evaluator, tuple[Node, ...]], Value]:
    def run(ev: Evaluator, a: tuple[Node, ...]) -> Value:
        sep = _literal_str(a[1], "JOIN", "separator") if len(a) > 1 else ";"
        return P.aggregate(as_array(_list_arg(ev, a[0]), ev.n), how, sep)

    return run


_TABLE: dict[str, Callable[[Evaluator, tuple[Node, ...]], Value]] = {
    "IF": _if,
    "CASE": _case,
    "AND": lambda ev, a: ev._op(Op("and", a)),
    "OR": lambda ev, a: ev._op(Op("or", a)),
    "NOT": lambda ev, a: pc.invert(ev.bool_(ev.eval(a[0]))),
    "ISBLANK": _isblank,
    "ISNULL": lambda ev, a: pc.is_null(ev.eval(a[0])),
    "COALESCE": _coalesce,
    "NULLVALUE": _coalesce,
    "BLANKVALUE": lambda ev, a: _coalesce(ev, a, blank=True),
    "CONCAT": lambda ev, a: ev._concat([ev.eval(x) for x in a]),
    "UPPER": _str_fn(pc.utf8_upper),
    "LOWER": _str_fn(pc.utf8_lower),
    "TRIM": _str_fn(pc.utf8_trim_whitespace),
    "LEN": lambda ev, a: pc.utf8_length(ev.str_(ev.eval(a[0]))).cast(pa.float64()),
    "LEFT": lambda ev, a: pc.utf8_slice_codeunits(ev.str_(ev.eval(a[0])), 0, max(_literal_int(a[1], "LEFT", "length"), 0)),
    "RIGHT": lambda ev, a: _right(ev, a),
    "MID": lambda ev, a: pc.utf8_slice_codeunits(
        ev.str_(ev.eval(a[0])), max(_literal_int(a[1], "MID", "start") - 1, 0),
        max(_literal_int(a[1], "MID", "start") - 1, 0) + max(_literal_int(a[2], "MID", "length"), 0)),
    "SUBSTITUTE": lambda ev, a: pc.replace_substring(
        ev.str_(ev.eval(a[0])), _literal_str(a[1], "SUBSTITUTE", "text to replace", ev),
        _literal_str(a[2], "SUBSTITUTE", "replacement", ev)),
    "CONTAINS": lambda ev, a: pc.match_substring(ev.str_(ev.eval(a[0])), _literal_str(a[1], "CONTAINS", "text", ev)),
    "BEGINS": lambda ev, a: pc.starts_with(ev.str_(ev.eval(a[0])), _literal_str(a[1], "BEGINS", "text", ev)),
    "LPAD": lambda ev, a: _pad(ev, a, True),
    "RPAD": lambda ev, a: _pad(ev, a, False),
    "TEXT": lambda ev, a: ev.str_(ev.eval(a[0])),
    "VALUE": lambda ev, a: ev.num(ev.eval(a[0])),
    "ROUND": _round,
    "ABS": _num_fn(pc.abs),
    "FLOOR": _num_fn(pc.floor),
    "CEILING": _num_fn(pc.ceil),
    "MOD": _mod,
    "MIN": lambda ev, a: _minmax(ev, a, "min"),
    "MAX": lambda ev, a: _minmax(ev, a, "max"),
    "DATE": _date,
    "DATEVALUE": lambda ev, a: ev.date_(ev.eval(a[0])),
    "DATETIMEVALUE": lambda ev, a: ev.datetime_(ev.eval(a[0])),
    "TODAY": lambda ev, a: pa.scalar(ev.ctx.today, pa.date32()),
    "NOW": lambda ev, a: pa.scalar(datetime.now(UTC).replace(microsecond=0), pa.timestamp("ms", tz="UTC")),
    "ADDDAYS": lambda ev, a: _adddays(ev, a),
    "ADDMONTHS": lambda ev, a: add_months(ev.date_(ev.eval(a[0])), ev.num(ev.eval(a[1])), ev.n),
    "YEAR": _date_part(pc.year),
    "MONTH": _date_part(pc.month),
    "DAY": _date_part(pc.day),
    "SUM": _agg("sum"),
    "COUNT": _agg("count"),
    "FIRST": _agg("first"),
    "JOIN": _agg("join"),
    "LISTMIN": _agg("min"),
    "LISTMAX": _agg("max"),
    "BILLER": lambda ev, a: pa.scalar(ev.ctx.biller, pa.string()),
}


def _right(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    s = ev.str_(ev.eval(a[0]))
    width = _literal_int(a[1], "RIGHT", "length")
    return pc.utf8_slice_codeunits(s, -width) if width > 0 else pc.utf8_slice_codeunits(s, 0, 0)


def _adddays(ev: Evaluator, a: tuple[Node, ...]) -> Value:
    d = ev.date_(ev.eval(a[0]))
    days = pc.round(ev.num(ev.eval(a[1])), 0).cast(pa.int32())
    return pc.add(d.cast(pa.int32()), days).cast(pa.date32())


def call(ev: Evaluator, node: Call) -> Value:
    """Evaluate a function call node."""
    fn = _TABLE.get(node.name)
    if fn is None:
        raise ExprError(f"unknown function {node.name}()")
    return fn(ev, node.args)


def truthy(ev: Evaluator, node: Node) -> object:
    """A condition's mask over the batch (null counts as false)."""
    return to_mask(ev.bool_(ev.eval(node)), ev.n)
