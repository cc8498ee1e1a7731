"""The DML engine behind :meth:`Org.dml`: validate every row, then apply the good ones.

Speed matters (a Bulk 2.0 upsert of a million line items goes through here), so the work
that depends only on the set of columns — resolving names, choosing converters, finding
relationship targets — is done once per distinct column tuple (a :class:`_Plan`), and
per-row work is plain dict operations. Lookups of the same foreign key value are cached
for the duration of one call.

Memory matters too (millions of records stay in the org): each field's cells go through a
memo kept on the org across calls (raw cell -> stored value), so a value that many records
hold (a picklist value, a date, an amount, a unit, a service name) is one object they all
point to, not one copy per record. Unique fields skip it (their values never repeat), and
a memo that fills up starts afresh, which bounds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfsync.emulator.errors import DmlResult, FieldError, SfApiError, SfError
from sfsync.emulator.ids import normalize_id
from sfsync.emulator.schema import FieldDef, SObjectType

if TYPE_CHECKING:
    from sfsync.emulator.org import Org

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete", "undelete")
_SKIP = object()  # a bulk blank cell: leave the field as it is
# Distinct values a column memo holds before it starts afresh (at most a few MB a field).
MEMO_LIMIT = 200_000
BULK_APIS = frozenset({"bulk1", "bulk2"})
_ROLLED_BACK = SfError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


@dataclass(slots=True)
class _Plan:
    """What to do with each column of one column tuple."""

    error: SfError | None = None
    id_col: str | None = None
    match_col: str | None = None  # column holding the upsert key (may equal id_col)
    # (column, field name, converter, memo): the memo maps a raw cell to its stored value
    # (or _SKIP); it is pre-seeded with the null spellings, so most cells are one dict hit.
    # Unique fields have no memo (None).
    simple: list[tuple[str, str, Callable[[object], object], dict[object, object] | None]] = field(default_factory=list)
    refs: list[tuple[str, str, Callable[[object], object], dict[object, object]]] = field(default_factory=list)


def _key(fd: FieldDef, value: str) -> str:
    return value if fd.case_sensitive else value.lower()


class _Call:
    """State of one dml call: caches and the in-call uniqueness bookkeeping."""

    def __init__(self, org: Org, obj: SObjectType, operation: str, api: str) -> None:
        self.org = org
        self.obj = obj
        self.operation = operation
        self.bulk = api in BULK_APIS
        self.plans: dict[tuple[str, ...], _Plan] = {}
        self.store = org._data[obj.name]

    # -- column planning -----------------------------------------------------------------
    def plan(self, columns: tuple[str, ...], match_field: FieldDef | None) -> _Plan:
        plan = self.plans.get(columns)
        if plan is None:
            plan = self._build_plan(columns, match_field)
            self.plans[columns] = plan
        return plan

    def _build_plan(self, columns: tuple[str, ...], match_field: FieldDef | None) -> _Plan:
        obj, org = self.obj, self.org
        plan = _Plan()
        inserting = self.operation in ("insert", "upsert")
        readonly: list[str] = []
        for col in columns:
            if col == "attributes":
                continue
            if "." in col:
                rel_name, _, target_field = col.partition(".")
                ref = obj.relationship(rel_name)
                if ref is None or "." in target_field:
                    plan.error = SfError("INVALID_FIELD", f"No such column '{col}' on sobject of type {obj.name}", [])
                    return plan
                plan.refs.append((col, ref.name, org._relationship_resolver(ref, target_field), self._null_memo()))
                continue
            fd = obj.field(col)
            if fd is None:
                plan.error = SfError("INVALID_FIELD", f"No such column '{col}' on sobject of type {obj.name}", [])
                return plan
            if fd.name == "Id":
                plan.id_col = col
                if match_field is not None and match_field.name == "Id":
                    plan.match_col = col
                continue
            if match_field is not None and fd is match_field:
                plan.match_col = col
            writable = fd.writable_on_insert if self.operation == "insert" else (
                fd.writable_on_update or (inserting and fd.writable_on_insert))
            if not writable:
                readonly.append(fd.name)
                continue
            if fd.type == "reference":
                plan.refs.append((col, fd.name, org._id_resolver(fd), self._null_memo()))
            else:
                memo = None if fd.unique or fd.external_id else self._column_memo(fd)
                plan.simple.append((col, fd.name, org._converter(obj, fd), memo))
        if readonly:
            plan.error = SfError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of this "
                "field and verify that it is read/write for your profile or permission set.",
                readonly,
            )
        if self.operation == "insert" and plan.id_col is not None and plan.error is None:
            plan.error = SfError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
        return plan

    def _null_memo(self) -> dict[object, object]:
        if self.bulk:
            # Bulk CSV: a blank cell leaves the field as it is; #N/A sets null.
            return {"": _SKIP, "#N/A": None, None: None}
        return {"": None, None: None}

    def _column_memo(self, fd: FieldDef) -> dict[object, object]:
        """The org's memo of stored values for ``fd`` (shared by every call of this kind of API)."""
        key = (self.obj.name, fd.name, self.bulk)
        memo = self.org._memos.get(key)
        if memo is None:
            memo = self.org._memos[key] = self._null_memo()
        return memo

    def _remember(self, memo: dict[object, object], raw: str, value: object) -> None:
        """Add ``raw -> value`` to a column memo, emptying it first when it is full."""
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
            memo.update(self._null_memo())
        memo[raw] = value

    # -- values --------------------------------------------------------------------------
    def values(self, plan: _Plan, row: Mapping[str, Any]) -> dict[str, Any]:
        """Converted values of one row (None = set null); raises FieldError."""
        vals: dict[str, Any] = {}
        skip = _SKIP
        for col, name, conv, memo in plan.simple:
            v = row[col]
            if memo is not None:
                if v.__class__ is str:
                    out = memo.get(v, skip)
                    if out is skip:
                        if v == "":  # only bulk reaches here: blank leaves the field alone
                            continue
                        out = conv(v)
                        self._remember(memo, v, out)
                elif v is None:
                    out = None
                else:
                    out = conv(v)
                vals[name] = out
                continue
            if v is None or v == "":
                if not self.bulk or v is None:
                    vals[name] = None
                continue
            if self.bulk and v == "#N/A":
                vals[name] = None
                continue
            vals[name] = conv(v)
        for col, name, resolve, memo in plan.refs:
            v = row[col]
            if v.__class__ is str:
                out = memo.get(v, skip)
                if out is skip:
                    if v == "":
                        continue
                    out = resolve(v)
            elif v is None:
                out = None
            else:
                out = resolve(v)
            vals[name] = out
        return vals


