"""The mapping format as typed models.

A mapping file is YAML; :mod:`sfsync.mappers.loader` reads it with line/column marks and
builds these models. Every model forbids unknown keys so that a typo (``formual:``) is a
validation error with its file position, never a silently ignored setting.

The same models describe both directions:

* ``direction: import`` — a biller's entity (CSV columns, parquet columns, TMF JSON) becomes
  records of one sObject;
* ``direction: export`` — the columns of a Salesforce query become a biller's records (a CSV
  row, or a JSON body such as TMF676 ``payment``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LookupSpec(_Model):
    """A reference that sfsync resolves itself (SOQL + cache), e.g. Account by AccountNumber."""

    sobject: str = Field(description="sObject to search, e.g. Account.")
    field: str = Field(description="Field of that sObject matched against the value, e.g. AccountNumber.")
    deferred: bool | None = Field(
        default=None,
        description=(
            "Resolve after the main load (an 'after' update), for references into the same "
            "object such as Account.ParentId. Defaults to true when sobject is the target."
        ),
    )


class FieldSpec(_Model):
    """How one target field gets its value. Exactly one of source/template/formula/constant."""

    source: str | None = Field(
        default=None,
        description="Source column or nested path: amount, billingAccount.id, appliedTax[0].taxRate, appliedTax[].taxAmount.value.",
    )
    template: str | None = Field(default=None, description='String template, e.g. "{biller}:{statement_id}".')
    formula: str | None = Field(default=None, description="Expression, e.g. IF(amount < 0, 'Credit', 'Charge').")
    constant: Scalar | None = Field(default=None, description="A fixed value for every row.")
    aggregate: Literal["sum", "first", "count", "join", "min", "max"] | None = Field(
        default=None, description="Reduces a list path (with []) to one value per row."
    )
    separator: str = Field(default=";", description="Separator for aggregate: join.")
    value_map: dict[str, Scalar | None] | None = Field(
        default=None, description="Biller code → target value (e.g. a picklist value)."
    )
    unmapped: Literal["reject", "default", "keep", "null"] = Field(
        default="reject", description="What a value missing from value_map does: reject the row, use unmapped_default, keep it, or null."
    )
    unmapped_default: Scalar | None = Field(default=None, description="Value for unmapped codes when unmapped: default.")
    default: Scalar | None = Field(default=None, description="Value used when the result is null or blank.")
    required: bool = Field(default=False, description="Reject the row (REQUIRED_MISSING) when the value is null.")
    date_format: str | list[str] | None = Field(
        default=None, description="strptime format(s) tried in order; 'iso' accepts ISO 8601."
    )
    timezone: str | None = Field(default=None, description="Zone of datetimes written without an offset.")
    length: Literal["reject", "truncate"] | None = Field(default=None, description="Too-long strings: reject or truncate.")
    lookup: LookupSpec | None = Field(default=None, description="Resolve the value to a record id by SOQL.")
    type: Literal["string", "number", "integer", "date", "datetime", "boolean"] | None = Field(
        default=None, description="Export mappings: the biller field's type."
    )
    scale: int | None = Field(default=None, ge=0, le=18, description="Export mappings: decimals of a number.")
    max_length: int | None = Field(default=None, ge=1, description="Export mappings: maximum string length.")
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `Field__c: amount` is the everyday case: a plain string names the source column.
        if isinstance(data, str):
            return {"source": data}
        # `unmapped: null` reads naturally in YAML but parses as None; it means "null".
        if isinstance(data, dict) and "unmapped" in data and data["unmapped"] is None:
            return {**data, "unmapped": "null"}
        return data

    def kinds(self) -> list[str]:
        """Names of the value producers set on this spec (should be exactly one)."""
        return [k for k in ("source", "template", "formula", "constant") if getattr(self, k) is not None]


class SourceSpec(_Model):
    """Where records come from: a biller entity (import) or a Salesforce query (export)."""

    entity: str | None = Field(default=None, description="Import: the biller entity, e.g. line_items, customerBill.")
    columns: dict[str, str] | None = Field(
        default=None, description="Import: the biller's declared columns (name → type) to check references statically."
    )
    sobject: str | None = Field(default=None, description="Export: the sObject queried.")
    fields: list[str] | None = Field(default=None, description="Export: the fields selected (relationship paths allowed).")
    where: str | None = Field(default=None, description="Export: SOQL condition selecting the records.")


class TargetSpec(_Model):
    """Where records go: an sObject (import) or a biller entity (export)."""

    sobject: str | None = Field(default=None, description="Import: the sObject loaded.")
    entity: str | None = Field(default=None, description="Export: the biller entity written, e.g. payments.")
    format: Literal["csv", "json"] | None = Field(default=None, description="Export: flat CSV row or nested JSON body.")


class KeySpec(_Model):
    """The match key: an external-ID field, or a composite of mapped fields sfsync matches itself."""

    external_id: str | None = Field(default=None, description="An External ID field of the target (import).")
    fields: list[str] | None = Field(
        default=None, description="Composite key: mapped target fields (import) or source columns (export)."
    )
    allow_unprefixed: bool = Field(
        default=False, description="Accept an external-ID value without {biller}: only for globally unique ids."
    )


class LoadOptions(_Model):
    """How the load job sends this mapping's rows."""

    api: Literal["auto", "bulk2", "bulk1", "rest"] = "auto"
    serial: bool = Field(default=False, description="Bulk 1.0 serial mode (avoids parent lock contention).")
    batch_size: int | None = Field(default=None, ge=1, description="Records per batch/request.")


