"""Resolve a parsed query against the org's schema and compile conditions to closures.

A condition becomes one Python closure per node, built once per query, so filtering
100,000 rows costs a handful of function calls per row rather than a walk of the tree.
Field paths become getters that follow parent lookups through ``org.by_id`` (cached for
the query's lifetime).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sfsync.emulator.errors import SfApiError
from sfsync.emulator.soql_parse import (
    And,
    Compare,
    FieldPath,
    Literal,
    Not,
    Operand,
    Or,
    Query,
    SoqlError,
    located,
    unescape,
)
from sfsync.emulator.soql_values import (
    DATE,
    DATETIME,
    ID,
    NUMBER,
    TEXT,
    Normalizer,
    category,
    literal_key,
    normalizer,
    relative_range,
    to_date,
    to_datetime,
)

# Rows are stored records for WHERE and (groups, aggregates) pairs for HAVING.
Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]

_CUSTOM_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_CUSTOM_REL_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the custom "
    "relationship name. Please reference your WSDL or the describe call for the appropriate names."
)
_CUSTOM_TYPE_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)

AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"})
PASS_THROUGH = frozenset({"TOLABEL", "FORMAT", "CONVERTCURRENCY"})


def _week_day(d: date) -> int:
    return (d.weekday() + 1) % 7 + 1  # Sunday is 1, as in Salesforce


# Date functions: name -> (function of a date or datetime, result category, datetime only).
_DATE_FUNCTIONS: dict[str, tuple[Callable[[Any], Any], str, bool]] = {
    "CALENDAR_YEAR": (lambda d: d.year, NUMBER, False),
    "CALENDAR_MONTH": (lambda d: d.month, NUMBER, False),
    "CALENDAR_QUARTER": (lambda d: (d.month - 1) // 3 + 1, NUMBER, False),
    "FISCAL_YEAR": (lambda d: d.year, NUMBER, False),
    "FISCAL_MONTH": (lambda d: d.month, NUMBER, False),
    "FISCAL_QUARTER": (lambda d: (d.month - 1) // 3 + 1, NUMBER, False),
    "DAY_IN_MONTH": (lambda d: d.day, NUMBER, False),
    "DAY_IN_WEEK": (_week_day, NUMBER, False),
    "DAY_IN_YEAR": (lambda d: d.timetuple().tm_yday, NUMBER, False),
    "WEEK_IN_MONTH": (lambda d: (d.day - 1) // 7 + 1, NUMBER, False),
    "WEEK_IN_YEAR": (lambda d: (d.timetuple().tm_yday - 1) // 7 + 1, NUMBER, False),
    "DAY_ONLY": (lambda d: d.date().isoformat(), DATE, True),
    "HOUR_IN_DAY": (lambda d: d.hour, NUMBER, True),
}


@dataclass(slots=True)
class ObjectMeta:
    """What the engine needs from one object's describe, indexed case-insensitively."""

    name: str
    key_prefix: str
    fields: dict[str, dict[str, Any]]
    relationships: dict[str, dict[str, Any]]


@dataclass(slots=True)
class Ref:
    """A resolved operand: how to read it from a record and how to compare it."""

    get: Getter
    cat: str
    field_type: str
    name: str  # canonical leaf name (for messages and aggregate keys)
    path: tuple[str, ...]  # canonical path: relationship names then the field name
    chain: tuple[tuple[str, str, str], ...]  # (lookup field, relationship name, target object)
    norm: Normalizer | None
    field: dict[str, Any] | None  # the leaf's describe entry (None for computed operands)


