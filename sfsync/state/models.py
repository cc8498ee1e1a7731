"""The state store's tables (SQLAlchemy Core). Alembic migrations create them; see migrations/."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(32), nullable=False),
    Column("billers", String(400), nullable=False, default=""),
    Column("trigger", String(16), nullable=False),  # cli, cron, webhook, api
    Column("status", String(16), nullable=False),  # running, succeeded, rejected, failed, stopped
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("counts", JSON, nullable=False, default=dict),  # {sobject: {read, sent, created, ...}}
    Column("api_calls", JSON, nullable=False, default=dict),  # {rest: n, bulk2: n, ...}
    Column("options", JSON, nullable=False, default=dict),
    Column("error", Text),
    Column("host", String(255)),
    Column("pid", Integer),
)
Index("ix_runs_job_started", runs.c.job, runs.c.started_at)

# What sfsync last sent, per (biller, sObject): segments of states, each an Arrow IPC blob
# sorted by key hash (see sfsync/state/segments.py). Ids only grow: a state's version is the id
# of the segment it was first written in.
state_segments = Table(
    "state_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller", String(40), nullable=False),
    Column("sobject", String(80), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("merged", Boolean, nullable=False, default=False),  # carries its own per-state versions
    Column("run_id", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("hashes", LargeBinary, nullable=False),  # key hash, payload hash[, version]: Arrow IPC
    Column("data", LargeBinary, nullable=False),  # key, Salesforce Id: Arrow IPC, LZ4
    sqlite_autoincrement=True,  # never reuse an id: ids are versions
)
Index("ix_state_segments_scope", state_segments.c.biller, state_segments.c.sobject, state_segments.c.id)

cursors = Table(
    "cursors",
    metadata,
    Column("biller", String(40), primary_key=True),
    Column("stream", String(80), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("run_id", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("biller", String(40), primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_id", Integer),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

export_ledger = Table(
    "export_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biller", String(40), nullable=False),
    Column("sobject", String(80), nullable=False),
    Column("sf_id", String(18), nullable=False),
    # pending -> sending -> accepted | rejected; conflict when edited after acceptance
    Column("status", String(16), nullable=False),
    Column("payload_hash", BigInteger),
    Column("biller_ref", String(255)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("written_back", Boolean, nullable=False, default=False),
    Column("sf_modstamp", String(40)),
    Column("run_id", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("biller", "sobject", "sf_id"),
)
Index("ix_export_ledger_status", export_ledger.c.status)

rejects = Table(
    "rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("biller", String(40), nullable=False, default=""),
    Column("sobject", String(80), nullable=False),
    Column("key", String(255)),
    Column("source", String(500)),  # file:line or the biller's record id
    Column("stage", String(16), nullable=False),  # read, map, salesforce, biller, writeback
    Column("code", String(80), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", JSON),
    Column("retried_by", Integer),
)
Index("ix_rejects_run", rejects.c.run_id)

inbound_events = Table(
    "inbound_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("source", String(40), nullable=False),  # webhook, outbound_message, api
    Column("account", String(255)),
    Column("run_id", Integer),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

run_locks = Table(
    "run_locks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(255), nullable=False),  # host:pid
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("run_id", Integer),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

insert_fences = Table(  # sfsync/state/fence.py
    "insert_fences",
    metadata,
    Column("name", String(200), primary_key=True),  # the sObject
    Column("generation", BigInteger, nullable=False),  # bumped by each fenced write that inserted
)