class Condition(_Model):
    """A row rule: when the formula is true, skip the row or reject it with a reason."""

    when: str = Field(description="Formula; null counts as false.")
    action: Literal["skip", "reject"] = "skip"
    code: str = Field(default="CONDITION", description="Reject code.")
    message: str | None = Field(default=None, description="Reject message; {column} placeholders allowed.")


class Defaults(_Model):
    """Defaults applied to every field unless the field says otherwise."""

    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d", "iso"])
    datetime_formats: list[str] = Field(default_factory=lambda: ["iso"])
    timezone: str = "UTC"
    string_length: Literal["reject", "truncate"] = "reject"
    blank_is_null: bool = Field(default=True, description="Empty or whitespace-only strings count as null.")


class Mapping(_Model):
    """One mapping: one source entity ↔ one sObject, in one direction."""

    version: Literal[1] = 1
    name: str = Field(description="Unique name, e.g. files.statements.")
    description: str | None = None
    direction: Literal["import", "export"] = "import"
    source: SourceSpec
    target: TargetSpec
    operation: Literal["insert", "upsert", "update", "delete"] = "upsert"
    key: KeySpec
    load: LoadOptions = Field(default_factory=LoadOptions)
    record_type: FieldSpec | None = Field(
        default=None, description="Record type by DeveloperName: a constant name, or a source with a value_map."
    )
    record_date: str | None = Field(
        default=None, description="Target field holding the record's date; rows before the trim date are skipped."
    )
    defaults: Defaults = Field(default_factory=Defaults)
    conditions: list[Condition] = Field(default_factory=list)
    fields: dict[str, FieldSpec]

    # Set by the loader, not by the file: where the mapping came from and where each key sits,
    # so that checks made long after loading (against describe) still point at file:line:col.
    _path: str | None = PrivateAttr(default=None)
    _marks: dict[tuple[str, ...], tuple[int, int]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _record_type_shorthand(cls, data: Any) -> Any:
        # `record_type: vlocity_cmt__Billing` names one DeveloperName for every row.
        if isinstance(data, dict) and isinstance(data.get("record_type"), str):
            data = {**data, "record_type": {"constant": data["record_type"]}}
        return data

    @property
    def path(self) -> str:
        """The file this mapping was loaded from ("<mapping>" when built in code)."""
        return self._path or "<mapping>"

    def where(self, *keys: str) -> str:
        """``file:line:col`` of the deepest known key along ``keys`` (1-based line and column)."""
        for n in range(len(keys), -1, -1):
            mark = self._marks.get(tuple(keys[:n]))
            if mark:
                return f"{self.path}:{mark[0]}:{mark[1]}"
        return f"{self.path}:1:1"

    def problem(self, keys: tuple[str, ...] | list[str], message: str) -> str:
        """One problem line: ``file:line:col: key.path: message``."""
        keys = tuple(str(k) for k in keys)
        return f"{self.where(*keys)}: {'.'.join(keys) or '(root)'}: {message}"

    @property
    def sobject(self) -> str:
        """The Salesforce object this mapping writes (import) or reads (export)."""
        return (self.target.sobject if self.direction == "import" else self.source.sobject) or ""
