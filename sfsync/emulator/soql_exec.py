"""Run a parsed SOQL query against an org: filter, sort, slice, project or aggregate.

The org is duck-typed: ``org.schema.describe(name)``, ``org.records(name, include_deleted=)``
and ``org.by_id(id)`` are all the engine needs. ``org.find_by(name, field, value)`` is used
when present to answer equality filters on indexed fields without a scan.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sfsync.emulator.errors import SfApiError
from sfsync.emulator.ids import normalize_id
from sfsync.emulator.soql_compile import (
    AGGREGATES,
    PASS_THROUGH,
    Context,
    ObjectMeta,
    Predicate,
    Ref,
    compile_condition,
    resolve_path,
    resolve_row_operand,
)
from sfsync.emulator.soql_parse import And, Call, Compare, FieldPath, Operand, Query
from sfsync.emulator.soql_values import (
    BOOLEAN,
    ID,
    NUMBER,
    TEXT,
    category,
    formatter,
    json_value,
    normalizer,
    safe_key,
)
from sfsync.limits import DEFAULT_API_VERSION

MAX_OFFSET = 2000  # Salesforce refuses larger OFFSETs


@dataclass(slots=True)
class QueryResult:
    """The answer to a query, in the shapes REST and the bulk APIs need.

    Attributes:
        records: REST-shaped records (``attributes`` first, then the selected fields in
            order; parent relationships as nested records or None).
        total_size: ``totalSize``: the record count (for ``COUNT()`` the count itself).
        sobject: The queried object's canonical name.
        fields: Selected field paths in SELECT order (``Account.Name``, ``expr0``): CSV headers.
    """

    records: list[dict[str, Any]]
    total_size: int
    sobject: str
    fields: list[str] = field(default_factory=list)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a result is built.

    Building 100,000 result dicts triggers many full collections, each of which walks
    every record the org holds: measured at 2-4x the query's own cost. Results hold no
    reference cycles, so nothing is lost by collecting later. The previous state is
    restored, so concurrent queries leave the collector as they found it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run(org: Any, query: Query, include_deleted: bool) -> QueryResult:
    """Execute ``query`` against ``org`` (see :func:`sfsync.emulator.soql.execute`)."""
    with _gc_paused():
        return _run(org, query, include_deleted)


def _run(org: Any, query: Query, include_deleted: bool) -> QueryResult:
    ctx = Context(org, query.text, include_deleted)
    meta = ctx.meta(query.sobject, query.sobject_line, query.sobject_column)
    if query.offset is not None and query.offset > MAX_OFFSET:
        raise ctx.error("NUMBER_OUTSIDE_VALID_RANGE", None, None, f"Maximum SOQL offset allowed is {MAX_OFFSET}")
    pred = _where(ctx, meta, query)
    calls = [i.expr for i in query.select if isinstance(i.expr, Call)]
    if any(c.name == "COUNT" and c.arg is None for c in calls):
        return _count_only(ctx, meta, query, pred)
    if query.group_by or any(c.name in AGGREGATES for c in calls):
        return _aggregate(ctx, meta, query, pred)
    if query.having is not None:
        raise ctx.error("MALFORMED_QUERY", None, None, "HAVING clause requires GROUP BY or an aggregate function")
    return _plain(ctx, meta, query, pred)


def _where(ctx: Context, meta: ObjectMeta, query: Query) -> Predicate | None:
    if query.where is None:
        return None
    return compile_condition(ctx, query.where, lambda op: resolve_row_operand(ctx, meta, op),
                             lambda sub: _semi_join(ctx, sub))


def _matching(ctx: Context, meta: ObjectMeta, query: Query, pred: Predicate | None,
              include_deleted: bool | None = None) -> Iterator[dict[str, Any]]:
    rows = _source(ctx, meta, query.where, ctx.include_deleted if include_deleted is None else include_deleted)
    return iter(rows) if pred is None else filter(pred, rows)


def _source(ctx: Context, meta: ObjectMeta, where: Any, include_deleted: bool) -> Iterable[dict[str, Any]]:
    """The records worth testing: a few from an index when the WHERE pins them, else all."""
    conjuncts = where.items if isinstance(where, And) else (where,) if where is not None else ()
    for node in conjuncts:
        if not (isinstance(node, Compare) and node.op in ("=", "in") and isinstance(node.left, FieldPath)
                and len(node.left.parts) == 1 and not isinstance(node.value, Query)):
            continue
        lits = node.value if isinstance(node.value, tuple) else (node.value,)
        if any(lit.kind != "string" for lit in lits):
            continue
        fd = meta.fields.get(node.left.parts[0].lower())
        if fd is None:
            continue
        if fd["type"] == "id":
            return _by_ids(ctx, meta, [lit.value for lit in lits], include_deleted)
        found = _by_index(ctx, meta, fd, [lit.value for lit in lits], include_deleted)
        if found is not None:
            return found
    return ctx.org.records(meta.name, include_deleted=include_deleted)


def _by_ids(ctx: Context, meta: ObjectMeta, values: list[str], include_deleted: bool) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for value in values:
        rid = normalize_id(value)
        if rid is None or rid in out or not rid.startswith(meta.key_prefix):
            continue
        rec = ctx.org.by_id(rid)
        if rec is not None and (include_deleted or not rec.get("IsDeleted")):
            out[rid] = rec
    return _in_org_order(out)


def _by_index(ctx: Context, meta: ObjectMeta, fd: dict[str, Any], values: list[str],
              include_deleted: bool) -> list[dict[str, Any]] | None:
    find_by = getattr(ctx.org, "find_by", None)
    # Only text fields the org indexes (external IDs, unique and idLookup fields), and only
    # when the index matches like SOQL does, case-insensitively: a case-sensitive index
    # could miss rows that a scan would find.
    indexed = fd.get("externalId") or fd.get("unique") or fd.get("idLookup")
    if find_by is None or not indexed or fd.get("caseSensitive") or category(fd["type"]) != TEXT:
        return None
    out: dict[str, dict[str, Any]] = {}
    for value in values:
        try:
            found = find_by(meta.name, fd["name"], value, include_deleted=include_deleted)
        except (LookupError, ValueError, TypeError, SfApiError):
            return None
        for rec in found or ():
            if include_deleted or not rec.get("IsDeleted"):
                out.setdefault(rec.get("Id") or str(id(rec)), rec)
    return _in_org_order(out)


def _in_org_order(by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Index hits in the order a scan would meet them.

    The org's Ids are fixed-width base-62 counters whose text order is creation order,
    which is also the order ``org.records`` yields.
    """
    return [by_id[k] for k in sorted(by_id)]