class Context:
    """Per-execution state: the org, the query text, caches of describes and parents."""

    def __init__(self, org: Any, text: str, include_deleted: bool) -> None:
        self.org = org
        self.text = text
        self.include_deleted = include_deleted
        self._meta: dict[str, ObjectMeta] = {}
        self._parents: dict[str, dict[str, Any] | None] = {}
        self.today = _today(org)

    def error(self, code: str, line: int | None, column: int | None, message: str) -> SoqlError:
        """A SoqlError located in this query's text."""
        return SoqlError(code, located(self.text, line, column, message))

    def meta(self, sobject: str, line: int | None = None, column: int | None = None) -> ObjectMeta:
        """The indexed describe of ``sobject``; INVALID_TYPE when the org has no such object."""
        key = sobject.lower()
        found = self._meta.get(key)
        if found is not None:
            return found
        try:
            desc = self.org.schema.describe(sobject)
        except (SfApiError, KeyError, LookupError, ValueError):
            desc = None
        if not desc:
            raise self.error("INVALID_TYPE", line, column, f"sObject type '{sobject}' is not supported. {_CUSTOM_TYPE_HINT}")
        fields: dict[str, dict[str, Any]] = {}
        rels: dict[str, dict[str, Any]] = {}
        for fd in desc.get("fields", []):
            fields[fd["name"].lower()] = fd
            if fd.get("type") == "reference" and fd.get("relationshipName"):
                rels[fd["relationshipName"].lower()] = fd
        found = ObjectMeta(desc["name"], desc.get("keyPrefix") or "", fields, rels)
        self._meta[key] = found
        return found

    def parent(self, record_id: str) -> dict[str, Any] | None:
        """The record with ``record_id`` (cached: many children share a parent)."""
        try:
            return self._parents[record_id]
        except KeyError:
            rec = self.org.by_id(record_id)
            self._parents[record_id] = rec
            return rec


def _today(org: Any) -> date:
    """Today in UTC by the org's clock (``org.clock()``, or ``org.now()``), else the wall clock."""
    clock = getattr(org, "clock", None) or getattr(org, "now", None)
    value = clock() if callable(clock) else None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    return datetime.now(UTC).date()


# ---------------------------------------------------------------------------- field paths


def resolve_path(ctx: Context, meta: ObjectMeta, path: FieldPath) -> Ref:
    """Resolve ``a__r.b__r.Field`` from ``meta``'s object to a getter and a type.

    Raises:
        SoqlError: INVALID_FIELD for unknown fields or relationships, like Salesforce.
    """
    chain: list[tuple[str, str, str]] = []
    current = meta
    canonical: list[str] = []
    for rel_name in path.parts[:-1]:
        fd = current.relationships.get(rel_name.lower())
        if fd is None:
            raise ctx.error("INVALID_FIELD", path.line, path.column,
                            f"Didn't understand relationship '{rel_name}' in field path. {_CUSTOM_REL_HINT}")
        target = ctx.meta(fd["referenceTo"][0])
        chain.append((fd["name"], fd["relationshipName"], target.name))
        canonical.append(fd["relationshipName"])
        current = target
    leaf = path.parts[-1]
    fd = current.fields.get(leaf.lower())
    if fd is None:
        shown = path.text if chain else leaf
        raise ctx.error("INVALID_FIELD", path.line, path.column,
                        f"No such column '{shown}' on entity '{current.name}'. {_CUSTOM_FIELD_HINT}")
    name = fd["name"]
    canonical.append(name)
    cat = category(fd["type"])
    return Ref(_getter(ctx, tuple(c[0] for c in chain), name), cat, fd["type"], name, tuple(canonical),
               tuple(chain), normalizer(cat), fd)


def _getter(ctx: Context, lookups: tuple[str, ...], name: str) -> Getter:
    if not lookups:
        def get(rec: dict[str, Any]) -> Any:
            return rec.get(name)
        return get
    parent = ctx.parent

    def get_through(rec: dict[str, Any]) -> Any:
        cur: dict[str, Any] | None = rec
        for fk in lookups:
            pid = cur.get(fk)  # type: ignore[union-attr]
            if pid is None:
                return None
            cur = parent(pid)
            if cur is None:
                return None
        return cur.get(name)  # type: ignore[union-attr]
    return get_through