def _duplicates(keys: Sequence[str | None]) -> set[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for k in keys:
        if k is None:
            continue
        if k in seen:
            dups.add(k)
        else:
            seen.add(k)
    return dups


def run_dml(
    org: Org,
    sobject: str,
    operation: str,
    rows: Sequence[Mapping[str, Any]],
    external_id_field: str | None,
    all_or_none: bool,
    api: str,
    parent_lock: Callable[[str], bool] | None,
) -> list[DmlResult]:
    """Validate and apply one DML call (caller holds the org lock). See :meth:`Org.dml`."""
    if operation not in OPERATIONS:
        raise SfApiError(400, "INVALID_OPERATION", f"Invalid operation: {operation}")
    obj = org.schema.get(sobject)
    if operation in ("delete", "hardDelete", "undelete"):
        return org._delete_like(obj, operation, rows, all_or_none)
    call = _Call(org, obj, operation, api)
    match_field: FieldDef | None = None
    if operation == "upsert":
        if not external_id_field:
            raise SfApiError(400, "MISSING_ARGUMENT", "External ID field name not specified for upsert")
        match_field = obj.field(external_id_field)
        if match_field is None:
            raise SfApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: "
                                               f"{external_id_field}")
        if not match_field.id_lookup:
            raise SfApiError(400, "INVALID_FIELD", f"Field {match_field.name} is not an External ID or indexed field "
                                                   f"for {obj.name}")
    n = len(rows)
    errors: list[SfError | None] = [None] * n
    targets: list[str | None] = [None] * n  # existing record id (None = create)
    values: list[dict[str, Any] | None] = [None] * n
    plans = [call.plan(tuple(row), match_field) for row in rows]

    # Pass 1: which existing record each row writes to; duplicate keys inside the call fail.
    if operation == "update" or (match_field is not None and match_field.name == "Id"):
        _match_by_id(call, rows, plans, errors, targets, upsert=operation == "upsert")
    elif match_field is not None:
        _match_by_key(call, match_field, rows, plans, errors, targets)

    # Pass 2: convert, resolve, validate.
    lock_rate = org.faults.lock_error_rate
    required = [fd.name for fd in obj.fields.values() if fd.required and fd.writable_on_insert]
    unique = [fd for fd in obj.fields.values() if fd.unique and fd.type != "id"]
    md_fields = [fd.name for fd in obj.fields.values() if fd.master_detail]
    pending_unique: dict[tuple[str, str], int] = {}
    store = call.store
    for i, row in enumerate(rows):
        if errors[i] is not None:
            continue
        plan = plans[i]
        if plan.error is not None:
            errors[i] = plan.error
            continue
        try:
            vals = call.values(plan, row)
        except FieldError as exc:
            errors[i] = exc.error
            continue
        target = targets[i]
        current = store.get(target) if target is not None else None
        if current is None:
            missing = [f for f in required if vals.get(f) is None]
        else:
            missing = [f for f in required if f in vals and vals[f] is None]
        if missing:
            errors[i] = SfError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
            continue
        err = _check_unique(org, obj, unique, vals, target, pending_unique, i)
        if err is not None:
            errors[i] = err
            continue
        if target is None and match_field is not None and org.faults.upsert_raced(obj.name):
            errors[i] = _lost_race(org, obj, match_field, vals, required)
            continue
        if lock_rate and org.faults.lock_error():
            errors[i] = _lock_error(target or "")
            continue
        if parent_lock is not None:
            for md in md_fields:
                pid = vals.get(md) if md in vals else current.get(md) if current is not None else None
                if pid and parent_lock(pid):
                    errors[i] = _lock_error(pid)
                    break
            if errors[i] is not None:
                continue
        values[i] = vals

    if all_or_none and any(e is not None for e in errors):
        return [DmlResult(None, False, False, [e if e is not None else _ROLLED_BACK]) for e in errors]

    # Pass 3: apply.
    results: list[DmlResult] = []
    now = org._now()
    apply_insert, apply_update = org._apply_insert, org._apply_update
    for i in range(n):
        err = errors[i]
        if err is not None:
            results.append(DmlResult(targets[i] if operation == "update" else None, False, False, [err]))
            continue
        row_vals = values[i]
        assert row_vals is not None
        target = targets[i]
        if target is None:
            results.append(DmlResult(apply_insert(obj, row_vals, now), True, True, []))
        else:
            apply_update(obj, target, row_vals, now)
            results.append(DmlResult(target, True, False, []))
    org._note_rows(api, n)
    return results


