"""Pulling export candidates from Salesforce: the SystemModstamp cursor, the query, the frames.

SystemModstamp is indexed but not unique, and a record can commit with a stamp earlier than
records already read. So the pull asks for ``SystemModstamp >= cursor - overlap`` ordered by
``(SystemModstamp, Id)``, and the ledger (not the cursor) decides what was already exported:
records read twice cost a row in memory, never a second export. The cursor is the
``(timestamp, Id)`` of the last record whose outcome is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from sfsync.salesforce import SalesforceClient

MODSTAMP = "SystemModstamp"
#: Fields that move when anything (our own write-back included) touches a record: never part
#: of what "the record changed after export" means.
VOLATILE_FIELDS = frozenset({"systemmodstamp", "lastmodifieddate", "lastmodifiedbyid", "lastvieweddate",
                             "lastreferenceddate"})
#: Ids per ``Id IN (...)`` re-query: ~21 characters each keeps the SOQL far below its length limit.
IDS_PER_QUERY = 500


@dataclass(frozen=True)
class Cursor:
    """Where the last export of an object got to: ``(SystemModstamp, Id)``."""

    ts: datetime | None = None
    id: str | None = None

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> Cursor:
        """Read a cursor stored by :meth:`to_dict` (None: from the beginning)."""
        if not value or not value.get("ts"):
            return cls()
        return cls(parse_modstamp(str(value["ts"])), value.get("id"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON the state store keeps."""
        return {"ts": self.ts.isoformat() if self.ts else None, "id": self.id}

    def after(self, other: Cursor) -> bool:
        """True when this cursor is further than ``other``."""
        if other.ts is None:
            return self.ts is not None
        if self.ts is None:
            return False
        return (self.ts, self.id or "") > (other.ts, other.id or "")


def parse_modstamp(text: str) -> datetime:
    """Parse Salesforce datetimes: REST ``...T11:57:34.793+0000``, Bulk ``...T11:57:34.000Z``, ISO."""
    t = text.strip().replace("Z", "+00:00")
    if len(t) > 5 and t[-5] in "+-" and t[-3] != ":":
        t = t[:-2] + ":" + t[-2:]
    dt = datetime.fromisoformat(t)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def soql_datetime(dt: datetime) -> str:
    """A SOQL datetime literal, floored to the second (a ``>=`` on it never misses a record)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def oldest(cursors: Iterable[Cursor]) -> Cursor:
    """The cursor furthest behind (an unset one means "from the beginning")."""
    found: Cursor | None = None
    for c in cursors:
        if c.ts is None:
            return Cursor()
        if found is None or not c.after(found):
            found = c
    return found or Cursor()


def build_query(sobject: str, fields: list[str], conditions: list[str], since: datetime | None = None,
                ids: list[str] | None = None) -> str:
    """``SELECT fields FROM sobject WHERE (c1) AND (c2) ... [AND SystemModstamp >= since] ORDER BY ...``."""
    conds = [f"({c})" for c in conditions if c]
    if since is not None:
        conds.append(f"{MODSTAMP} >= {soql_datetime(since)}")
    if ids is not None:
        conds.append("Id IN (" + ", ".join("'" + i.replace("'", "") + "'" for i in ids) + ")")
    text = f"SELECT {', '.join(fields)} FROM {sobject}"
    if conds:
        text += " WHERE " + " AND ".join(conds)
    return text + f" ORDER BY {MODSTAMP}, Id"


def _normalise(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Every selected field present (a relationship null on a whole page is absent), blanks as None."""
    if frame.empty and not len(frame.columns):
        frame = pd.DataFrame(columns=fields)
    lower = {c.lower(): c for c in frame.columns}
    for f in fields:
        if f not in frame.columns:
            frame[f] = frame[lower[f.lower()]] if f.lower() in lower else None
    out = frame[fields].astype(object)
    return out.where(out.notna() & (out != ""), None).reset_index(drop=True)


def pull_frames(client: SalesforceClient, soql: str, fields: list[str], *, api: str = "auto",
                page_rows: int = 2000) -> Iterator[pd.DataFrame]:
    """Run the query through REST or Bulk 2.0; frames of string values (``fields`` as columns).

    Args:
        client: the Salesforce client.
        soql: the query.
        fields: the selected fields (the frames' columns, in this order).
        api: ``auto`` (the client's choice by size), ``rest`` or ``bulk2``.
        page_rows: REST page size.
    """
    from sfsync.salesforce import records_frame

    if api == "bulk2":
        frames: Iterable[pd.DataFrame] = client.query_bulk(soql)
    elif api == "rest":
        frames = _rest_pages(client, soql, page_rows, records_frame)
    else:
        frames = client.query_frames(soql)
    for frame in frames:
        if len(frame):
            yield _normalise(frame, fields)


def _rest_pages(client: SalesforceClient, soql: str, page_rows: int, to_frame: Any) -> Iterator[pd.DataFrame]:
    page: list[dict[str, Any]] = []
    for record in client.query(soql, batch_size=page_rows):
        page.append(record)
        if len(page) >= page_rows:
            yield to_frame(page)
            page = []
    if page:
        yield to_frame(page)


def rechunk(frames: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Regroup frames into chunks of ``rows`` (the last one smaller), keeping order."""
    buf: list[pd.DataFrame] = []
    held = 0
    for frame in frames:
        start = 0
        while start < len(frame):
            take = min(rows - held, len(frame) - start)
            buf.append(frame.iloc[start:start + take])
            held += take
            start += take
            if held >= rows:
                yield pd.concat(buf, ignore_index=True)
                buf, held = [], 0
    if buf:
        yield pd.concat(buf, ignore_index=True)


def chunk_cursor(frame: pd.DataFrame) -> Cursor:
    """The ``(SystemModstamp, Id)`` of the furthest record of a chunk."""
    best = Cursor()
    for ts, rid in zip(frame[MODSTAMP], frame["Id"], strict=True):
        if ts is None:
            continue
        c = Cursor(parse_modstamp(str(ts)), str(rid))
        if c.after(best):
            best = c
    return best


def since_for(cursor: Cursor, overlap_seconds: int) -> datetime | None:
    """Where the next pull starts: the cursor minus the overlap window (None: everything)."""
    return cursor.ts - timedelta(seconds=overlap_seconds) if cursor.ts else None
