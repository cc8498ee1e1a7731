"""The record store under :class:`Org`: records, value indexes, writes, deletes, resolvers.

Records are plain dicts keyed by canonical field names holding only non-null values
(readers use ``.get``), kept in ``_data[object][id]``. Indexes:

* ``_uidx[object][field][key] -> id`` for unique fields (external IDs, unique names);
* ``_midx[object][field][key] -> {ids}`` for non-unique external-ID / idLookup fields;
* ``_md_children[parent id] -> {child ids}`` along master-detail fields (cascades).

Text keys are lower-cased unless the field is case-sensitive, as Salesforce matches
external IDs. Soft-deleted records stay in ``_data`` with ``IsDeleted`` but leave the
value indexes, so upserts and relationship lookups no longer find them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sfsync.emulator.convert import Converter, build_converter, format_datetime
from sfsync.emulator.errors import DmlResult, FieldError, SfError
from sfsync.emulator.formulas import Formula, compile_formula, formula_dependencies
from sfsync.emulator.ids import make_id, normalize_id
from sfsync.emulator.schema import FieldDef, Schema, SObjectType


@dataclass(slots=True)
class _Meta:
    """Per-object facts the write path needs, computed once per schema."""

    defaults: dict[str, Any] = field(default_factory=dict)
    autonumbers: list[tuple[str, str, int, str]] = field(default_factory=list)  # field, prefix, width, suffix
    formulas: list[tuple[str, Formula]] = field(default_factory=list)
    unique: list[tuple[str, bool]] = field(default_factory=list)  # field, case-sensitive
    multi: list[tuple[str, bool]] = field(default_factory=list)
    master_detail: list[str] = field(default_factory=list)
    # parent field -> [(child object, child reference field)] whose formulas read it
    dependents: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # (child object, lookup field) pairs to null when a record of this object is deleted
    set_null: list[tuple[str, str]] = field(default_factory=list)
    indexed_names: frozenset[str] = frozenset()
    has_owner: bool = False


def _parse_autonumber(fmt: str) -> tuple[str, int, str]:
    start, end = fmt.index("{"), fmt.index("}")
    return fmt[:start], end - start - 1, fmt[end + 1:]


class RecordStore:
    """Records, indexes and the primitive write operations (callers hold ``self.lock``)."""

    def __init__(self, schema: Schema, clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.schema = schema
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._converters: dict[tuple[str, str], Converter] = {}
        self._meta: dict[str, _Meta] = {}
        self._build_meta()
        self._clear()

    # -- setup -----------------------------------------------------------------------------
    def _clear(self) -> None:
        self._data: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema.objects}
        self._deleted_count: dict[str, int] = {name: 0 for name in self.schema.objects}
        self._uidx: dict[str, dict[str, dict[str, str]]] = {
            name: {f: {} for f, _ in self._meta[name].unique} for name in self.schema.objects}
        self._midx: dict[str, dict[str, dict[str, set[str]]]] = {
            name: {f: {} for f, _ in self._meta[name].multi} for name in self.schema.objects}
        self._md_children: dict[str, set[str]] = {}
        self._cascaded: dict[str, list[str]] = {}  # parent id -> children deleted with it
        self._seq = 0
        self._autonumber: dict[str, int] = {}
        self._user_id = ""

    def _build_meta(self) -> None:
        schema = self.schema
        for obj in schema.objects.values():
            meta = _Meta()
            for fd in obj.fields.values():
                if fd.type == "boolean" and not fd.system:
                    meta.defaults[fd.name] = bool(fd.default)
                elif fd.default is not None and not fd.calculated:
                    meta.defaults[fd.name] = fd.default
                if fd.auto_number:
                    prefix, width, suffix = _parse_autonumber(fd.auto_number)
                    meta.autonumbers.append((fd.name, prefix, width, suffix))
                if fd.calculated:
                    meta.formulas.append((fd.name, compile_formula(schema, obj, fd)))
                if fd.unique and fd.type != "id":
                    meta.unique.append((fd.name, fd.case_sensitive))
                elif fd.indexed:
                    meta.multi.append((fd.name, fd.case_sensitive))
                if fd.master_detail:
                    meta.master_detail.append(fd.name)
            meta.indexed_names = frozenset(f for f, _ in meta.unique + meta.multi)
            meta.has_owner = "OwnerId" in obj.fields
            self._meta[obj.name] = meta
        for obj in schema.objects.values():
            for fd in obj.fields.values():
                if fd.calculated:
                    for ref_field, parent_field in formula_dependencies(schema, obj, fd):
                        parent = schema.get(obj.field(ref_field).reference_to[0])  # type: ignore[union-attr]
                        deps = self._meta[parent.name].dependents.setdefault(parent_field, [])
                        if (obj.name, ref_field) not in deps:
                            deps.append((obj.name, ref_field))
                if fd.type == "reference" and not fd.master_detail and not fd.system and fd.name != "OwnerId":
                    for target in fd.reference_to:
                        self._meta[schema.get(target).name].set_null.append((obj.name, fd.name))

    def _converter(self, obj: SObjectType, fd: FieldDef) -> Converter:
        key = (obj.name, fd.name)
        conv = self._converters.get(key)
        if conv is None:
            conv = self._converters[key] = build_converter(fd)
        return conv

    # -- reads -----------------------------------------------------------------------------
    def by_id(self, record_id: str) -> dict[str, Any] | None:
        """The stored record with this Id (15 or 18 chars, any object, deleted too), or None.

        The dict is the live stored record: read it, never mutate it.
        """
        if len(record_id) != 18:
            rid = normalize_id(record_id)
            if rid is None:
                return None
            record_id = rid
        obj = self.schema.by_prefix(record_id[:3])
        if obj is None:
            return None
        return self._data[obj.name].get(record_id)

    # -- resolvers used by the DML plans ---------------------------------------------------
    def _id_resolver(self, fd: FieldDef) -> Callable[[object], str]:
        allowed = {self.schema.get(t).key_prefix for t in fd.reference_to}
        cache: dict[object, str] = {}
        record_type_of = None
        if fd.name == "RecordTypeId":
            owner = [o for o in self.schema.objects.values() if o.fields.get("RecordTypeId") is fd]
            record_type_of = owner[0].name if owner else None

        def resolve(value: object) -> str:
            hit = cache.get(value)
            if hit is not None:
                return hit
            rid = normalize_id(value) if isinstance(value, str) else None
            if rid is None:
                raise FieldError("MALFORMED_ID", f"{fd.label}: id value of incorrect type: {value}", [fd.name])
            if rid[:3] not in allowed:
                raise FieldError("FIELD_INTEGRITY_EXCEPTION", f"{fd.label}: id value of incorrect type: {value}", [fd.name])
            rec = self.by_id(rid)
            if rec is None:
                raise FieldError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fd.name])
            if rec.get("IsDeleted"):
                raise FieldError("ENTITY_IS_DELETED", "entity is deleted", [fd.name])
            if record_type_of is not None and rec.get("SobjectType") != record_type_of:
                raise FieldError("INVALID_CROSS_REFERENCE_KEY",
                                 f"{fd.label}: this ID value isn't valid for the user: {value}", [fd.name])
            cache[value] = rid
            return rid

        return resolve

    def _relationship_resolver(self, ref: FieldDef, target_field: str) -> Callable[[object], str]:
        target = self.schema.get(ref.reference_to[0])
        tfd = target.field(target_field)
        if tfd is not None and tfd.name == "Id":
            return self._id_resolver(ref)
        if tfd is None or not tfd.id_lookup:
            why = (f"No such column '{target_field}' on sobject of type {target.name}" if tfd is None
                   else f"Field {tfd.name} is not an External ID or indexed field for {target.name}")

            def refuse(value: object) -> str:
                raise FieldError("INVALID_FIELD", why, [])

            return refuse
        unique = self._uidx[target.name].get(tfd.name)
        multi = self._midx[target.name].get(tfd.name)
        sensitive = tfd.case_sensitive
        cache: dict[object, str] = {}

        def resolve(value: object) -> str:
            hit = cache.get(value)
            if hit is not None:
                return hit
            text = value if isinstance(value, str) else str(value)
            key = text if sensitive else text.lower()
            rid = unique.get(key) if unique is not None else None
            if rid is None and multi is not None:
                found = multi.get(key)
                if found and len(found) > 1:
                    raise FieldError("INVALID_FIELD", f"Foreign key external ID: {text} matched more than one record "
                                                      f"for field {tfd.name} in entity {target.name}", [])
                rid = next(iter(found)) if found else None
            if rid is None:
                raise FieldError("INVALID_FIELD", f"Foreign key external ID: {text} not found for field {tfd.name} in "
                                                  f"entity {target.name}", [])
            cache[value] = rid
            return rid

        return resolve

    # -- primitive writes ------------------------------------------------------------------
    def _index(self, obj: str, rec: Mapping[str, Any], add: bool) -> None:
        meta, rid = self._meta[obj], rec["Id"]
        for fname, sensitive in meta.unique:
            v = rec.get(fname)
            if v is not None:
                key = str(v) if sensitive else str(v).lower()
                idx = self._uidx[obj][fname]
                if add:
                    idx[key] = rid
                elif idx.get(key) == rid:
                    del idx[key]
        for fname, sensitive in meta.multi:
            v = rec.get(fname)
            if v is not None:
                key = str(v) if sensitive else str(v).lower()
                midx = self._midx[obj][fname]
                if add:
                    midx.setdefault(key, set()).add(rid)
                else:
                    ids = midx.get(key)
                    if ids is not None:
                        ids.discard(rid)
                        if not ids:
                            del midx[key]

    def _apply_insert(self, obj: SObjectType, vals: Mapping[str, Any], now: str) -> str:
        meta = self._meta[obj.name]
        self._seq += 1
        rid = make_id(obj.key_prefix, self._seq)
        uid = self._user_id or rid
        rec: dict[str, Any] = {"Id": rid, "IsDeleted": False, "CreatedDate": now, "CreatedById": uid,
                               "LastModifiedDate": now, "LastModifiedById": uid, "SystemModstamp": now}
        if meta.defaults:
            rec.update(meta.defaults)
        if meta.has_owner and self._user_id:
            rec["OwnerId"] = self._user_id
        rec.update(vals)
        if None in rec.values():
            for k in [k for k, v in rec.items() if v is None]:
                del rec[k]
        for fname, prefix, width, suffix in meta.autonumbers:
            counter_key = obj.name + "." + fname
            n = self._autonumber.get(counter_key, 0) + 1
            self._autonumber[counter_key] = n
            rec[fname] = f"{prefix}{n:0{width}d}{suffix}"
        for fname, formula in meta.formulas:
            value = formula(rec, self.by_id)
            if value is not None:
                rec[fname] = value
        self._data[obj.name][rid] = rec
        if meta.indexed_names:
            self._index(obj.name, rec, True)
        for md in meta.master_detail:
            pid = rec.get(md)
            if pid is not None:
                kids = self._md_children.get(pid)
                if kids is None:
                    self._md_children[pid] = {rid}
                else:
                    kids.add(rid)
        return rid

    def _apply_update(self, obj: SObjectType, rid: str, vals: Mapping[str, Any], now: str, *,
                      touch_user: bool = True) -> None:
        meta = self._meta[obj.name]
        rec = self._data[obj.name][rid]
        changed = [k for k, v in vals.items() if rec.get(k) != v]
        if changed:
            reindex = not meta.indexed_names.isdisjoint(changed)
            if reindex:
                self._index(obj.name, rec, False)
            for md in meta.master_detail:
                if md in changed:
                    self._md_children.get(rec.get(md) or "", set()).discard(rid)
                    if vals[md] is not None:
                        self._md_children.setdefault(vals[md], set()).add(rid)
            for k in changed:
                v = vals[k]
                if v is None:
                    rec.pop(k, None)
                else:
                    rec[k] = v
            if meta.formulas:
                self._refresh_formulas(obj.name, rec)
            if reindex:
                self._index(obj.name, rec, True)
            if meta.dependents:
                for fname in changed:
                    for child_obj, ref_field in meta.dependents.get(fname, ()):
                        self._refresh_children(rid, child_obj, ref_field, now)
        # Salesforce moves LastModifiedDate even when no value changed.
        if touch_user:
            rec["LastModifiedDate"] = now
            rec["LastModifiedById"] = self._user_id or rec["LastModifiedById"]
        rec["SystemModstamp"] = now

    def _refresh_formulas(self, obj: str, rec: dict[str, Any]) -> None:
        for fname, formula in self._meta[obj].formulas:
            value = formula(rec, self.by_id)
            if value is None:
                rec.pop(fname, None)
            else:
                rec[fname] = value

    def _refresh_children(self, parent_id: str, child_obj: str, ref_field: str, now: str) -> None:
        # A parent field that a child formula shows changed: the children's values move too
        # (Salesforce computes on read; SystemModstamp does not move for formula changes).
        kids = self._md_children.get(parent_id)
        store = self._data[child_obj]
        candidates: Iterable[str] = kids if kids is not None else (
            rid for rid, r in store.items() if r.get(ref_field) == parent_id)
        for kid in list(candidates):
            rec = store.get(kid)
            if rec is not None and rec.get(ref_field) == parent_id:
                self._refresh_formulas(child_obj, rec)

    # -- deletes ---------------------------------------------------------------------------
    def _delete_like(self, obj: SObjectType, operation: str, rows: Sequence[Mapping[str, Any]],
                     all_or_none: bool) -> list[DmlResult]:
        errors: list[SfError | None] = []
        ids: list[str | None] = []
        for row in rows:
            raw = next((v for k, v in row.items() if k.lower() == "id"), None)
            rid = normalize_id(raw) if isinstance(raw, str) and raw else None
            ids.append(rid)
            rec = self.by_id(rid) if rid else None
            if raw is None or raw == "":
                errors.append(SfError("MISSING_ARGUMENT", "Id not specified", []))
            elif rid is None:
                errors.append(SfError("MALFORMED_ID", f"malformed id {raw}", []))
            elif rec is None:
                errors.append(SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []))
            elif operation == "delete" and rec.get("IsDeleted"):
                errors.append(SfError("ENTITY_IS_DELETED", "entity is deleted", []))
            elif operation == "undelete" and not rec.get("IsDeleted"):
                errors.append(SfError("UNDELETE_FAILED", "Entity is not in the recycle bin", []))
            elif operation == "undelete" and self._undelete_conflict(rec) is not None:
                errors.append(self._undelete_conflict(rec))
            else:
                errors.append(None)
        seen: set[str] = set()
        for i, rid in enumerate(ids):
            if errors[i] is None and rid is not None:
                if rid in seen:
                    errors[i] = SfError("DUPLICATE_VALUE", f"Duplicate id specified: {rid}", [])
                seen.add(rid)
        if all_or_none and any(e is not None for e in errors):
            return [DmlResult(None, False, False, [e or SfError(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header")])
                for e in errors]
        now = self._now()
        removed: set[str] = set()
        results = []
        for rid, err in zip(ids, errors, strict=True):
            if err is not None:
                results.append(DmlResult(rid, False, False, [err]))
                continue
            assert rid is not None
            rec = self.by_id(rid)
            if rec is not None:  # an earlier cascade in this call may have taken it
                if operation == "delete":
                    self._soft_delete(rid, now, removed)
                elif operation == "hardDelete":
                    self._hard_delete(rid, removed)
                else:
                    self._undelete(rid, now)
            results.append(DmlResult(rid, True, False, []))
        if removed:
            self._set_null(removed, now)
        return results

    def _obj_of(self, rid: str) -> str:
        obj = self.schema.by_prefix(rid[:3])
        assert obj is not None
        return obj.name

    def _soft_delete(self, rid: str, now: str, removed: set[str]) -> None:
        obj = self._obj_of(rid)
        rec = self._data[obj][rid]
        if rec.get("IsDeleted"):
            return
        self._index(obj, rec, False)
        rec["IsDeleted"] = True
        rec["LastModifiedDate"] = rec["SystemModstamp"] = now
        self._deleted_count[obj] += 1
        removed.add(rid)
        for kid in list(self._md_children.get(rid, ())):
            kid_rec = self.by_id(kid)
            if kid_rec is not None and not kid_rec.get("IsDeleted"):
                self._cascaded.setdefault(rid, []).append(kid)
                self._soft_delete(kid, now, removed)

    def _hard_delete(self, rid: str, removed: set[str]) -> None:
        obj = self._obj_of(rid)
        rec = self._data[obj].pop(rid, None)
        if rec is None:
            return
        if rec.get("IsDeleted"):
            self._deleted_count[obj] -= 1
        else:
            self._index(obj, rec, False)
        removed.add(rid)
        for md in self._meta[obj].master_detail:
            kids = self._md_children.get(rec.get(md) or "")
            if kids is not None:
                kids.discard(rid)
        for kid in list(self._md_children.pop(rid, ())):
            self._hard_delete(kid, removed)
        self._cascaded.pop(rid, None)

    def _undelete_conflict(self, rec: Mapping[str, Any]) -> SfError | None:
        obj = self._obj_of(rec["Id"])
        for fname, sensitive in self._meta[obj].unique:
            v = rec.get(fname)
            if v is not None:
                owner = self._uidx[obj][fname].get(str(v) if sensitive else str(v).lower())
                if owner is not None and owner != rec["Id"]:
                    return SfError("DUPLICATE_VALUE",
                                   f"duplicate value found: {fname} duplicates value on record with id: {owner}", [])
        return None

    def _undelete(self, rid: str, now: str) -> None:
        obj = self._obj_of(rid)
        rec = self._data[obj][rid]
        rec["IsDeleted"] = False
        rec["LastModifiedDate"] = rec["SystemModstamp"] = now
        self._deleted_count[obj] -= 1
        self._index(obj, rec, True)
        for kid in self._cascaded.pop(rid, []):
            if self.by_id(kid) is not None and self._undelete_conflict(self.by_id(kid) or {"Id": kid}) is None:
                self._undelete(kid, now)

    def _set_null(self, removed: set[str], now: str) -> None:
        # Lookups (not master-detail) to deleted records are cleared, as with "Clear the value
        # of this field" on delete. One scan per (object, field) for the whole call.
        targets = {self._obj_of(rid) for rid in removed}
        for target in targets:
            for child_obj, fname in self._meta[target].set_null:
                for rec in self._data[child_obj].values():
                    if rec.get(fname) in removed:
                        del rec[fname]
                        rec["SystemModstamp"] = now

    def _now(self) -> str:
        """The current time in Salesforce's datetime format (one value per DML call)."""
        return format_datetime(self.clock())
