"""The emulator's schema model: objects and fields, loaded from YAML data (+ overlays).

Names are case-insensitive like Salesforce's: every lookup goes through a lower-cased map,
and the canonical spelling from the data file is what the org stores and returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sfsync.emulator.errors import SfApiError, not_found

TEXT_TYPES = frozenset({"string", "textarea", "url", "email", "phone", "picklist", "multipicklist", "encryptedstring", "combobox"})
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})
FIELD_TYPES = TEXT_TYPES | NUMBER_TYPES | frozenset({"id", "boolean", "date", "datetime", "reference"})


@dataclass(slots=True)
class FieldDef:
    """One field of an object, with the properties describe and validation need."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    unique: bool = False
    external_id: bool = False
    id_lookup: bool = False
    case_sensitive: bool = False
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    child_relationship_name: str | None = None
    master_detail: bool = False
    delete_constraint: str = "SetNull"
    picklist: list[str] = field(default_factory=list)
    restricted: bool = False
    default: Any = None
    formula: str | None = None
    auto_number: str | None = None
    html: bool = False
    name_field: bool = False
    system: bool = False

    @property
    def calculated(self) -> bool:
        """True for formula fields (computed by the org, never written)."""
        return self.formula is not None

    @property
    def indexed(self) -> bool:
        """True when the org keeps a value index for this field (for matching and uniqueness)."""
        return self.unique or self.external_id or (self.id_lookup and self.type != "id")

    @property
    def writable_on_insert(self) -> bool:
        """Whether a client may set this field when creating a record."""
        return self.createable and not self.calculated and self.auto_number is None and not self.system

    @property
    def writable_on_update(self) -> bool:
        """Whether a client may change this field on an existing record."""
        return self.updateable and not self.calculated and self.auto_number is None and not self.system


@dataclass(slots=True)
class SObjectType:
    """One object type: its fields (canonical and lower-cased maps) and record types."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool = False
    custom_setting: bool = False
    record_types: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, FieldDef] = field(default_factory=dict)
    fields_ci: dict[str, FieldDef] = field(default_factory=dict)
    relationships_ci: dict[str, FieldDef] = field(default_factory=dict)

    def field(self, name: str) -> FieldDef | None:
        """Look a field up by name, case-insensitively."""
        return self.fields_ci.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationship name is ``name`` (case-insensitive)."""
        return self.relationships_ci.get(name.lower())

    def add_field(self, fd: FieldDef) -> None:
        """Add or replace a field, keeping the lookup maps in step."""
        old = self.fields_ci.get(fd.name.lower())
        if old is not None:
            self.fields.pop(old.name, None)
            if old.relationship_name:
                self.relationships_ci.pop(old.relationship_name.lower(), None)
        self.fields[fd.name] = fd
        self.fields_ci[fd.name.lower()] = fd
        if fd.type == "reference" and fd.relationship_name:
            self.relationships_ci[fd.relationship_name.lower()] = fd


def _default_relationship_name(field_name: str) -> str:
    # Custom lookups: Foo__c -> Foo__r; standard ones drop the trailing "Id".
    if field_name.endswith("__c"):
        return field_name[:-3] + "__r"
    return field_name[:-2] if field_name.endswith("Id") else field_name


