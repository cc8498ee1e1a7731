"""What a biller is: the protocol every biller kind implements.

A *biller* is a named source of billing data (a directory of files, a database, a TM Forum
REST API). The load job asks it for the rows of one *entity* at a time and gets
:class:`Batch` objects back::

    for batch in biller.read("line_items"):
        job.record(batch.table)            # map + send + record state
        job.record_rejects(batch.rejects)  # row-level rejects (may be None)
        if batch.checkpoint is not None:
            biller.commit(batch.checkpoint)  # only now does the biller move on

Contract of :meth:`Biller.read`:

* ``batch.table`` holds the biller's **raw** columns (CSV: every column a string; Parquet,
  SQL, JSON: native types; TMF678: nested struct/list columns) plus ``_source``: a string
  naming where the row came from, ``"statements_202611.csv:17"`` (physical line, header = 1)
  or the biller's record id. Every row is traceable to its source.
* ``batch.rejects`` (schema :data:`REJECT_SCHEMA`: ``_source``, ``code``, ``message``) lists
  rows found bad *while reading* (ragged CSV row, non-numeric value in a declared numeric
  column, duplicate key inside one file, unparseable JSON line). Those rows are not in
  ``table``. The load job writes them to the rejects table.
* A **file-level** problem (unreadable, wrong encoding, truncated Parquet, missing required
  column, a REST endpoint answering HTML) never stops the other files: the biller yields one
  batch with an empty ``table``, ``file_error`` set to a one-line message, and the same
  message as a one-row ``rejects`` table whose ``_source`` is the file name (or URL). Such a
  batch has no checkpoint: the file stays unprocessed and is retried next run.
* ``checkpoint`` is opaque. Pass it to :meth:`Biller.commit` once the rows of that batch and
  of every batch before it are recorded. Billers attach it where it is safe to resume from:
  the last batch of a file (files), every batch (sql, tmf678 cursors).
* ``full=True`` rereads everything, ignoring manifest and cursors (the commit still records).

Optional abilities are separate protocols: :class:`SupportsAccountFetch` (everything for one
billing account, for the on-call refresh) and :class:`SupportsExport` (payments, adjustments,
payment methods and disputes flowing back to the biller). Jobs check the ability with
``isinstance(biller, SupportsExport)``, never the kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from sfsync.state import StateStore

SOURCE = "_source"
REJECT_SCHEMA = pa.schema([("_source", pa.string()), ("code", pa.string()), ("message", pa.string())])

# Reject codes a biller may produce while reading (the mapper and Salesforce add their own).
FILE_UNREADABLE = "FILE_UNREADABLE"
FILE_ENCODING = "FILE_ENCODING"
FILE_TRUNCATED = "FILE_TRUNCATED"
MISSING_COLUMNS = "MISSING_COLUMNS"
RAGGED_ROW = "RAGGED_ROW"
BAD_RECORD = "BAD_RECORD"
NOT_NUMERIC = "NOT_NUMERIC"
DUPLICATE_KEY = "DUPLICATE_KEY"
BAD_RESPONSE = "BAD_RESPONSE"

EXPORT_STREAMS = ("payments", "adjustments", "payment_methods", "disputes")

# Type names used in EntitySpec.columns; mappings are validated against them.
NUMERIC_TYPES = frozenset({"decimal", "integer"})


class KindSettings(BaseModel):
    """Base of every biller kind's settings: unknown keys are a config error."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class EntitySpec:
    """What one entity of a biller looks like.

    Attributes:
        name: entity name (``statements``, ``line_items``, ``customerBill``...).
        columns: declared columns → type name (``string``, ``decimal``, ``integer``, ``date``,
            ``datetime``, ``boolean``, ``struct``, ``list``), or None when only known at read time
            (an arbitrary SQL query). Mappings are validated against these names.
        key: the column(s) identifying a row; duplicate keys inside one file are rejected.
        required: columns a file must have, else the whole file is rejected.
    """

    name: str
    columns: dict[str, str] | None = None
    key: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


@dataclass
class Batch:
    """Rows of one entity read from a biller (see the module docstring for the contract)."""

    entity: str
    table: pa.Table
    checkpoint: object | None = None
    rejects: pa.Table | None = None
    file_error: str | None = None
    source: str | None = None

    @property
    def num_rows(self) -> int:
        """Rows in ``table`` (rejects not counted)."""
        return int(self.table.num_rows)