def resolve_row_operand(ctx: Context, meta: ObjectMeta, expr: Operand) -> Ref:
    """Resolve an operand evaluated per record: a field path or a date function of one.

    Raises:
        SoqlError: MALFORMED_QUERY for aggregates or unknown functions out of place.
    """
    if isinstance(expr, FieldPath):
        return resolve_path(ctx, meta, expr)
    if expr.name in PASS_THROUGH and isinstance(expr.arg, FieldPath):
        return resolve_path(ctx, meta, expr.arg)
    spec = _DATE_FUNCTIONS.get(expr.name)
    if spec is None or not isinstance(expr.arg, FieldPath):
        if expr.name in AGGREGATES:
            raise ctx.error("MALFORMED_QUERY", expr.line, expr.column,
                            "Aggregate functions are not allowed in this part of the query")
        raise ctx.error("MALFORMED_QUERY", expr.line, expr.column, f"unexpected token: '{expr.name}'")
    fn, cat, datetime_only = spec
    inner = resolve_path(ctx, meta, expr.arg)
    if inner.cat not in (DATE, DATETIME) or (datetime_only and inner.cat != DATETIME):
        raise ctx.error("MALFORMED_QUERY", expr.line, expr.column,
                        f"{expr.name} can only be used with a {'datetime' if datetime_only else 'date or datetime'} "
                        f"field: {inner.name}")
    inner_get = inner.get
    conv = to_datetime if inner.cat == DATETIME else to_date

    def get(rec: dict[str, Any]) -> Any:
        v = inner_get(rec)
        if v is None:
            return None
        try:
            return fn(conv(v))
        except (TypeError, ValueError):
            return None  # unreadable stored value: treated like a blank

    return Ref(get, cat, "int" if cat == NUMBER else "date", inner.name, inner.path, inner.chain,
               normalizer(cat), None)


# ---------------------------------------------------------------------------- conditions

_ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def compile_condition(ctx: Context, node: Any, resolve: Callable[[Operand], Ref],
                      run_subquery: Callable[[Query], set[Any]]) -> Predicate:
    """Compile a WHERE/HAVING tree into one predicate over records (or aggregate rows).

    Args:
        ctx: The execution context (query text, today's date).
        node: And / Or / Not / Compare.
        resolve: Turns an operand into a :class:`Ref` (fields for WHERE, slots for HAVING).
        run_subquery: Runs a semi-join's inner query, returning its values.
    """
    if isinstance(node, And):
        return _all([compile_condition(ctx, n, resolve, run_subquery) for n in node.items])
    if isinstance(node, Or):
        return _any([compile_condition(ctx, n, resolve, run_subquery) for n in node.items])
    if isinstance(node, Not):
        inner = compile_condition(ctx, node.item, resolve, run_subquery)
        return lambda rec: not inner(rec)
    return _compile_compare(ctx, node, resolve(node.left), run_subquery)


