"""Compile a mapping once, apply it to many batches.

Compiling parses every formula and template, looks up every target field's type in the
describe and validates the mapping against it; applying runs column-at-a-time Arrow
kernels. The only per-row Python is in formatting the messages of rejected rows.

Order of work for one batch:

1. skip conditions, then reject conditions (on the raw source values);
2. each field: produce (source path / template / formula / constant) → aggregate →
   value map → default → required → coerce by the target type (or keep for a lookup);
3. record type DeveloperName → RecordTypeId (from the describe's recordTypeInfos);
4. ``_key``; rows older than the trim date (``record_date``) are skipped;
5. rejected rows are dropped (one reject per row, every problem of the row in the message);
6. sfsync-resolved lookups, when a resolver is given (or later via ``MappedBatch.resolve``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sfsync.errors import MappingError
from sfsync.mappers import expr as E
from sfsync.mappers.batch import LookupField, MappedBatch, Resolver, empty_rejects, rejects_frame
from sfsync.mappers.coerce import CoerceOptions, FieldType, coerce, to_text
from sfsync.mappers.describe import DescribeLike, Describer, describer
from sfsync.mappers.evaluate import Context, Evaluator
from sfsync.mappers.models import FieldSpec, Mapping
from sfsync.mappers.paths import MissingColumn, aggregate
from sfsync.mappers.rows import RowError, as_array, combine_errors, to_mask

EXPORT_KINDS = {"string": "string", "number": "double", "integer": "double", "date": "date",
                "datetime": "datetime", "boolean": "boolean"}
KEY_SEPARATOR = "|"


@dataclass
class _Producer:
    """A field's value source, parsed once."""

    kind: str
    node: Any = None
    parts: list[Any] = field(default_factory=list)
    constant: Any = None


@dataclass
class _Plan:
    target: str
    spec: FieldSpec
    producer: _Producer
    ftype: FieldType | None
    opts: CoerceOptions
    lookup: LookupField | None = None
    value_keys: pa.Array | None = None
    value_vals: pa.Array | None = None


def _producer(spec: FieldSpec) -> _Producer:
    if spec.source is not None:
        return _Producer("source", node=E.parse_path(spec.source))
    if spec.template is not None:
        return _Producer("template", parts=E.parse_template(spec.template))
    if spec.formula is not None:
        return _Producer("formula", node=E.parse(spec.formula))
    return _Producer("constant", constant=spec.constant)


def _options(m: Mapping, spec: FieldSpec) -> CoerceOptions:
    d = m.defaults
    fmts = spec.date_format
    fmt_tuple = tuple([fmts] if isinstance(fmts, str) else fmts) if fmts else None
    return CoerceOptions(
        date_formats=fmt_tuple or tuple(d.date_formats),
        datetime_formats=fmt_tuple or tuple(d.datetime_formats),
        timezone=spec.timezone or d.timezone,
        length=spec.length or d.string_length,
    )


def _export_type(name: str, spec: FieldSpec) -> FieldType:
    kind = spec.type or "string"
    scale = spec.scale if spec.scale is not None else (2 if kind == "number" else 0)
    return FieldType(name=name, kind=EXPORT_KINDS[kind], length=spec.max_length or 0, precision=0, scale=scale)


