"""Validation: statically (the file alone) and against the org's describe.

Every check appends a problem ``file:line:col: key.path: message`` and carries on, so one run
of ``sfsync mapping validate`` lists everything that is wrong, not the first thing.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from sfsync.limits import BULK1_MAX_RECORDS_PER_BATCH, MAX_REST_COLLECTION
from sfsync.mappers import expr as E
from sfsync.mappers.coerce import NUMBER_KINDS, PICKLIST_KINDS, CoerceOptions, FieldType, coerce
from sfsync.mappers.describe import Describer
from sfsync.mappers.models import FieldSpec, Mapping
from sfsync.mappers.paths import Path

#: Fields that must never leave Salesforce through an export, whatever the describe says.
SENSITIVE_FIELDS = frozenset({"vlocity_cmt__cardnumber__c", "vlocity_cmt__bankaccountnumber__c"})
LIST_AGGREGATES = {"SUM", "COUNT", "FIRST", "JOIN", "LISTMIN", "LISTMAX", "MIN", "MAX"}
# Fields Salesforce fills itself; never "required" from a loader's point of view.
_SYSTEM_FIELDS = {"id", "ownerid", "createdbyid", "lastmodifiedbyid", "createddate", "lastmodifieddate",
                  "systemmodstamp", "isdeleted"}


def validate_mapping(m: Mapping, desc: Describer | None = None, *, columns: dict[str, str] | None = None) -> list[str]:
    """All problems of one mapping (empty list = valid).

    Args:
        m: The mapping.
        desc: When given, also check against the org's describe.
        columns: The biller's declared columns (overrides ``source.columns``).
    """
    problems: list[str] = []
    _Static(m, problems, columns).run()
    if desc is not None:
        _AgainstOrg(m, desc, problems).run()
    return problems


class _Static:
    def __init__(self, m: Mapping, problems: list[str], columns: dict[str, str] | None) -> None:
        self.m = m
        self.p = problems
        self.known: set[str] | None
        if m.direction == "export":
            self.known = set(m.source.fields or []) | {"Id"}
        else:
            declared = columns if columns is not None else m.source.columns
            self.known = set(declared) if declared is not None else None

    def add(self, keys: tuple[str, ...], msg: str) -> None:
        self.p.append(self.m.problem(keys, msg))

    def run(self) -> None:
        m = self.m
        if m.direction == "import":
            if not m.source.entity:
                self.add(("source",), "an import mapping needs source.entity (the biller's entity)")
            if not m.target.sobject:
                self.add(("target",), "an import mapping needs target.sobject")
        else:
            if not m.source.sobject or not m.source.fields:
                self.add(("source",), "an export mapping needs source.sobject and source.fields")
            if not m.target.entity:
                self.add(("target",), "an export mapping needs target.entity (the biller's entity)")
            for i, f in enumerate(m.source.fields or []):
                if _sensitive(f):
                    self.add(("source", "fields", str(i)), f"{f} holds card or bank numbers and must never be exported")
        self._key()
        for name, spec in m.fields.items():
            self._field(("fields", name), name, spec)
        if m.record_type is not None:
            self._field(("record_type",), "RecordTypeId", m.record_type)
        for i, cond in enumerate(m.conditions):
            self._formula(("conditions", str(i), "when"), cond.when)
            if cond.message:
                self._template(("conditions", str(i), "message"), cond.message)
        if m.record_date and m.record_date not in m.fields:
            self.add(("record_date",), f"{m.record_date} is not one of the mapped fields")
        bs = m.load.batch_size
        if bs is not None:
            limit = MAX_REST_COLLECTION if m.load.api == "rest" else BULK1_MAX_RECORDS_PER_BATCH
            if bs > limit:
                self.add(("load", "batch_size"), f"{bs} is above the {m.load.api} limit of {limit} records")
        if m.load.serial and m.load.api == "bulk2":
            self.add(("load", "serial"), "Bulk API 2.0 has no serial mode; use api: bulk1 (or auto)")

    def _key(self) -> None:
        m, k = self.m, self.m.key
        if bool(k.external_id) == bool(k.fields):
            self.add(("key",), "give exactly one of key.external_id or key.fields")
            return
        if m.direction == "export":
            for i, f in enumerate(k.fields or [k.external_id]):
                if f not in (self.known or set()):
                    self.add(("key", "fields", str(i)), f"{f} is not in source.fields")
            return
        if k.external_id:
            spec = m.fields.get(k.external_id)
            if spec is None:
                self.add(("key", "external_id"), f"{k.external_id} is not one of the mapped fields")
            elif not k.allow_unprefixed and not _mentions_biller(spec):
                self.add(("fields", k.external_id),
                         "the external-ID key must include the biller (e.g. \"{biller}:{id}\") so billers do not "
                         "collide; set key.allow_unprefixed: true for globally unique ids")
        for i, f in enumerate(k.fields or []):
            if f not in m.fields:
                self.add(("key", "fields", str(i)), f"{f} is not one of the mapped fields")

    def _field(self, keys: tuple[str, ...], name: str, spec: FieldSpec) -> None:
        kinds = spec.kinds()
        if len(kinds) != 1:
            got = ", ".join(kinds) or "none"
            self.add(keys, f"give exactly one of source, template, formula, constant (got {got})")
        if spec.source is not None:
            try:
                path = E.parse_path(spec.source)
            except E.ExprError as exc:
                self.add(keys + ("source",), str(exc))
            else:
                self._column(keys + ("source",), path)
                if path.is_list and not spec.aggregate:
                    self.add(keys + ("source",), f"{spec.source} is a list per row ([]): add aggregate: sum|first|count|join|min|max")
                if spec.aggregate and not path.is_list:
                    self.add(keys + ("aggregate",), f"aggregate needs a list path with [] (got {spec.source})")
        elif spec.aggregate:
            self.add(keys + ("aggregate",), "aggregate applies to a source path with []")
        if spec.template is not None:
            self._template(keys + ("template",), spec.template)
        if spec.formula is not None:
            self._formula(keys + ("formula",), spec.formula)
        if spec.value_map is not None and spec.unmapped == "default" and spec.unmapped_default is None:
            self.add(keys + ("unmapped",), "unmapped: default needs unmapped_default")
        if spec.unmapped_default is not None and spec.unmapped != "default":
            self.add(keys + ("unmapped_default",), "unmapped_default is only used with unmapped: default")
        if self.m.direction == "import" and (spec.type or spec.scale is not None or spec.max_length):
            self.add(keys, "type/scale/max_length are for export mappings; imports take types from describe")
        if self.m.direction == "export" and spec.lookup:
            self.add(keys + ("lookup",), "lookups are for import mappings")
        for fmt in ([spec.date_format] if isinstance(spec.date_format, str) else spec.date_format or []):
            if fmt != "iso" and "%" not in fmt:
                self.add(keys + ("date_format",), f"{fmt!r} is not a strptime format (e.g. %d/%m/%Y) or 'iso'")

    def _column(self, keys: tuple[str, ...], path: Path) -> None:
        if self.m.direction == "export" and _sensitive(path.text):
            self.add(keys, f"{path.text} holds card or bank numbers and must never be exported")
        if self.known is None:
            return
        if path.text not in self.known and path.root not in self.known:
            known = ", ".join(sorted(self.known)) or "none"
            where = "source.fields" if self.m.direction == "export" else "the biller's columns"
            self.add(keys, f"unknown source column {path.text!r} (not in {where}: {known})")

    def _formula(self, keys: tuple[str, ...], text: str) -> None:
        try:
            node = E.parse(text)
        except E.ExprError as exc:
            self.add(keys, f"{exc} in formula {text!r}")
            return
        for path in E.columns(node):
            self._column(keys, path)
        self._lists(keys, node, inside_aggregate=False)

    def _lists(self, keys: tuple[str, ...], node: E.Node, inside_aggregate: bool) -> None:
        if isinstance(node, E.Col):
            if node.path.is_list and not inside_aggregate:
                self.add(keys, f"{node.path.text} is a list per row; wrap it in SUM/COUNT/FIRST/JOIN/LISTMIN/LISTMAX")
        elif isinstance(node, E.Call):
            agg = node.name in LIST_AGGREGATES and len(node.args) <= 2
            for i, a in enumerate(node.args):
                self._lists(keys, a, inside_aggregate=agg and i == 0 and isinstance(a, E.Col))
        elif isinstance(node, E.Op):
            for a in node.args:
                self._lists(keys, a, False)

    def _template(self, keys: tuple[str, ...], text: str) -> None:
        try:
            parts = E.parse_template(text)
        except E.ExprError as exc:
            self.add(keys, str(exc))
            return
        for p in parts:
            if isinstance(p, Path):
                self._column(keys, p)
                if p.is_list:
                    self.add(keys, f"{p.text} is a list per row; templates need single values")


def _sensitive(name: str) -> bool:
    return name.split(".")[-1].lower() in SENSITIVE_FIELDS


def _mentions_biller(spec: FieldSpec) -> bool:
    try:
        if spec.template is not None:
            return E.uses_biller(E.parse_template(spec.template))
        if spec.formula is not None:
            return E.uses_biller(E.parse(spec.formula))
    except E.ExprError:
        return True  # already reported as a syntax problem
    return False


class _AgainstOrg:
    def __init__(self, m: Mapping, desc: Describer, problems: list[str]) -> None:
        self.m, self.d, self.p = m, desc, problems

    def add(self, keys: tuple[str, ...], msg: str) -> None:
        self.p.append(self.m.problem(keys, msg))

    def run(self) -> None:
        m = self.m
        obj = m.sobject
        if not obj:
            return
        if self.d.describe(obj) is None:
            key = ("target", "sobject") if m.direction == "import" else ("source", "sobject")
            self.add(key, f"the org has no object {obj}")
            return
        if m.direction == "export":
            self._export(obj)
            return
        for name, spec in m.fields.items():
            self._target(obj, name, spec)
        self._key(obj)
        if m.record_type is not None:
            self._record_type(obj)
        if m.operation in ("insert", "upsert"):
            self._required(obj)
        if m.record_date:
            ft = self.d.field_type(obj, m.record_date)
            if ft and ft.kind not in ("date", "datetime"):
                self.add(("record_date",), f"{m.record_date} is {ft.label()}, not a date")

    def _target(self, obj: str, name: str, spec: FieldSpec) -> None:
        keys = ("fields", name)
        if "." in name:
            ref = self.d.reference_field(obj, name)
            if ref is None:
                self.add(keys, f"{obj} has no relationship {name.split('.')[0]}")
                return
            self._writable(keys, obj, ref)
            target = self.d.relationship_target(obj, name)
            if target is None:
                return
            parent, fname = target
            pf = self.d.field(parent, fname)
            if self.d.describe(parent) is not None:
                if pf is None:
                    self.add(keys, f"{parent} has no field {fname}")
                elif not (pf.get("externalId") or pf.get("idLookup")):
                    self.add(keys, f"{parent}.{fname} is not an External ID; Salesforce cannot match parents by it")
            return
        f = self.d.field(obj, name)
        if f is None:
            self.add(keys, f"{obj} has no field {name}")
            return
        self._writable(keys, obj, f)
        ft = FieldType.from_describe(f)
        if spec.lookup is not None:
            if f.get("type") != "reference":
                self.add(keys + ("lookup",), f"{name} is {ft.label()}, not a lookup field")
            elif spec.lookup.sobject not in (f.get("referenceTo") or []):
                self.add(keys + ("lookup", "sobject"),
                         f"{name} points to {', '.join(f.get('referenceTo') or [])}, not {spec.lookup.sobject}")
            elif self.d.describe(spec.lookup.sobject) is not None and self.d.field(spec.lookup.sobject, spec.lookup.field) is None:
                self.add(keys + ("lookup", "field"), f"{spec.lookup.sobject} has no field {spec.lookup.field}")
            return
        if f.get("type") == "reference" and spec.template is not None:
            self.add(keys, f"{name} takes a record Id; use a lookup or a {f.get('relationshipName')}.<ExternalId> column")
        if spec.template is not None and ft.kind in NUMBER_KINDS | {"boolean"}:
            self.add(keys + ("template",), f"a template makes text; {name} is {ft.label()}")
        if spec.constant is not None:
            self._sample(keys + ("constant",), ft, spec.constant)
        if spec.default is not None:
            self._sample(keys + ("default",), ft, spec.default)
        if spec.value_map and ft.kind in PICKLIST_KINDS and ft.picklist:
            for code, value in spec.value_map.items():
                for part in ([] if value is None else str(value).split(";") if ft.kind == "multipicklist" else [str(value)]):
                    if part not in ft.picklist:
                        self.add(keys + ("value_map", str(code)),
                                 f"{value!r} is not a value of picklist {name} ({', '.join(sorted(ft.picklist))})")
        if spec.unmapped_default is not None and ft.kind in PICKLIST_KINDS and ft.picklist \
                and str(spec.unmapped_default) not in ft.picklist:
            self.add(keys + ("unmapped_default",), f"{spec.unmapped_default!r} is not a value of picklist {name}")

    def _sample(self, keys: tuple[str, ...], ft: FieldType, value: Any) -> None:
        arr = pa.array([value if not isinstance(value, float | int) or isinstance(value, bool) else str(value)])
        _, errs = coerce(arr.cast(pa.string()) if not isinstance(value, bool) else arr, ft, CoerceOptions())
        for e in errs:
            self.add(keys, f"{value!r} does not fit {ft.name} ({ft.label()}): {e.code}")

    def _writable(self, keys: tuple[str, ...], obj: str, f: dict[str, Any]) -> None:
        op = self.m.operation
        name = f["name"]
        if f.get("calculated") or f.get("autoNumber"):
            self.add(keys, f"{obj}.{name} is {'a formula' if f.get('calculated') else 'an auto-number'} and cannot be written")
            return
        if op in ("insert", "upsert") and not f.get("createable"):
            self.add(keys, f"{obj}.{name} is not createable")
        if op in ("update", "upsert") and not f.get("updateable") and name != self.m.key.external_id:
            if f.get("type") == "reference" and f.get("createable"):
                return  # master-detail without reparenting: set once on create, fine for upserts
            self.add(keys, f"{obj}.{name} is not updateable")

    def _key(self, obj: str) -> None:
        k = self.m.key
        if k.external_id:
            f = self.d.field(obj, k.external_id)
            if f is None:
                self.add(("key", "external_id"), f"{obj} has no field {k.external_id}")
            elif not f.get("externalId") and k.external_id != "Id":
                self.add(("key", "external_id"),
                         f"{obj}.{k.external_id} is not an External ID field; use key.fields for a composite key")
        for i, name in enumerate(k.fields or []):
            if "." not in name and self.d.field(obj, name) is None:
                self.add(("key", "fields", str(i)), f"{obj} has no field {name}")

    def _record_type(self, obj: str) -> None:
        spec = self.m.record_type
        assert spec is not None
        known = self.d.record_types(obj)
        names: list[tuple[tuple[str, ...], str]] = []
        if spec.constant is not None:
            names.append((("record_type",), str(spec.constant)))
        for code, value in (spec.value_map or {}).items():
            if value is not None:
                names.append((("record_type", "value_map", str(code)), str(value)))
        for keys, name in names:
            if name not in known:
                self.add(keys, f"{obj} has no record type {name!r} (known: {', '.join(sorted(known)) or 'none'})")

    def _required(self, obj: str) -> None:
        covered = {n.lower() for n in self.m.fields} | {n.split(".")[0].lower() for n in self.m.fields}
        rels = {}
        for f in self.d.fields(obj):
            if f.get("relationshipName"):
                rels[f["relationshipName"].lower()] = f["name"].lower()
        covered |= {rels.get(n, n) for n in covered}
        if self.m.record_type is not None:
            covered.add("recordtypeid")
        missing = []
        for f in self.d.fields(obj):
            name = f["name"]
            if name.lower() in _SYSTEM_FIELDS or name.lower() in covered:
                continue
            if (not f.get("nillable", True) and f.get("createable") and not f.get("defaultedOnCreate")
                    and f.get("type") != "boolean"):
                missing.append(name)
        for name in missing:
            self.add(("fields",), f"required field {obj}.{name} is not mapped")

    def _export(self, obj: str) -> None:
        for i, name in enumerate(self.m.source.fields or []):
            keys = ("source", "fields", str(i))
            if "." in name:
                if self.d.reference_field(obj, name) is None:
                    self.add(keys, f"{obj} has no relationship {name.split('.')[0]}")
                continue
            f = self.d.field(obj, name)
            if f is None:
                self.add(keys, f"{obj} has no field {name}")
            elif f.get("type") == "encryptedstring":
                self.add(keys, f"{obj}.{name} is encrypted (card or bank data) and must never be exported")