# ---------------------------------------------------------------------------- plain queries


def _plain(ctx: Context, meta: ObjectMeta, query: Query, pred: Predicate | None) -> QueryResult:
    project, fields = _projection(ctx, meta, query)
    order = [(resolve_row_operand(ctx, meta, o.expr), o.descending, o.nulls_first) for o in query.order_by]
    rows = _matching(ctx, meta, query, pred)
    start = query.offset or 0
    stop = None if query.limit is None else start + query.limit
    if order:
        selected = _sorted(list(rows), order)[start:stop]
    else:
        # Without ORDER BY a LIMIT can stop the scan early.
        selected = list(islice(rows, start, stop))
    records = [project(r) for r in selected]
    return QueryResult(records, len(records), meta.name, fields)


def _sorted(rows: list[Any], order: list[tuple[Ref, bool, bool | None]]) -> list[Any]:
    """Sort by several keys: stable sorts from the last key to the first."""
    for ref, desc, nulls_first in reversed(order):
        if nulls_first is None:
            nulls_first = not desc  # Salesforce: NULLS FIRST ascending, NULLS LAST descending
        # reverse=True flips everything, so the null marker flips with the direction.
        null_key = (0,) if nulls_first != desc else (2,)
        get, norm = ref.get, ref.norm

        def key(rec: Any, get: Callable[[Any], Any] = get, norm: Any = norm, null_key: tuple[int] = null_key) -> Any:
            v = get(rec)
            if v is None:
                return null_key
            if norm is None:
                return (1, v)
            try:
                return (1, norm(v))
            except (TypeError, ValueError):
                return (1, str(v))  # unreadable stored value: order it by its text

        try:
            rows.sort(key=key, reverse=desc)
        except TypeError:
            # Mixed stored types in one column: fall back to ordering by their text.
            rows.sort(key=_as_text(key), reverse=desc)
    return rows


