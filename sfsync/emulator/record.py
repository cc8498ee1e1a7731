"""Compact stored records: a read-only mapping whose field names live in a shared :class:`Shape`.

A ``dict`` per record costs about 1.2 KB for 25 fields (its hash table has room for 42
entries of 24 bytes). A :class:`Record` is one small object holding two tuples, 8 bytes a
field:

* ``_row``: the record's :class:`Shape` first, then its own values. Records with the same
  fields in the same order (every record of one bulk column layout) share one shape,
  which maps a field name to its position;
* ``_audit``: the values of :data:`AUDIT_FIELDS` (``IsDeleted``, created/modified date and
  user, ``SystemModstamp``). Every record written by one DML call has the same ones, so
  they share one tuple (see :func:`audit_tuple`) instead of six slots each.

Readers use records like the dicts they replace (``rec["Id"]``, ``rec.get(name)``, ``in``,
iteration over the names, ``dict(rec)``, ``==``); a record holds only non-null fields, so
``rec.get(name)`` is None for a blank. Names iterate in the order the fields were first
written, the audit fields last. Only :class:`~sfsync.emulator.store.RecordStore`
changes records, through :meth:`Record._update`, which keeps the record's identity (it
stays the live stored record) and swaps whole tuples, so a reader on another thread never
sees a shape paired with another shape's values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# System fields every stored record has, equal for all records one DML call writes.
AUDIT_FIELDS = ("IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
_AUDIT_SET = frozenset(AUDIT_FIELDS)
_NO_AUDIT: tuple[Any, ...] = ()
_MAX_SHAPES = 10_000  # beyond this, new shapes are not shared (a safety net: the test suite makes ~90)
_MAX_AUDITS = 10_000  # distinct audit tuples kept for sharing before the cache starts afresh


class Shape:
    """The field names of a family of records.

    ``names`` are the record's fields in iteration order; ``slots`` maps a name to its
    place: ``i > 0`` is ``_row[i]`` (``_row[0]`` is the shape), ``i < 0`` is ``_audit[~i]``.
    """

    __slots__ = ("own", "audit", "names", "slots")

    def __init__(self, own: tuple[str, ...], audit: bool) -> None:
        self.own = own
        self.audit = audit
        self.names = own + AUDIT_FIELDS if audit else own
        self.slots: dict[str, int] = {name: i for i, name in enumerate(own, 1)}
        if audit:
            self.slots.update((name, ~i) for i, name in enumerate(AUDIT_FIELDS))

    def __reduce__(self) -> tuple[Any, ...]:
        return shape_of, (self.own, self.audit)

    def __repr__(self) -> str:
        return f"Shape({self.names!r})"


_SHAPES: dict[tuple[tuple[str, ...], bool], Shape] = {}
_AUDITS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def shape_of(own: tuple[str, ...], audit: bool) -> Shape:
    """The shared :class:`Shape` of records with fields ``own`` (+ the audit fields if ``audit``)."""
    key = (own, audit)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = Shape(own, audit)
        if len(_SHAPES) < _MAX_SHAPES:
            shape = _SHAPES.setdefault(key, shape)
    return shape


def audit_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    """The shared tuple of these :data:`AUDIT_FIELDS` values (one object for equal values)."""
    audit = tuple(values)
    shared = _AUDITS.get(audit)
    if shared is None:
        if len(_AUDITS) >= _MAX_AUDITS:
            _AUDITS.clear()
        shared = _AUDITS[audit] = audit
    return shared


class Record(Mapping[str, Any]):
    """One stored record: a read-only mapping of its non-null fields.

    Build one with :func:`make_record`. The store updates it in place; everybody else
    only reads it.
    """

    __slots__ = ("_row", "_audit")

    def __init__(self, row: tuple[Any, ...], audit: tuple[Any, ...] = _NO_AUDIT) -> None:
        self._row = row  # (shape, value of shape.own[0], value of shape.own[1], ...)
        self._audit = audit  # values of AUDIT_FIELDS when shape.audit, else ()

    # -- reading ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        row = self._row
        i = row[0].slots[name]
        return row[i] if i > 0 else self._audit[~i]

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when the field is blank or unknown."""
        row = self._row
        i = row[0].slots.get(name)
        if i is None:
            return default
        return row[i] if i > 0 else self._audit[~i]

    def __contains__(self, name: object) -> bool:
        return name in self._row[0].slots

    def __iter__(self) -> Iterator[str]:
        return iter(self._row[0].names)

    def __len__(self) -> int:
        return len(self._row[0].names)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict copy of the fields."""
        row = self._row
        return dict(zip(row[0].names, row[1:] + self._audit, strict=True))

    def __repr__(self) -> str:
        return f"Record({self.to_dict()!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The tuples pickle as they are (the shape by its names): a state file holds no copies.
        return Record, (self._row, self._audit)

    # -- writing (RecordStore only) --------------------------------------------------------
    def _diff(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The items of ``values`` that differ from the record's (None stands for a blank)."""
        row, audit = self._row, self._audit
        slots = row[0].slots
        out = {}
        for name, value in values.items():
            i = slots.get(name)
            if (None if i is None else row[i] if i > 0 else audit[~i]) != value:
                out[name] = value
        return out

    def _update(self, changes: Mapping[str, Any]) -> None:
        """Set fields (None removes one) in one step; the record keeps its identity."""
        row = self._row
        slots = row[0].slots
        values: list[Any] | None = None
        audit: list[Any] | None = None
        for name, value in changes.items():
            i = slots.get(name)
            if i is None or value is None:  # the set of fields changes
                self._reshape(changes)
                return
            if i > 0:
                if values is None:
                    values = list(row)
                values[i] = value
            else:
                if audit is None:
                    audit = list(self._audit)
                audit[~i] = value
        if audit is not None:
            self._audit = audit_tuple(audit)
        if values is not None:
            self._row = tuple(values)

    def _reshape(self, changes: Mapping[str, Any]) -> None:
        """:meth:`_update` for changes that add or remove fields: the record takes a new shape."""
        fields = self.to_dict()
        fields.update(changes)
        rebuilt = make_record({name: value for name, value in fields.items() if value is not None})
        self._audit = rebuilt._audit
        self._row = rebuilt._row


def make_record(fields: Mapping[str, Any]) -> Record:
    """A :class:`Record` of ``fields`` (whose values must all be non-null), in their order."""
    if _AUDIT_SET <= fields.keys():
        own = dict(fields)
        audit = audit_tuple([own.pop(name) for name in AUDIT_FIELDS])
        return Record((shape_of(tuple(own), True), *own.values()), audit)
    return Record((shape_of(tuple(fields), False), *fields.values()))