def _field_from_spec(name: str, spec: dict[str, Any], where: str) -> FieldDef:
    ftype = spec.get("type")
    if ftype not in FIELD_TYPES:
        raise ValueError(f"{where}: field {name}: unknown type {ftype!r}")
    fd = FieldDef(
        name=name,
        type=ftype,
        label=str(spec.get("label") or name.replace("vlocity_cmt__", "").removesuffix("__c").replace("_", " ")),
        length=int(spec.get("length", 0) or 0),
        precision=int(spec.get("precision", 0) or 0),
        scale=int(spec.get("scale", 0) or 0),
        required=bool(spec.get("required", False)),
        createable=bool(spec.get("createable", True)),
        updateable=bool(spec.get("updateable", True)),
        unique=bool(spec.get("unique", False)),
        external_id=bool(spec.get("externalId", False)),
        id_lookup=bool(spec.get("idLookup", False) or spec.get("externalId", False)),
        case_sensitive=bool(spec.get("caseSensitive", False)),
        reference_to=list(spec.get("referenceTo") or []),
        child_relationship_name=spec.get("childRelationshipName"),
        master_detail=bool(spec.get("masterDetail", False)),
        delete_constraint=str(spec.get("deleteConstraint") or ("Cascade" if spec.get("masterDetail") else "SetNull")),
        picklist=[str(v) for v in spec.get("picklist") or []],
        restricted=bool(spec.get("restricted", False)),
        default=spec.get("default"),
        formula=spec.get("formula"),
        auto_number=spec.get("autoNumber"),
        html=bool(spec.get("html", False)),
    )
    if ftype == "reference":
        if not fd.reference_to:
            raise ValueError(f"{where}: field {name}: reference without referenceTo")
        fd.relationship_name = spec.get("relationshipName") or _default_relationship_name(name)
    if ftype in ("double", "currency", "percent", "int") and not fd.precision:
        fd.precision, fd.scale = 18, (2 if ftype == "currency" else 0)
    if ftype in TEXT_TYPES and not fd.length:
        fd.length = 255
    if ftype == "string" and fd.formula is not None and not fd.length:
        fd.length = 1300
    if fd.calculated or fd.auto_number:
        fd.createable = fd.updateable = False
        fd.required = False
    return fd


def _system_fields(obj: SObjectType, owner: bool) -> list[FieldDef]:
    sys_fields = [
        FieldDef("Id", "id", label=f"{obj.label} ID", length=18, createable=False, updateable=False, id_lookup=True, system=True),
        FieldDef("IsDeleted", "boolean", label="Deleted", createable=False, updateable=False, system=True),
        FieldDef("CreatedDate", "datetime", label="Created Date", createable=False, updateable=False, system=True),
        FieldDef("CreatedById", "reference", label="Created By ID", createable=False, updateable=False, reference_to=["User"],
                 relationship_name="CreatedBy", system=True),
        FieldDef("LastModifiedDate", "datetime", label="Last Modified Date", createable=False, updateable=False, system=True),
        FieldDef("LastModifiedById", "reference", label="Last Modified By ID", createable=False, updateable=False,
                 reference_to=["User"], relationship_name="LastModifiedBy", system=True),
        FieldDef("SystemModstamp", "datetime", label="System Modstamp", createable=False, updateable=False, system=True),
    ]
    if owner:
        sys_fields.append(FieldDef("OwnerId", "reference", label="Owner ID", reference_to=["User"], relationship_name="Owner"))
    if obj.record_types:
        sys_fields.append(FieldDef("RecordTypeId", "reference", label="Record Type ID", reference_to=["RecordType"],
                                   relationship_name="RecordType"))
    return sys_fields