def _as_text(key: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], tuple[Any, ...]]:
    def text_key(rec: Any) -> tuple[Any, ...]:
        k = key(rec)
        return k if len(k) == 1 else (1, str(k[1]))
    return text_key


def _projection(ctx: Context, meta: ObjectMeta, query: Query) -> tuple[Callable[[dict[str, Any]], dict[str, Any]], list[str]]:
    root = _Level(meta.name)
    fields: list[str] = []
    seen: set[str] = set()
    for item in query.select:
        expr = item.expr
        if item.alias is not None:
            # Aliases belong to aggregate queries only.
            raise ctx.error("MALFORMED_QUERY", item.alias_line, item.alias_column,
                            f"unexpected token: '{item.alias}'")
        if isinstance(expr, Call):
            if expr.name not in PASS_THROUGH or not isinstance(expr.arg, FieldPath):
                raise ctx.error("MALFORMED_QUERY", expr.line, expr.column,
                                f"Field must be grouped or aggregated: {expr.text}")
            expr = expr.arg
        ref = resolve_path(ctx, meta, expr)
        dotted = ".".join(ref.path)
        if dotted.lower() in seen:
            raise ctx.error("MALFORMED_QUERY", expr.line, expr.column, f"duplicate field selected: {dotted}")
        seen.add(dotted.lower())
        level = root
        for fk, rel, target in ref.chain:
            level = level.child(fk, rel, target)
        level.leaves_and_children.append((ref.name, ref.name, formatter(ref.field_type), None))
        fields.append(dotted)
    return root.compile(ctx), fields