class CompiledMapping:
    """A mapping ready to apply. Build with :func:`compile_mapping`.

    Attributes:
        mapping: The source model.
        name, sobject, operation, direction: From the mapping.
        external_id: The external-ID field name for upserts (None for composite keys).
        key_fields: Composite key fields (target fields for imports, source columns for exports).
        lookups: The sfsync-resolved references (:class:`LookupField`).
        load: The load options (api, serial, batch_size).
    """

    def __init__(self, mapping: Mapping, desc: Describer | None) -> None:
        self.mapping = mapping
        self.name = mapping.name
        self.direction = mapping.direction
        self.sobject = mapping.sobject
        self.operation = mapping.operation
        self.load = mapping.load
        self.external_id = mapping.key.external_id
        self.key_fields: tuple[str, ...] = tuple(mapping.key.fields or ())
        self.record_date = mapping.record_date
        self._desc = desc
        self.plans: list[_Plan] = []
        for target, spec in mapping.fields.items():
            self.plans.append(self._plan(target, spec))
        self.lookups: tuple[LookupField, ...] = tuple(p.lookup for p in self.plans if p.lookup)
        self._record_type = self._plan("RecordTypeId", mapping.record_type, record_type=True) if mapping.record_type else None
        self._rt_ids = desc.record_types(self.sobject) if desc and mapping.record_type else {}
        self._conditions = [(c, E.parse(c.when), E.parse_template(c.message) if c.message else None)
                            for c in mapping.conditions]
        self.types: dict[str, str] = (
            {p.target: str(p.spec.type or "string") for p in self.plans} if self.direction == "export" else {})

    def _plan(self, target: str, spec: FieldSpec, record_type: bool = False) -> _Plan:
        m = self.mapping
        lookup = None
        if spec.lookup is not None:
            deferred = spec.lookup.deferred if spec.lookup.deferred is not None else spec.lookup.sobject == self.sobject
            lookup = LookupField(target, spec.lookup.sobject, spec.lookup.field, deferred)
        ftype: FieldType | None = None
        if record_type or lookup:
            ftype = None
        elif m.direction == "export":
            ftype = _export_type(target, spec)
        elif self._desc is not None:
            ftype = self._desc.field_type(self.sobject, target)
        if ftype is None and not (record_type or lookup):
            ftype = FieldType(name=target, kind="string")
        plan = _Plan(target, spec, _producer(spec), ftype, _options(m, spec), lookup)
        if spec.value_map:
            plan.value_keys = pa.array(list(spec.value_map.keys()), type=pa.string())
            plan.value_vals = pa.array([None if v is None else _scalar_text(v) for v in spec.value_map.values()],
                                       type=pa.string())
        return plan

    # -- applying -----------------------------------------------------------------------------
    def apply(self, batch: pa.Table | pd.DataFrame, *, biller: str, resolve: Resolver | None = None,
              trim_date: date | None = None, today: date | None = None) -> MappedBatch:
        """Map one batch.

        Args:
            batch: The biller's rows (Arrow table or DataFrame) with a ``_source`` column.
            biller: The biller's name, prefixed to keys so several billers coexist.
            resolve: Resolves sfsync lookups now; without it the ``_lookup.*`` columns stay
                for :meth:`MappedBatch.resolve`.
            trim_date: Rows whose ``record_date`` is before it are skipped (and counted).
            today: What TODAY() returns (default: today in UTC).

        Raises:
            MappingError: The batch lacks a column the mapping reads (a layout problem, not
                a row problem).
        """
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
        n = table.num_rows
        ctx = Context(biller=biller, trim_date=trim_date, **({"today": today} if today else {}))
        errors: list[RowError] = []
        ev = Evaluator(table, ctx, self.name, errors, blank_is_null=self.mapping.defaults.blank_is_null)
        try:
            return self._apply(table, n, ev, errors, biller, resolve, trim_date)
        except MissingColumn as exc:
            col = exc.args[0]
            msg = f"{self.mapping.path}: mapping {self.name} reads column {col!r}, which the batch does not have " \
                  f"(columns: {', '.join(c for c in table.column_names if c != '_source')})"
            raise MappingError(msg, [msg]) from None

    def _apply(self, table: pa.Table, n: int, ev: Evaluator, errors: list[RowError], biller: str,
               resolve: Resolver | None, trim_date: date | None) -> MappedBatch:
        sources = (to_text(as_array(table.column("_source"), n)) if "_source" in table.column_names
                   else pa.array([f"row {i + 1}" for i in range(n)]))
        skipped = np.zeros(n, dtype=bool)
        skipped_by: dict[str, int] = {}
        for cond, node, message in self._conditions:
            ev.label = f"condition {cond.when!r}"
            hit = to_mask(ev.bool_(ev.eval(node)), n) & ~skipped
            if cond.action == "skip":
                skipped |= hit
                if hit.any():
                    skipped_by[f"when {cond.when}"] = int(hit.sum())
            elif hit.any():
                text = self._template(ev, message) if message else pa.scalar(f"condition {cond.when} is true")
                errors.append(RowError(hit, cond.code, "{value}", as_array(text, n), plain=True))
        out: dict[str, pa.Array] = {}
        lookup_cols: dict[str, pa.Array] = {}
        for plan in self.plans:
            ev.label = plan.target
            values = self._value(plan, ev, errors, n)
            if plan.lookup:
                out[plan.target] = pa.nulls(n, pa.string())
                lookup_cols[plan.lookup.column] = to_text(values)
            else:
                assert plan.ftype is not None
                coerced, errs = coerce(values, plan.ftype, plan.opts)
                errors.extend(errs)
                out[plan.target] = coerced
        if self._record_type is not None:
            ev.label = "record_type"
            names = to_text(self._value(self._record_type, ev, errors, n))
            out["RecordTypeId"] = self._record_type_ids(names, errors, n)
        key = self._key(out, lookup_cols, ev, errors, biller, n)
        if self.record_date and trim_date is not None and self.record_date in out:
            old = to_mask(pc.less(out[self.record_date], pa.scalar(trim_date.isoformat())), n) & ~skipped
            if old.any():
                skipped |= old
                skipped_by["before trim date"] = int(old.sum())
        rejected, detail = combine_errors(errors, n)
        rejected &= ~skipped
        keep = ~rejected & ~skipped
        columns = {**out, **lookup_cols, "_source": sources, "_key": key}
        rows = pa.table(columns)
        if not keep.all():
            rows = rows.filter(pa.array(keep))
        rejects = empty_rejects()
        if rejected.any():
            where = np.flatnonzero(rejected)
            rejects = rejects_frame(sources.take(pa.array(where)).to_pylist(), key.take(pa.array(where)).to_pylist(),
                                    [detail[i][0] for i in where.tolist()], [detail[i][1] for i in where.tolist()])
        mapped = MappedBatch(rows=rows, rejects=rejects, skipped=int(skipped.sum()), skipped_by=skipped_by,
                             mapping=self.name, sobject=self.sobject, lookups=self.lookups,
                             key_fields=self.key_fields if not self.external_id else (), types=self.types)
        return mapped.resolve(resolve) if resolve is not None else mapped

    def _value(self, plan: _Plan, ev: Evaluator, errors: list[RowError], n: int) -> pa.Array:
        spec, prod = plan.spec, plan.producer
        if prod.kind == "source":
            values = ev.column(prod.node)
        elif prod.kind == "template":
            values = as_array(self._template(ev, prod.parts, emit_null=True), n)
        elif prod.kind == "formula":
            values = ev.array(prod.node)
        else:
            values = _constant(prod.constant, n)
        if spec.aggregate:
            values = aggregate(values, spec.aggregate, spec.separator)
        if plan.value_keys is not None:
            values = self._value_map(plan, values, errors, n)
        if spec.default is not None:
            dflt = _constant(spec.default, 1)
            values = pc.coalesce(values, dflt[0].cast(values.type)) if values.type == dflt.type else \
                pc.coalesce(to_text(values), pa.scalar(_scalar_text(spec.default)))
        if spec.required:
            missing = to_mask(values.is_null(), n)
            if missing.any():
                errors.append(RowError(missing, "REQUIRED_MISSING", f"{plan.target}: a value is required", None))
        return values

    def _value_map(self, plan: _Plan, values: pa.Array, errors: list[RowError], n: int) -> pa.Array:
        spec = plan.spec
        text = to_text(values)
        idx = pc.index_in(text, value_set=plan.value_keys)
        mapped = plan.value_vals.take(idx)  # type: ignore[union-attr]
        unmapped = pc.and_(text.is_valid(), idx.is_null())
        if spec.unmapped == "reject":
            mask = to_mask(unmapped, n)
            if mask.any():
                errors.append(RowError(mask, "UNMAPPED_VALUE",
                                       f"{plan.target}: {{value}} is not in the value map", text))
            return mapped
        if spec.unmapped == "keep":
            return pc.if_else(unmapped, text, mapped)
        if spec.unmapped == "default" and spec.unmapped_default is not None:
            return pc.if_else(unmapped, pa.scalar(_scalar_text(spec.unmapped_default)), mapped)
        return mapped

    def _template(self, ev: Evaluator, parts: list[Any], emit_null: bool = False) -> pa.Array | pa.Scalar:
        pieces: list[Any] = []
        for p in parts:
            if isinstance(p, str):
                pieces.append(pa.scalar(p))
            elif isinstance(p, E.Var):
                pieces.append(ev.str_(ev.eval(p)))
            else:
                pieces.append(to_text(ev.column(p)))
        if not pieces:
            return pa.scalar("")
        if len(pieces) == 1:
            return pieces[0]
        fixed = _affixed(pieces, emit_null)
        if fixed is not None:
            return fixed
        return pc.binary_join_element_wise(*pieces, "", null_handling="emit_null" if emit_null else "replace",
                                           null_replacement="")

    def _record_type_ids(self, names: pa.Array, errors: list[RowError], n: int) -> pa.Array:
        keys = pa.array(list(self._rt_ids.keys()), type=pa.string())
        ids = pa.array(list(self._rt_ids.values()), type=pa.string())
        idx = pc.index_in(names, value_set=keys)
        unknown = to_mask(pc.and_(names.is_valid(), idx.is_null()), n)
        if unknown.any():
            known = ", ".join(sorted(self._rt_ids)) or "none"
            errors.append(RowError(unknown, "UNKNOWN_RECORD_TYPE",
                                   f"RecordTypeId: {self.sobject} has no record type {{value}} (known: {known})", names))
        return ids.take(idx) if len(keys) else pa.nulls(n, pa.string())

    def _key(self, out: dict[str, pa.Array], lookup_cols: dict[str, pa.Array], ev: Evaluator,
             errors: list[RowError], biller: str, n: int) -> pa.Array:
        if self.external_id:
            key = out.get(self.external_id, pa.nulls(n, pa.string()))
            parts = [key]
            names = [self.external_id]
        else:
            parts, names = [], []
            for k in self.key_fields:
                if f"_lookup.{k}" in lookup_cols:
                    # The biller's own value (an account number) keeps keys stable across orgs
                    # and available before lookups are resolved.
                    parts.append(lookup_cols[f"_lookup.{k}"])
                elif k in out:
                    parts.append(out[k])
                else:
                    ev.label = f"key {k}"
                    parts.append(to_text(ev.column(E.parse_path(k))))
                names.append(k)
        for name, part in zip(names, parts, strict=True):
            m = to_mask(part.is_null(), n)
            if m.any():
                errors.append(RowError(m, "REQUIRED_MISSING", f"key field {name} is empty", None))
        if self.external_id:
            return parts[0]
        body = pc.binary_join_element_wise(*parts, KEY_SEPARATOR) if len(parts) > 1 else parts[0]
        prefix = f"{biller}:"
        # A key field that already carries the biller ("{biller}:{dispute_id}") is not prefixed twice.
        already = pc.fill_null(pc.starts_with(body, prefix), False)
        return pc.if_else(already, body, pc.binary_join_element_wise(pa.scalar(prefix), body, ""))

    # -- export helpers -----------------------------------------------------------------------
    def soql(self, where: str | None = None, order_by: str | None = None) -> str:
        """The export query: ``SELECT <source.fields> FROM <sobject> WHERE (<filter>) AND (<where>)``."""
        src = self.mapping.source
        fields = list(dict.fromkeys(["Id", *(src.fields or [])]))
        conds = [c for c in (src.where, where) if c]
        text = f"SELECT {', '.join(fields)} FROM {src.sobject}"
        if conds:
            text += " WHERE " + " AND ".join(f"({c})" for c in conds)
        if order_by:
            text += f" ORDER BY {order_by}"
        return text

    def key_filter(self, rows: MappedBatch | pa.Table) -> str:
        """SOQL WHERE matching the composite keys of ``rows`` (the state-store fallback).

        Uses the resolved target values (Ids for lookups), typed as SOQL literals.
        """
        from sfsync.mappers.keys import soql_where

        table = rows.rows if isinstance(rows, MappedBatch) else rows
        types: dict[str, FieldType | None] = {p.target: p.ftype for p in self.plans}
        return soql_where(table, list(self.key_fields), types)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _constant(value: Any, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, pa.string())
    if isinstance(value, bool):
        return pa.repeat(pa.scalar(value, pa.bool_()), n)
    if isinstance(value, int | float):
        return pa.repeat(pa.scalar(float(value), pa.float64()), n)
    return pa.repeat(pa.scalar(str(value), pa.string()), n)