class Schema:
    """All object types of the org, with describe rendering (see :mod:`.describe`)."""

    def __init__(self) -> None:
        self.objects: dict[str, SObjectType] = {}
        self._ci: dict[str, SObjectType] = {}
        self._by_prefix: dict[str, SObjectType] = {}

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load_default(cls, overlay: Path | None = None) -> Schema:
        """Load the packaged schema, then apply ``overlay`` (a YAML file) when given."""
        schema = cls()
        text = resources.files("sfsync.emulator.schema").joinpath("objects.yaml").read_text(encoding="utf-8")
        schema.apply(yaml.safe_load(text), where="objects.yaml")
        if overlay is not None:
            schema.apply(yaml.safe_load(Path(overlay).read_text(encoding="utf-8")) or {}, where=str(overlay))
        return schema

    def apply(self, data: dict[str, Any], *, where: str) -> None:
        """Merge a schema document (the packaged data or an overlay) into this schema.

        Existing objects gain or replace fields; new objects are created (they need a
        ``keyPrefix``). Raises ValueError naming ``where`` on malformed input.
        """
        objects = data.get("objects")
        if not isinstance(objects, dict):
            raise ValueError(f"{where}: expected a mapping under 'objects'")
        for name, spec in objects.items():
            spec = spec or {}
            obj = self._ci.get(str(name).lower())
            if obj is None:
                prefix = spec.get("keyPrefix")
                if not prefix or len(str(prefix)) != 3:
                    raise ValueError(f"{where}: object {name}: a new object needs a 3-character keyPrefix")
                obj = SObjectType(
                    name=str(name),
                    label=str(spec.get("label") or name),
                    label_plural=str(spec.get("labelPlural") or spec.get("label") or name),
                    key_prefix=str(prefix),
                    custom=bool(spec.get("custom", str(name).endswith("__c"))),
                    custom_setting=bool(spec.get("customSetting", False)),
                    record_types=[(str(a), str(b)) for a, b in spec.get("recordTypes") or []],
                )
                for fd in _system_fields(obj, bool(spec.get("owner", False))):
                    obj.add_field(fd)
                self.objects[obj.name] = obj
                self._ci[obj.name.lower()] = obj
                self._by_prefix[obj.key_prefix] = obj
            else:
                for dev, label in spec.get("recordTypes") or []:
                    if all(dev != d for d, _ in obj.record_types):
                        obj.record_types.append((str(dev), str(label)))
                if obj.record_types and obj.field("RecordTypeId") is None:
                    obj.add_field(FieldDef("RecordTypeId", "reference", label="Record Type ID", reference_to=["RecordType"],
                                           relationship_name="RecordType"))
            for fname, fspec in (spec.get("fields") or {}).items():
                fd = _field_from_spec(str(fname), fspec or {}, f"{where}: {name}")
                if fname == "Name" or (fspec or {}).get("nameField"):
                    # The name field is what Salesforce shows and lets clients match on.
                    fd.name_field = True
                    fd.id_lookup = True
                obj.add_field(fd)
        self._check_references(where)

    def _check_references(self, where: str) -> None:
        for obj in self.objects.values():
            for fd in obj.fields.values():
                for target in fd.reference_to:
                    if target.lower() not in self._ci:
                        raise ValueError(f"{where}: {obj.name}.{fd.name} refers to unknown object {target}")

    # -- lookups ---------------------------------------------------------------------------
    def get(self, sobject: str) -> SObjectType:
        """The object type named ``sobject`` (case-insensitive); 404 NOT_FOUND if unknown."""
        obj = self._ci.get(sobject.lower())
        if obj is None:
            raise not_found()
        return obj

    def find(self, sobject: str) -> SObjectType | None:
        """Like :meth:`get` but returns None for unknown objects."""
        return self._ci.get(sobject.lower())

    def by_prefix(self, prefix: str) -> SObjectType | None:
        """The object type whose Ids start with ``prefix``."""
        return self._by_prefix.get(prefix)

    def key_prefix(self, sobject: str) -> str:
        """The 3-character key prefix of ``sobject``."""
        return self.get(sobject).key_prefix

    def field(self, sobject: str, name: str) -> FieldDef:
        """A field by object and field name; INVALID_FIELD (400) when the field is unknown."""
        obj = self.get(sobject)
        fd = obj.field(name)
        if fd is None:
            raise SfApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
        return fd

    def child_relationships(self, sobject: str) -> list[tuple[SObjectType, FieldDef]]:
        """(child object, reference field) pairs pointing at ``sobject``."""
        target = self.get(sobject).name
        out = []
        for obj in self.objects.values():
            for fd in obj.fields.values():
                if fd.type == "reference" and target in fd.reference_to:
                    out.append((obj, fd))
        return out

    # -- describe --------------------------------------------------------------------------
    def describe_global(self) -> dict[str, Any]:
        """The body of ``GET /services/data/vXX.X/sobjects/``."""
        from sfsync.emulator.schema.describe import describe_global

        return describe_global(self)

    def describe(self, sobject: str, record_type_ids: dict[str, str] | None = None) -> dict[str, Any]:
        """The body of ``GET sobjects/{sobject}/describe`` (404 NOT_FOUND when unknown)."""
        from sfsync.emulator.schema.describe import describe_sobject

        return describe_sobject(self, self.get(sobject), record_type_ids or {})