class _Level:
    """The fields selected at one level of a relationship path (the root or a parent)."""

    def __init__(self, sobject: str) -> None:
        self.sobject = sobject
        self.leaves_and_children: list[tuple[str, str, Any, _Level | None]] = []

    def child(self, fk: str, rel: str, target: str) -> _Level:
        for key, _, _, sub in self.leaves_and_children:
            if sub is not None and key == rel:
                return sub
        sub = _Level(target)
        self.leaves_and_children.append((rel, fk, None, sub))
        return sub

    def compile(self, ctx: Context) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Build the projection for this level as one generated function.

        A generic loop over the selected fields costs more than the rest of a query put
        together on 100,000 rows; a generated function that builds the record as one dict
        display is several times faster. Only ``repr()`` of schema names is embedded in
        the source; values (formatters, sub-projections) are passed in the namespace.
        """
        namespace: dict[str, Any] = {
            "TYPE": self.sobject,
            "URL": f"/services/data/v{DEFAULT_API_VERSION}/sobjects/{self.sobject}/",
            "parent": ctx.parent,
        }
        body = ["def project(rec):", "    g = rec.get"]
        items = []
        for k, (key, name, fmt, sub) in enumerate(self.leaves_and_children):
            if sub is not None:
                namespace[f"s{k}"] = sub.compile(ctx)
                body.append(f"    v{k} = g({name!r})")
                body.append(f"    p{k} = None if v{k} is None else parent(v{k})")
                items.append(f"{key!r}: None if p{k} is None else s{k}(p{k})")
            elif fmt is not None:
                namespace[f"f{k}"] = fmt
                body.append(f"    v{k} = g({name!r})")
                items.append(f"{key!r}: v{k} if v{k} is None else f{k}(v{k})")
            else:
                items.append(f"{key!r}: g({name!r})")
        body.append("    return {'attributes': {'type': TYPE, 'url': URL + str(g('Id'))}, " + ", ".join(items) + "}")
        exec("\n".join(body), namespace)  # noqa: S102 - generated from schema names only
        project: Callable[[dict[str, Any]], dict[str, Any]] = namespace["project"]
        return project


# ---------------------------------------------------------------------------- aggregates


def _count_only(ctx: Context, meta: ObjectMeta, query: Query, pred: Predicate | None) -> QueryResult:
    if len(query.select) != 1 or query.group_by or query.having is not None:
        first = query.select[0].expr
        raise ctx.error("MALFORMED_QUERY", first.line, first.column,
                        "COUNT() cannot be combined with other fields or GROUP BY")
    count = sum(1 for _ in _matching(ctx, meta, query, pred))
    count = max(count - (query.offset or 0), 0)
    if query.limit is not None:
        count = min(count, query.limit)
    return QueryResult([], count, meta.name, [])


@dataclass(slots=True)
class _Agg:
    name: str
    ref: Ref | None
    scale: int | None

    def compute(self, recs: list[Any]) -> Any:
        if self.ref is None:
            return len(recs)
        get = self.ref.get
        values = [v for v in map(get, recs) if v is not None]
        if self.name == "COUNT":
            return len(values)
        if self.name == "COUNT_DISTINCT":
            return len({safe_key(self.ref.norm, v) for v in values})
        if not values:
            return None
        if self.name in ("SUM", "AVG"):
            total = math.fsum(float(v) for v in values)
            if self.name == "AVG":
                return total / len(values)
            if self.ref.field_type == "int":
                return int(total)
            # Round away binary noise (0.1 + 0.2) at the field's own scale.
            return round(total, self.scale) if self.scale is not None else total
        norm = self.ref.norm
        pick = min if self.name == "MIN" else max
        return pick(values, key=lambda v: safe_key(norm, v))


def _aggregate(ctx: Context, meta: ObjectMeta, query: Query, pred: Predicate | None) -> QueryResult:
    group_refs = [resolve_row_operand(ctx, meta, g) for g in query.group_by]
    group_ids = [_identity(g, r) for g, r in zip(query.group_by, group_refs, strict=True)]
    aggs: list[_Agg] = []
    agg_ids: dict[tuple[str, ...], int] = {}

    def agg_slot(call: Call) -> int:
        if call.arg is not None and not isinstance(call.arg, FieldPath):
            raise ctx.error("MALFORMED_QUERY", call.line, call.column, f"unexpected token: '{call.arg.text}'")
        ref = resolve_path(ctx, meta, call.arg) if call.arg is not None else None
        ident = (call.name, *(p.lower() for p in (ref.path if ref else ())))
        if ident in agg_ids:
            return agg_ids[ident]
        if ref is not None and (
            (call.name in ("SUM", "AVG") and ref.cat != NUMBER) or (call.name in ("MIN", "MAX") and ref.cat == BOOLEAN)
        ):
            raise ctx.error("INVALID_FIELD", call.line, call.column,
                            f"field {ref.name} does not support aggregate operator {call.name}")
        scale = ref.field.get("scale") if ref is not None and ref.field is not None else None
        aggs.append(_Agg(call.name, ref, scale if isinstance(scale, int) else None))
        agg_ids[ident] = len(aggs) - 1
        return agg_ids[ident]

    def slot_ref(expr: Operand, where: str) -> Ref:
        """An operand of HAVING/ORDER BY/SELECT read from an aggregate row (groups, aggs)."""
        if isinstance(expr, Call) and expr.name in AGGREGATES:
            j = agg_slot(expr)
            inner = aggs[j].ref
            if expr.name in ("MIN", "MAX") and inner is not None:
                cat, ftype = inner.cat, inner.field_type
            else:
                cat, ftype = NUMBER, "int" if expr.name.startswith("COUNT") else "double"
            return Ref(_slot(1, j), cat, ftype, expr.text, (expr.text,), (), normalizer(cat), None)
        ref = resolve_row_operand(ctx, meta, expr)
        ident = _identity(expr, ref)
        if ident not in group_ids:
            raise ctx.error("MALFORMED_QUERY", expr.line, expr.column, f"{where} must be grouped or aggregated: {expr.text}")
        i = group_ids.index(ident)
        return Ref(_slot(0, i), ref.cat, ref.field_type, ref.name, ref.path, ref.chain, ref.norm, ref.field)

    outputs: list[tuple[str, Ref]] = []
    n = 0
    for item in query.select:
        ref = slot_ref(item.expr, "Field")
        if item.alias is not None:
            key = item.alias
        elif isinstance(item.expr, Call):
            key, n = f"expr{n}", n + 1
        else:
            key = ref.name
        outputs.append((key, ref))
    having = (compile_condition(ctx, query.having, lambda op: slot_ref(op, "Field"), lambda sub: _semi_join(ctx, sub))
              if query.having is not None else None)
    order = [(slot_ref(o.expr, "Ordered field"), o.descending, o.nulls_first) for o in query.order_by]

    groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Any]]] = {}
    if not group_refs:
        groups[()] = ((), [])
    getters = [(r.get, r.norm) for r in group_refs]
    if len(getters) == 1:
        # The common report shape (one GROUP BY field), without per-row tuple building.
        ((get1, norm1),) = getters
        by_one: dict[Any, tuple[tuple[Any, ...], list[Any]]] = {}
        for rec in _matching(ctx, meta, query, pred):
            v = get1(rec)
            entry = by_one.get(k := safe_key(norm1, v))
            if entry is None:
                entry = by_one[k] = ((v,), [])
            entry[1].append(rec)
        groups = {(k,): entry for k, entry in by_one.items()}
    else:
        for rec in _matching(ctx, meta, query, pred):
            raw = tuple(get(rec) for get, _ in getters)
            group_key = tuple(safe_key(norm, v) for v, (_, norm) in zip(raw, getters, strict=True))
            entry = groups.get(group_key)
            if entry is None:
                entry = groups[group_key] = (raw, [])
            entry[1].append(rec)
    rows = [(raw, [a.compute(recs) for a in aggs]) for raw, recs in groups.values()]
    if having is not None:
        rows = [r for r in rows if having(r)]
    if order:
        rows = _sorted(rows, order)
    start = query.offset or 0
    rows = rows[start: None if query.limit is None else start + query.limit]
    fmts = [(key, ref.get, formatter(ref.field_type)) for key, ref in outputs]
    records = []
    for row in rows:
        out: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        for key, get, fmt in fmts:
            v = get(row)
            out[key] = json_value(fmt(v) if v is not None and fmt is not None else v)
        records.append(out)
    return QueryResult(records, len(records), meta.name, [key for key, _ in outputs])


def _slot(part: int, index: int) -> Callable[[Any], Any]:
    """Read group value / aggregate ``index`` from an aggregate row ``(groups, aggregates)``."""
    def get(row: Any) -> Any:
        return row[part][index]
    return get


def _identity(expr: Operand, ref: Ref) -> tuple[str, ...]:
    """What makes two operands the same group key, whatever their spelling."""
    path = tuple(p.lower() for p in ref.path)
    return (expr.name, *path) if isinstance(expr, Call) else path


# ---------------------------------------------------------------------------- semi-joins


def _semi_join(ctx: Context, sub: Query) -> set[Any]:
    """Run ``Id IN (SELECT LookupField FROM Child WHERE ...)``'s inner query once."""
    meta = ctx.meta(sub.sobject, sub.sobject_line, sub.sobject_column)
    first = sub.select[0].expr
    if len(sub.select) != 1 or not isinstance(first, FieldPath) or sub.group_by or sub.order_by or sub.limit is not None:
        raise ctx.error("MALFORMED_QUERY", first.line, first.column,
                        "The inner select of a semi join must select exactly one Id or lookup field")
    ref = resolve_path(ctx, meta, first)
    if ref.cat != ID:
        raise ctx.error("INVALID_FIELD", first.line, first.column,
                        f"Invalid semi join: the selected field {ref.name} is not an Id or a lookup")
    pred = _where(ctx, meta, sub)
    get = ref.get
    return {v for rec in _matching(ctx, meta, sub, pred, include_deleted=False) if (v := get(rec)) is not None}


def flat_row(record: dict[str, Any], fields: list[str]) -> list[Any]:
    """The values of ``fields`` (dotted paths) in a REST record, for CSV output.

    A path through a null parent gives None. Keys match case-insensitively when the
    exact spelling is absent, so paths as the client wrote them work too.
    """
    out: list[Any] = []
    for path in fields:
        cur: Any = record
        for part in path.split("."):
            if not isinstance(cur, dict):
                cur = None
                break
            if part in cur:
                cur = cur[part]
            else:
                lowered = part.lower()
                cur = next((v for k, v in cur.items() if k.lower() == lowered), None)
        out.append(cur)
    return out
