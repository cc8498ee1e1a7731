"""The record store under :class:`Org`: records, value indexes, writes, deletes, resolvers.

Records are :class:`~sfsync.emulator.record.Record` objects, read-only mappings keyed by
canonical field names holding only non-null values (readers use ``.get``), kept in
``_data[object][id]``. Memory per record is what limits the org's size, so a record is a
tuple against a shared field layout, repeated values are shared (see ``dml.py``'s column
memos) and the indexes below hold as little as they can. Indexes:

* ``_uidx[object][field][key] -> id`` for unique fields (external IDs, unique names);
* ``_midx[object][field]``: an :class:`IdMultiMap` key -> ids for non-unique external-ID /
  idLookup fields, built on first use (``_multi_index``): loads rarely look records up by
  ``Name``, so most objects never pay for it;
* ``_md_children``: an :class:`IdMultiMap` parent id -> child ids along master-detail
  fields (cascades, formula refreshes), built on the first delete or parent change that
  needs it (``_children``).

Text keys are lower-cased unless the field is case-sensitive, as Salesforce matches
external IDs (a key equal to its value is the value's own string). Soft-deleted records
stay in ``_data`` with ``IsDeleted`` but leave the value indexes, so upserts and
relationship lookups no longer find them.
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
from sfsync.emulator.record import Record, make_record
from sfsync.emulator.schema import FieldDef, Schema, SObjectType


@dataclass(slots=True)
class _Meta:
    """Per-object facts the write path needs, computed once per schema."""

    defaults: dict[str, Any] = field(default_factory=dict)
    autonumbers: list[tuple[str, str, int, str]] = field(default_factory=list)  # field, prefix, width, suffix
    formulas: list[tuple[str, Formula]] = field(default_factory=list)
    unique: list[tuple[str, bool]] = field(default_factory=list)  # field, case-sensitive
    multi: dict[str, bool] = field(default_factory=dict)  # field -> case-sensitive
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


def index_key(value: object, case_sensitive: bool) -> str:
    """The index key of a field value: its text, lower-cased unless the field is case-sensitive.

    A lower-cased key equal to the text is the text's own string, so the index and the
    record share it.
    """
    text = value if isinstance(value, str) else str(value)
    if case_sensitive:
        return text
    folded = text.lower()
    return text if folded == text else folded


class IdMultiMap:
    """key -> record Ids for keys that several records may share.

    Most keys belong to one record, so a lone Id is held as the Id string itself and a set
    is made only for a second one (a one-element set costs 216 bytes).
    """

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: dict[str, str | set[str]] = {}

    def add(self, key: str, rid: str) -> None:
        """Record that ``rid`` has ``key``."""
        held = self._map.get(key)
        if held is None:
            self._map[key] = rid
        elif isinstance(held, str):
            if held != rid:
                self._map[key] = {held, rid}
        else:
            held.add(rid)

    def discard(self, key: str, rid: str) -> None:
        """Forget that ``rid`` has ``key`` (nothing happens when it had not)."""
        held = self._map.get(key)
        if held is None:
            return
        if isinstance(held, str):
            if held == rid:
                del self._map[key]
            return
        held.discard(rid)
        if len(held) <= 1:
            if held:
                self._map[key] = next(iter(held))
            else:
                del self._map[key]

    def ids(self, key: str) -> tuple[str, ...]:
        """The Ids with ``key`` (empty when none)."""
        held = self._map.get(key)
        if held is None:
            return ()
        if isinstance(held, str):
            return (held,)
        return tuple(held)

    def pop(self, key: str) -> tuple[str, ...]:
        """The Ids with ``key``, forgetting them."""
        found = self.ids(key)
        self._map.pop(key, None)
        return found


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
        self._data: dict[str, dict[str, Record]] = {name: {} for name in self.schema.objects}
        self._deleted_count: dict[str, int] = {name: 0 for name in self.schema.objects}
        self._uidx: dict[str, dict[str, dict[str, str]]] = {
            name: {f: {} for f, _ in self._meta[name].unique} for name in self.schema.objects}
        # Non-unique indexes and the master-detail children are built when first needed.
        self._midx: dict[str, dict[str, IdMultiMap]] = {name: {} for name in self.schema.objects}
        self._md_children: IdMultiMap | None = None
        self._cascaded: dict[str, list[str]] = {}  # parent id -> children deleted with it
        # (object, field, bulk) -> raw cell -> stored value, shared by DML calls (dml.py).
        self._memos: dict[tuple[str, str, bool], dict[object, object]] = {}
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
                    meta.multi[fd.name] = fd.case_sensitive
                if fd.master_detail:
                    meta.master_detail.append(fd.name)
            meta.indexed_names = frozenset([f for f, _ in meta.unique] + list(meta.multi))
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
    def by_id(self, record_id: str) -> Record | None:
        """The stored record with this Id (15 or 18 chars, any object, deleted too), or None.

        The record is the live stored one (a read-only mapping).
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
            rid = cache[value] = rec["Id"]  # the parent's own string: its children share it
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
        multi = self._multi_index(target.name, tfd.name)
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
                found = multi.ids(key)
                if len(found) > 1:
                    raise FieldError("INVALID_FIELD", f"Foreign key external ID: {text} matched more than one record "
                                                      f"for field {tfd.name} in entity {target.name}", [])
                rid = found[0] if found else None
            if rid is None:
                raise FieldError("INVALID_FIELD", f"Foreign key external ID: {text} not found for field {tfd.name} in "
                                                  f"entity {target.name}", [])
            cache[value] = rid
            return rid

        return resolve

    # -- indexes built on demand -----------------------------------------------------------
    def _multi_index(self, obj: str, fname: str) -> IdMultiMap | None:
        """The non-unique index of ``obj.fname`` (built now if needed), or None if it has none."""
        built = self._midx[obj]
        idx = built.get(fname)
        if idx is None:
            sensitive = self._meta[obj].multi.get(fname)
            if sensitive is None:
                return None
            idx = built[fname] = IdMultiMap()
            for rec in self._data[obj].values():
                v = rec.get(fname)
                if v is not None and not rec["IsDeleted"]:
                    idx.add(index_key(v, sensitive), rec["Id"])
        return idx

    def _children(self) -> IdMultiMap:
        """Parent id -> ids of its master-detail children, deleted ones too (built now if needed)."""
        kids = self._md_children
        if kids is None:
            kids = self._md_children = IdMultiMap()
            for name, records in self._data.items():
                for md in self._meta[name].master_detail:
                    for rid, rec in records.items():
                        pid = rec.get(md)
                        if pid is not None:
                            kids.add(pid, rid)
        return kids

    # -- primitive writes ------------------------------------------------------------------
    def _index(self, obj: str, rec: Mapping[str, Any], add: bool) -> None:
        meta, rid = self._meta[obj], rec["Id"]
        for fname, sensitive in meta.unique:
            v = rec.get(fname)
            if v is not None:
                key = index_key(v, sensitive)
                idx = self._uidx[obj][fname]
                if add:
                    idx[key] = rid
                elif idx.get(key) == rid:
                    del idx[key]
        for fname, midx in self._midx[obj].items():
            v = rec.get(fname)
            if v is not None:
                key = index_key(v, meta.multi[fname])
                if add:
                    midx.add(key, rid)
                else:
                    midx.discard(key, rid)

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
        record = self._data[obj.name][rid] = make_record(rec)
        if meta.indexed_names:
            self._index(obj.name, record, True)
        if meta.master_detail and self._md_children is not None:
            for md in meta.master_detail:
                pid = rec.get(md)
                if pid is not None:
                    self._md_children.add(pid, rid)
        return rid

    def _apply_update(self, obj: SObjectType, rid: str, vals: Mapping[str, Any], now: str, *,
                      touch_user: bool = True) -> None:
        meta = self._meta[obj.name]
        rec = self._data[obj.name][rid]
        changes = rec._diff(vals)
        changed = tuple(changes)  # the fields whose value changes (the audit fields join below)
        reindex = bool(changed) and not meta.indexed_names.isdisjoint(changed)
        if reindex:
            self._index(obj.name, rec, False)
        if changed and self._md_children is not None:
            for md in meta.master_detail:
                if md in changes:
                    self._md_children.discard(rec.get(md) or "", rid)
                    if changes[md] is not None:
                        self._md_children.add(changes[md], rid)
        # Salesforce moves LastModifiedDate even when no value changed.
        if touch_user:
            changes["LastModifiedDate"] = now
            changes["LastModifiedById"] = self._user_id or rec["LastModifiedById"]
        changes["SystemModstamp"] = now
        rec._update(changes)
        if changed:
            if meta.formulas:
                self._refresh_formulas(obj.name, rec)
            if reindex:
                self._index(obj.name, rec, True)
            if meta.dependents:
                for fname in changed:
                    for child_obj, ref_field in meta.dependents.get(fname, ()):
                        self._refresh_children(rid, child_obj, ref_field)

    def _refresh_formulas(self, obj: str, rec: Record) -> None:
        changed = {}
        for fname, formula in self._meta[obj].formulas:
            value = formula(rec, self.by_id)
            if rec.get(fname) != value:
                changed[fname] = value
        if changed:
            rec._update(changed)

    def _refresh_children(self, parent_id: str, child_obj: str, ref_field: str) -> None:
        # A parent field that a child formula shows changed: the children's values move too
        # (Salesforce computes on read; SystemModstamp does not move for formula changes).
        store = self._data[child_obj]
        candidates: Iterable[str]
        if ref_field in self._meta[child_obj].master_detail:
            candidates = self._children().ids(parent_id)
        else:
            candidates = [rid for rid, r in store.items() if r.get(ref_field) == parent_id]
        for kid in candidates:
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
        rec._update({"IsDeleted": True, "LastModifiedDate": now, "SystemModstamp": now})
        self._deleted_count[obj] += 1
        removed.add(rid)
        for kid in self._children().ids(rid):
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
        children = self._children()
        for md in self._meta[obj].master_detail:
            children.discard(rec.get(md) or "", rid)
        for kid in children.pop(rid):
            self._hard_delete(kid, removed)
        self._cascaded.pop(rid, None)

    def _undelete_conflict(self, rec: Mapping[str, Any]) -> SfError | None:
        obj = self._obj_of(rec["Id"])
        for fname, sensitive in self._meta[obj].unique:
            v = rec.get(fname)
            if v is not None:
                owner = self._uidx[obj][fname].get(index_key(v, sensitive))
                if owner is not None and owner != rec["Id"]:
                    return SfError("DUPLICATE_VALUE",
                                   f"duplicate value found: {fname} duplicates value on record with id: {owner}", [])
        return None

    def _undelete(self, rid: str, now: str) -> None:
        obj = self._obj_of(rid)
        rec = self._data[obj][rid]
        rec._update({"IsDeleted": False, "LastModifiedDate": now, "SystemModstamp": now})
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
                        rec._update({fname: None, "SystemModstamp": now})

    def _now(self) -> str:
        """The current time in Salesforce's datetime format (one value per DML call)."""
        return format_datetime(self.clock())