def _lost_race(org: Org, obj: SObjectType, match_field: FieldDef, vals: dict[str, Any], required: list[str]) -> SfError:
    """The ``concurrent_upsert`` fault: another writer created this External ID a moment before.

    The record it creates holds the External ID and the required fields only, so a caller that
    took DUPLICATE_VALUE for success (or dropped the row) leaves it visibly short of its values.
    """
    first = {name: vals[name] for name in (match_field.name, *required) if name in vals}
    rid = org._apply_insert(obj, first, org._now())
    return SfError("DUPLICATE_VALUE",
                   f"duplicate value found: {match_field.name} duplicates value on record with id: {rid}", [])


def _lock_error(record_id: str) -> SfError:
    return SfError("UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records: {record_id}", [])


def _match_by_id(call: _Call, rows: Sequence[Mapping[str, Any]], plans: list[_Plan], errors: list[SfError | None],
                 targets: list[str | None], *, upsert: bool) -> None:
    obj, store = call.obj, call.store
    ids: list[str | None] = []
    for i, row in enumerate(rows):
        col = plans[i].id_col
        raw = row.get(col) if col else None
        if raw is None or raw == "":
            ids.append(None)
            if not upsert:
                errors[i] = SfError("MISSING_ARGUMENT", "Id not specified in an update call", [])
            continue
        rid = normalize_id(str(raw)) if isinstance(raw, str) else None
        ids.append(rid)
        if rid is None or rid[:3] != obj.key_prefix:
            errors[i] = SfError("MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {raw}", ["Id"])
            continue
        rec = store.get(rid)
        if rec is None:
            errors[i] = SfError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        elif rec.get("IsDeleted"):
            errors[i] = SfError("ENTITY_IS_DELETED", "entity is deleted", [])
        else:
            targets[i] = rid
    for dup in _duplicates(ids):
        for i, rid in enumerate(ids):
            if rid == dup:
                errors[i] = SfError("DUPLICATE_VALUE", f"Duplicate id specified: {rid}", [])