def compile_mapping(mapping: Mapping, describe: DescribeLike = None, *, columns: dict[str, str] | None = None) -> CompiledMapping:
    """Validate a mapping (statically and, with a describe, against the org) and compile it.

    Args:
        mapping: A loaded mapping.
        describe: A describe function, dict of describe bodies, or :class:`Describer`. Without
            it, import fields are treated as text (useful for tests of pure transforms only).
        columns: The biller's declared columns, to check source references.

    Raises:
        MappingError: Every problem found, each ``file:line:col: key.path: message``.
    """
    from sfsync.mappers.validate import validate_mapping

    desc = describer(describe)
    problems = validate_mapping(mapping, desc, columns=columns)
    if problems:
        raise MappingError(f"{mapping.path}: {len(problems)} problem(s)", problems)
    return CompiledMapping(mapping, desc)


def _affixed(pieces: list[Any], emit_null: bool) -> pa.Array | None:
    """``"{biller}:{id}"`` — one column between fixed text — as one slice insertion per side.

    Inserting a prefix is ~5x cheaper than joining the column with scalars. None when the
    template has another shape (or a null piece would need joining rules).
    """
    arrays = [i for i, p in enumerate(pieces) if not isinstance(p, pa.Scalar)]
    if len(arrays) != 1 or not all(p.is_valid for p in pieces if isinstance(p, pa.Scalar)):
        return None
    at = arrays[0]
    col = pieces[at]
    if not pa.types.is_string(col.type) or (col.null_count and not emit_null):
        return None
    prefix = "".join(p.as_py() for p in pieces[:at])
    suffix = "".join(p.as_py() for p in pieces[at + 1:])
    if prefix:
        col = pc.binary_replace_slice(col, 0, 0, prefix)
    if suffix:
        end = 2**31 - 1  # past any value's end: the text is appended
        col = pc.binary_replace_slice(col, end, end, suffix)
    return col