@dataclass
class ExportResult:
    """What the biller said about one exported record.

    Attributes:
        sf_id: the Salesforce Id of the record (the idempotency key).
        ok: accepted (also when it had been accepted before: a retry is not an error).
        reference: the biller's own id for it (payment reference, row key, file name).
        error: the biller's reason when not ok.
        transient: the biller was unreachable or failed (5xx): leave the record pending.
    """

    sf_id: str
    ok: bool
    reference: str | None = None
    error: str | None = None
    transient: bool = False


def rejects_table(sources: list[str], code: str | list[str], messages: list[str]) -> pa.Table:
    """Build a rejects table; ``code`` may be one code for all rows."""
    codes = [code] * len(sources) if isinstance(code, str) else code
    return pa.table([pa.array(sources, pa.string()), pa.array(codes, pa.string()),
                     pa.array(messages, pa.string())], schema=REJECT_SCHEMA)


def concat_rejects(parts: list[pa.Table | None]) -> pa.Table | None:
    """Concatenate reject tables, or None when there are none."""
    real = [p for p in parts if p is not None and p.num_rows]
    if not real:
        return None
    return pa.concat_tables(real) if len(real) > 1 else real[0]


def error_batch(entity: str, source: str, code: str, message: str,
                schema: pa.Schema | None = None) -> Batch:
    """A batch standing for a whole file (or endpoint) that could not be read."""
    table = (schema or pa.schema([(SOURCE, pa.string())])).empty_table()
    return Batch(entity, table, None, rejects_table([source], code, [message]), file_error=message,
                 source=source)


class Biller(ABC):
    """A source of billing data. Subclasses set ``kind`` and ``settings`` and register in
    :data:`sfsync.billers.BILLER_KINDS`.

    Args:
        name: the biller's name in the config (keys cursors and manifests in the store).
        settings: an instance of the kind's ``settings`` model.
        store: the state store; None reads everything and commits nothing (previews, tests).
    """

    kind: ClassVar[str]
    settings: ClassVar[type[KindSettings]]

    def __init__(self, name: str, settings: BaseModel, store: StateStore | None = None) -> None:
        if not isinstance(settings, self.settings):
            raise TypeError(f"{type(self).__name__} needs {self.settings.__name__}, got {type(settings).__name__}")
        self.name = name
        self.config = settings
        self.store = store

    @classmethod
    def from_config(cls, name: str, values: dict[str, Any], store: StateStore | None = None) -> Biller:
        """Build the biller from its raw config keys (validated by the kind's model)."""
        return cls(name, cls.settings.model_validate(values), store)

    @abstractmethod
    def entities(self) -> dict[str, EntitySpec]:
        """The entities this biller can read, with their declared columns."""

    @abstractmethod
    def read(self, entity: str, *, full: bool = False) -> Iterator[Batch]:
        """Yield the entity's rows not yet loaded (all of them with ``full=True``)."""

    @abstractmethod
    def commit(self, checkpoint: object) -> None:
        """Record that everything up to ``checkpoint`` is loaded (cursor / file manifest)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most billers hold nothing
        """Release connections and files."""

    def __enter__(self) -> Biller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spec(self, entity: str) -> EntitySpec:
        specs = self.entities()
        if entity not in specs:
            from sfsync.errors import UserError

            raise UserError(f"biller {self.name!r} ({self.kind}) has no entity {entity!r}; "
                            f"it has {', '.join(sorted(specs))}")
        return specs[entity]


@runtime_checkable
class SupportsAccountFetch(Protocol):
    """A biller that can return everything for one billing account, fast (on-call refresh)."""

    def fetch_account(self, account_number: str) -> dict[str, pa.Table]:
        """Entity → rows for that one billing account (statements, line_items, balances, disputes)."""
        ...


@runtime_checkable
class SupportsExport(Protocol):
    """A biller that receives records from Salesforce (payments, adjustments...)."""

    def export(self, stream: str, records: list[dict[str, Any]]) -> list[ExportResult]:
        """Send records of one stream; one result per record, in order.

        Each record carries ``sf_id`` (the Salesforce Id, the idempotency key) and its mapped
        fields. Sending the same ``sf_id`` twice never creates two records at the biller.
        """
        ...