def _match_by_key(call: _Call, fd: FieldDef, rows: Sequence[Mapping[str, Any]], plans: list[_Plan],
                  errors: list[SfError | None], targets: list[str | None]) -> None:
    org, obj = call.org, call.obj
    unique_index = org._uidx[obj.name].get(fd.name)
    multi_index = org._multi_index(obj.name, fd.name)
    keys: list[str | None] = []
    for i, row in enumerate(rows):
        col = plans[i].match_col
        raw = row.get(col) if col else None
        if raw is None or raw == "":
            keys.append(None)
            if plans[i].error is None:
                errors[i] = SfError("MISSING_ARGUMENT", f"{fd.name} not specified", [])
            continue
        value = raw if isinstance(raw, str) else str(raw)
        key = _key(fd, value)
        keys.append(key)
        if unique_index is not None:
            targets[i] = unique_index.get(key)
        elif multi_index is not None:
            found = multi_index.ids(key)
            if found:
                if len(found) > 1:
                    errors[i] = SfError("DUPLICATE_EXTERNAL_ID",
                                        f"{fd.label}: more than one record found for external id field: "
                                        f"[{', '.join(sorted(found))}]", [fd.name])
                else:
                    targets[i] = found[0]
    dups = _duplicates(keys)
    if dups:
        for i, row_key in enumerate(keys):
            if row_key in dups:
                errors[i] = SfError("DUPLICATE_VALUE",
                                    f"Duplicate external id specified: {rows[i].get(plans[i].match_col or '')}",
                                    [fd.name])


def _check_unique(org: Org, obj: SObjectType, unique: list[FieldDef], vals: dict[str, Any], target: str | None,
                  pending: dict[tuple[str, str], int], row: int) -> SfError | None:
    for fd in unique:
        value = vals.get(fd.name)
        if value is None:
            continue
        key = _key(fd, str(value))
        owner = org._uidx[obj.name][fd.name].get(key)
        if owner is not None and owner != target:
            return SfError("DUPLICATE_VALUE",
                           f"duplicate value found: {fd.name} duplicates value on record with id: {owner}", [])
        if pending.setdefault((fd.name, key), row) != row:
            return SfError("DUPLICATE_VALUE",
                           f"duplicate value found: {fd.name} duplicates value on record with id: <unknown>", [])
    return None