def _all(preds: list[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds
        return lambda rec: a(rec) and b(rec)

    def every(rec: dict[str, Any]) -> bool:
        for p in preds:
            if not p(rec):
                return False
        return True
    return every


def _any(preds: list[Predicate]) -> Predicate:
    if len(preds) == 2:
        a, b = preds
        return lambda rec: a(rec) or b(rec)

    def some(rec: dict[str, Any]) -> bool:
        for p in preds:
            if p(rec):
                return True
        return False
    return some


def _compile_compare(ctx: Context, node: Compare, ref: Ref, run_subquery: Callable[[Query], set[Any]]) -> Predicate:
    op = node.op
    if isinstance(node.value, Query):
        if ref.cat != ID:
            raise ctx.error("INVALID_FIELD", node.left.line, node.left.column,
                            f"Invalid semi join: the field {ref.name} is not an Id or a lookup")
        return _membership(ref, run_subquery(node.value), False, op == "notin")
    if op in ("in", "notin"):
        return _in_list(ctx, ref, node.value, op == "notin")
    if op in ("includes", "excludes"):
        return _includes(ctx, node, ref)
    lit: Literal = node.value
    if op == "like":
        return _like(ctx, ref, lit)
    if lit.kind == "null":
        get = ref.get
        if op == "=":
            return lambda rec: get(rec) is None
        if op == "!=":
            return lambda rec: get(rec) is not None
        return lambda rec: False
    if lit.kind == "relative":
        lo, hi = relative_range(ctx.text, lit, ref.cat, ref.name, ctx.today)
        return _in_range(ref, op, lo, hi)
    key = literal_key(ctx.text, lit, ref.cat, ref.name, ref.field_type)
    return _scalar(ref, op, key)


def _scalar(ref: Ref, op: str, key: Any) -> Predicate:
    get, norm = ref.get, ref.norm
    if op == "=":
        if norm is None:
            return lambda rec: get(rec) == key

        def eq(rec: dict[str, Any]) -> bool:
            v = get(rec)
            return v is not None and norm(v) == key
        return eq
    if op == "!=":
        if norm is None:
            return lambda rec: get(rec) != key

        def ne(rec: dict[str, Any]) -> bool:
            v = get(rec)
            return v is None or norm(v) != key
        return ne
    cmp = _ORDERING[op]

    def ordered(rec: dict[str, Any]) -> bool:
        v = get(rec)
        if v is None:
            return False
        try:
            return cmp(norm(v) if norm is not None else v, key)
        except (TypeError, ValueError):
            return False  # a stored value of the wrong type never matches
    return ordered


def _in_range(ref: Ref, op: str, lo: Any, hi: Any) -> Predicate:
    get, norm = ref.get, ref.norm
    assert norm is not None  # dates and datetimes always normalize
    tests: dict[str, Callable[[Any], bool]] = {
        "=": lambda k: lo <= k < hi,
        "!=": lambda k: not (lo <= k < hi),
        "<": lambda k: k < lo,
        "<=": lambda k: k < hi,
        ">": lambda k: k >= hi,
        ">=": lambda k: k >= lo,
    }
    test = tests[op]
    null_result = op == "!="

    def pred(rec: dict[str, Any]) -> bool:
        v = get(rec)
        if v is None:
            return null_result
        try:
            return test(norm(v))
        except (TypeError, ValueError):
            return False
    return pred


def _membership(ref: Ref, keys: set[Any], null_in: bool, negate: bool) -> Predicate:
    get, norm = ref.get, ref.norm
    frozen = frozenset(keys)

    def member(rec: dict[str, Any]) -> bool:
        v = get(rec)
        if v is None:
            found = null_in
        else:
            found = (norm(v) if norm is not None else v) in frozen
        return found != negate
    return member


def _in_list(ctx: Context, ref: Ref, values: Iterable[Literal], negate: bool) -> Predicate:
    keys: set[Any] = set()
    null_in = False
    ranges: list[Predicate] = []
    for lit in values:
        if lit.kind == "null":
            null_in = True
        elif lit.kind == "relative":
            lo, hi = relative_range(ctx.text, lit, ref.cat, ref.name, ctx.today)
            ranges.append(_in_range(ref, "=", lo, hi))
        else:
            keys.add(literal_key(ctx.text, lit, ref.cat, ref.name, ref.field_type))
    member = _membership(ref, keys, null_in, False)
    if ranges:
        member = _any([member, *ranges])
    if negate:
        positive = member
        return lambda rec: not positive(rec)
    return member


def like_regex(raw: str) -> re.Pattern[str]:
    """Compile a LIKE pattern (``%`` any run, ``_`` one character, ``\\%``/``\\_`` literal)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            out.append(re.escape(unescape(raw[i : i + 2])))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _like(ctx: Context, ref: Ref, lit: Literal) -> Predicate:
    if lit.kind != "string":
        raise ctx.error("INVALID_FIELD", lit.line, lit.column,
                        f"value of filter criterion for field '{ref.name}' must be of type string and should be "
                        "enclosed in quotes")
    if ref.cat not in (TEXT, ID):
        raise ctx.error("INVALID_FIELD", lit.line, lit.column, f"invalid operator on {ref.field_type} field: {ref.name}")
    match = like_regex(lit.raw).fullmatch
    get = ref.get

    def pred(rec: dict[str, Any]) -> bool:
        v = get(rec)
        return v is not None and match(v if type(v) is str else str(v)) is not None
    return pred


def _includes(ctx: Context, node: Compare, ref: Ref) -> Predicate:
    if ref.field_type != "multipicklist":
        raise ctx.error("INVALID_FIELD", node.left.line, node.left.column,
                        f"{node.op} or excludes operator only valid on multipicklist field")
    wanted: list[frozenset[str]] = []
    for lit in node.value:
        if lit.kind != "string":
            raise ctx.error("INVALID_FIELD", lit.line, lit.column,
                            f"value of filter criterion for field '{ref.name}' must be of type string and should be "
                            "enclosed in quotes")
        wanted.append(frozenset(p.strip().lower() for p in lit.value.split(";") if p.strip()))
    get = ref.get
    negate = node.op == "excludes"

    def pred(rec: dict[str, Any]) -> bool:
        v = get(rec)
        have = frozenset(p.strip().lower() for p in v.split(";")) if v else frozenset()
        return any(w <= have for w in wanted) != negate
    return pred
