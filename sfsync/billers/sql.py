"""The *sql* biller: the biller's own database through a SQLAlchemy URL.

Each entity is a table or a query. Reads stream server-side (``stream_results`` +
``yield_per``: never the whole result in memory), ordered by the entity's
``incremental_column`` and key. The cursor is the last incremental value plus the keys
already seen *at* that value: the next read asks ``>= value`` and drops those keys, so rows
sharing a timestamp with the last batch are neither lost nor read twice (``> value`` alone
would lose late rows with the same timestamp; ``>=`` alone would repeat them).

As an export sink it inserts into configured tables, one transaction per call, idempotently:
the table has a unique key on the Salesforce Id and inserts use ``ON CONFLICT DO NOTHING``
(PostgreSQL) / ``INSERT OR IGNORE`` (SQLite).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator
from sqlalchemy import MetaData, Table, create_engine, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, NoSuchTableError, OperationalError, SQLAlchemyError

from sfsync.billers.base import SOURCE, Batch, Biller, EntitySpec, ExportResult, KindSettings
from sfsync.billers.layout import ACCOUNT_ENTITIES, FILES_ENTITIES
from sfsync.errors import ConfigError, TransientError, UserError


class SqlEntity(KindSettings):
    """One entity: a table or a query (its columns are what the query returns)."""

    table: str | None = None
    query: str | None = None
    incremental_column: str | None = None
    key: list[str] | None = None
    account_column: str = "account_number"
    columns: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SqlEntity:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class SqlExportTarget(KindSettings):
    """Where one export stream goes: a table with a unique key on ``key_column``."""

    table: str
    key_column: str = "sf_id"
    reference_column: str | None = None


def _default_entities() -> dict[str, SqlEntity]:
    return {name: SqlEntity(table=name) for name in FILES_ENTITIES}


class SqlBillerSettings(KindSettings):
    """Settings of a ``kind: sql`` biller."""

    url: str
    db_schema: str | None = Field(None, alias="schema")
    entities: dict[str, SqlEntity] = Field(default_factory=_default_entities)
    exports: dict[str, SqlExportTarget] = Field(default_factory=dict)
    batch_size: int = Field(50_000, ge=1)
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class SqlCheckpoint:
    """The cursor after a batch: last incremental value and the keys already read at it."""

    entity: str
    value: Any
    keys_at_value: list[str] = field(default_factory=list)


_DOWN_WORDS = ("could not connect", "connection refused", "server closed", "timeout", "timed out",
               "database is locked", "terminating connection", "connection reset")


def _unavailable(exc: DBAPIError) -> bool:
    """True when the database is down or busy (retry later), not when it refused the statement."""
    if exc.connection_invalidated:
        return True
    msg = str(exc.orig or exc).lower()
    return isinstance(exc, OperationalError) and any(w in msg for w in _DOWN_WORDS)


def _encode(v: Any) -> dict[str, Any]:
    """A cursor value as JSON (type-tagged so it binds back as the same type)."""
    if isinstance(v, dt.datetime):
        return {"type": "datetime", "v": v.isoformat()}
    if isinstance(v, dt.date):
        return {"type": "date", "v": v.isoformat()}
    if isinstance(v, Decimal):
        return {"type": "decimal", "v": str(v)}
    return {"type": type(v).__name__, "v": v}


def _decode(d: dict[str, Any]) -> Any:
    t, v = d.get("type"), d.get("v")
    if t == "datetime":
        return dt.datetime.fromisoformat(v)  # type: ignore[arg-type]
    if t == "date":
        return dt.date.fromisoformat(v)  # type: ignore[arg-type]
    if t == "decimal":
        return Decimal(v)  # type: ignore[arg-type]
    return v


class SqlBiller(Biller):
    """Reads entities from a database; receives exports into tables."""

    kind = "sql"
    settings = SqlBillerSettings
    config: SqlBillerSettings

    def __init__(self, name: str, settings: SqlBillerSettings, store: Any = None) -> None:
        super().__init__(name, settings, store)
        args: dict[str, Any] = {}
        if settings.url.startswith("postgresql"):
            args["connect_args"] = {"connect_timeout": int(settings.connect_timeout)}
        try:
            self.engine: Engine = create_engine(settings.url, pool_pre_ping=True, **args)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"biller {name!r}: bad database url: {exc}", key="url") from exc
        self._tables: dict[str, Table] = {}

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- helpers ----------------------------------------------------------------------------
    def _q(self, ident: str) -> str:
        """A quoted identifier, schema-qualified for tables."""
        return self.engine.dialect.identifier_preparer.quote(ident)

    def _from(self, e: SqlEntity) -> str:
        if e.query is not None:
            return f"({e.query}) AS sfsync_q"
        assert e.table is not None
        schema = f"{self._q(self.config.db_schema)}." if self.config.db_schema else ""
        return schema + ".".join(self._q(p) for p in e.table.split("."))

    def _entity(self, entity: str) -> tuple[SqlEntity, EntitySpec]:
        spec = self._spec(entity)
        return self.config.entities[entity], spec

    def entities(self) -> dict[str, EntitySpec]:
        """Configured entities; the files layout's columns and keys for the standard names."""
        out = {}
        for name, e in self.config.entities.items():
            base = FILES_ENTITIES.get(name, EntitySpec(name))
            out[name] = EntitySpec(name, e.columns if e.columns is not None else base.columns,
                                   tuple(e.key) if e.key is not None else base.key, base.required)
        return out

    def _to_table(self, names: list[str], rows: Any, entity: str, key: tuple[str, ...]) -> pa.Table:
        cols: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
        arrays = []
        for vals in cols:
            try:
                arrays.append(pa.array(vals))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                arrays.append(pa.array([None if v is None else str(v) for v in vals], pa.string()))
        t = pa.table(arrays, names=names) if names else pa.table({})
        if key and all(k in names for k in key):
            ks = [pc.cast(t[k], pa.string()) for k in key]
            ident = ks[0] if len(ks) == 1 else pc.binary_join_element_wise(*ks, "|")
            src = pc.binary_replace_slice(pc.fill_null(ident, ""), 0, 0, f"{entity}:")
        else:
            src = pa.array([f"{entity}:row {i + 1}" for i in range(t.num_rows)], pa.string())
        return t.append_column(SOURCE, src)

    # -- reading ----------------------------------------------------------------------------
    def read(self, entity: str, *, full: bool = False) -> Iterator[Batch]:
        """Stream the entity's rows after the stored cursor (all rows with ``full``)."""
        e, spec = self._entity(entity)
        inc = e.incremental_column
        key = spec.key
        cursor = None if (full or self.store is None or inc is None) else self.store.get_cursor(self.name, entity)
        where, params = "", {}
        skip: set[str] = set()
        if cursor is not None:
            where = f" WHERE {self._q(inc)} >= :cursor"  # type: ignore[arg-type]
            params["cursor"] = _decode(cursor["value"])
            skip = set(cursor.get("keys_at_value", []))
        order = [c for c in ([inc] if inc else []) + list(key)]
        order_sql = f" ORDER BY {', '.join(self._q(c) for c in order)}" if order else ""
        sql = f"SELECT * FROM {self._from(e)}{where}{order_sql}"
        last_value = _decode(cursor["value"]) if cursor else None
        at_value: list[str] = list(skip)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.config.batch_size).execute(
                    text(sql), params)
                names = list(result.keys())
                for part in result.partitions(self.config.batch_size):
                    t = self._to_table(names, part, entity, key)
                    if skip and inc:
                        keep = pc.invert(pc.and_(pc.equal(t[inc], pa.scalar(params["cursor"])),
                                                 pc.is_in(pc.replace_substring(t[SOURCE], f"{entity}:", ""),
                                                          pa.array(list(skip), pa.string()))))
                        t = t.filter(pc.fill_null(keep, True))
                    cp = None
                    if inc and t.num_rows:
                        v = t[inc][-1].as_py()
                        ids = [s.removeprefix(f"{entity}:") for s in
                               t.filter(pc.equal(t[inc], pa.scalar(v)))[SOURCE].to_pylist()]
                        at_value = (at_value + ids) if v == last_value else ids
                        last_value = v
                        cp = SqlCheckpoint(entity, v, list(at_value))
                    if cp is None and t.num_rows == 0:
                        continue
                    yield Batch(entity, t, cp, source=entity)
        except DBAPIError as exc:
            if _unavailable(exc):
                raise TransientError(f"biller {self.name!r}: database unavailable: {exc.orig or exc}") from exc
            raise UserError(f"biller {self.name!r}: entity {entity!r}: the database refused the query: "
                            f"{exc.orig or exc}") from exc

    def commit(self, checkpoint: object) -> None:
        """Store the cursor of ``checkpoint``."""
        if not isinstance(checkpoint, SqlCheckpoint):
            raise TypeError(f"not a sql checkpoint: {checkpoint!r}")
        if self.store is not None:
            self.store.set_cursor(self.name, checkpoint.entity,
                                  {"value": _encode(checkpoint.value), "keys_at_value": checkpoint.keys_at_value})

    # -- one account --------------------------------------------------------------------------
    def fetch_account(self, account_number: str) -> dict[str, pa.Table]:
        """Statements, line items, balances and disputes of one account (indexed lookups)."""
        out: dict[str, pa.Table] = {}
        specs = self.entities()
        try:
            with self.engine.connect() as conn:
                for entity in ACCOUNT_ENTITIES:
                    e = self.config.entities.get(entity)
                    if e is None:
                        continue
                    result = conn.execute(text(f"SELECT * FROM {self._from(e)} WHERE {self._q(e.account_column)} = :a"),
                                          {"a": account_number})
                    out[entity] = self._to_table(list(result.keys()), result.fetchall(), entity, specs[entity].key)
        except DBAPIError as exc:
            if _unavailable(exc):
                raise TransientError(f"biller {self.name!r}: database unavailable: {exc.orig or exc}") from exc
            raise UserError(f"biller {self.name!r}: the database refused the account query: {exc.orig or exc}") from exc
        return out

    # -- export sink ------------------------------------------------------------------------
    def _target(self, stream: str) -> tuple[SqlExportTarget, Table]:
        target = self.config.exports.get(stream)
        if target is None:
            raise UserError(f"biller {self.name!r} has no export table for {stream!r}: set billers[].exports.{stream}")
        if stream not in self._tables:
            try:
                self._tables[stream] = Table(target.table, MetaData(), schema=self.config.db_schema,
                                             autoload_with=self.engine)
            except NoSuchTableError:
                raise UserError(f"biller {self.name!r}: export table {target.table!r} does not exist") from None
        return target, self._tables[stream]

    def export(self, stream: str, records: list[dict[str, Any]]) -> list[ExportResult]:
        """Insert the records in one transaction; an already-present Salesforce Id is a success."""
        target, table = self._target(stream)
        unknown = sorted({k for r in records for k in r if k != "sf_id"} - set(table.c.keys()))
        if unknown:
            raise UserError(f"biller {self.name!r}: export table {target.table!r} has no column(s) {', '.join(unknown)}")
        rows = []
        for r in records:
            row = {k: v for k, v in r.items() if k != "sf_id"}
            row[target.key_column] = r["sf_id"]
            rows.append(row)
        try:
            with self.engine.begin() as conn:
                self._insert(conn, table, target, rows)
            return self._results(target, table, records)
        except DBAPIError as exc:
            if _unavailable(exc):
                return [ExportResult(r["sf_id"], False, None, f"database unavailable: {exc.orig or exc}",
                                     transient=True) for r in records]
            # One bad row must not sink the others: retry one by one for per-record reasons.
            out = []
            for r, row in zip(records, rows, strict=True):
                try:
                    with self.engine.begin() as conn:
                        self._insert(conn, table, target, [row])
                    out.extend(self._results(target, table, [r]))
                except DBAPIError as row_exc:
                    reason = str(row_exc.orig or row_exc).strip().splitlines()[0]
                    out.append(ExportResult(r["sf_id"], False, None, reason, transient=_unavailable(row_exc)))
            return out

    def _insert(self, conn: Any, table: Table, target: SqlExportTarget, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect = self.engine.dialect.name
        stmt: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table).on_conflict_do_nothing(index_elements=[target.key_column])
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=[target.key_column])
        else:
            stmt = table.insert().prefix_with("IGNORE")  # MySQL family
        conn.execute(stmt, rows)

    def _results(self, target: SqlExportTarget, table: Table, records: list[dict[str, Any]]) -> list[ExportResult]:
        ref_col = table.c[target.reference_column or target.key_column]
        key_col = table.c[target.key_column]
        ids = [r["sf_id"] for r in records]
        with self.engine.connect() as conn:
            found = dict(conn.execute(select(key_col, ref_col).where(key_col.in_(ids))).all())
        return [ExportResult(i, True, str(found[i])) if i in found
                else ExportResult(i, False, None, "row not found after insert") for i in ids]
