"""REST ``query`` / ``queryAll`` with ``nextRecordsUrl`` paging and a cursor store.

The SOQL engine (:mod:`sfsync.emulator.soql`) returns every matching record; this module
slices them into pages of ``batchSize`` (header ``Sforce-Query-Options: batchSize=N``,
200..2000, default 2000) and keeps the rest under a locator like Salesforce's
``01g8d0000000001AAA-2000`` until the client pages through or the cursor is evicted.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from sfsync.emulator.errors import SfApiError
from sfsync.emulator.http import json_response
from sfsync.emulator.ids import make_id
from sfsync.emulator.org import Org
from sfsync.limits import QUERY_DEFAULT_BATCH, QUERY_MAX_BATCH, QUERY_MIN_BATCH

MAX_CURSORS = 200  # oldest cursors are forgotten past this (Salesforce keeps ~10 per user open)
_BATCH_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.I)


@dataclass
class _Cursor:
    records: list[dict[str, Any]]
    total_size: int
    batch: int


class QueryCursors:
    """Open query locators: locator id → remaining records (thread-safe, bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._seq = itertools.count(1)

    def open(self, records: list[dict[str, Any]], total_size: int, batch: int) -> str:
        """Store a result and return its locator id (``01g...``)."""
        cid = make_id("01g", next(self._seq))
        with self._lock:
            self._cursors[cid] = _Cursor(records, total_size, batch)
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
        return cid

    def get(self, cid: str) -> _Cursor | None:
        """The cursor for ``cid`` or None when unknown or evicted."""
        with self._lock:
            cursor = self._cursors.get(cid)
            if cursor is not None:
                self._cursors.move_to_end(cid)
            return cursor

    def clear(self) -> None:
        """Forget every cursor (admin reset)."""
        with self._lock:
            self._cursors.clear()

    def close(self, cid: str) -> None:
        """Forget a cursor (after its last page was served)."""
        with self._lock:
            self._cursors.pop(cid, None)


def _batch_size(request: Request) -> int:
    match = _BATCH_RE.search(request.headers.get("Sforce-Query-Options", ""))
    if match is None:
        return QUERY_DEFAULT_BATCH
    return max(QUERY_MIN_BATCH, min(QUERY_MAX_BATCH, int(match.group(1))))


def _page(request: Request, version: str, cid: str | None, records: list[dict[str, Any]], total: int,
          start: int, batch: int) -> Response:
    page = records[start:start + batch]
    end = start + len(page)
    body: dict[str, Any] = {"totalSize": total, "done": end >= len(records)}
    cursors: QueryCursors = request.environ["sfsync.app"].cursors
    if not body["done"]:
        if cid is None:
            cid = cursors.open(records, total, batch)
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cid}-{end}"
    elif cid is not None:
        cursors.close(cid)
    body["records"] = page
    return json_response(body)


def _execute(org: Org, soql: str, include_deleted: bool) -> tuple[list[dict[str, Any]], int]:
    try:
        from sfsync.emulator.soql import execute
    except ImportError:  # the SOQL engine is a separate module; without it there is no query
        raise SfApiError(400, "MALFORMED_QUERY", "The emulator's SOQL engine is not installed") from None
    with org.lock:
        org.counters["queries"] += 1
    result = execute(org, soql, include_deleted=include_deleted)
    return list(result.records), int(result.total_size)


def query(request: Request, org: Org, version: str, kind: str) -> Response:
    """``GET query/?q=`` and ``queryAll/?q=``: the first page."""
    soql = request.args.get("q")
    if not soql:
        raise SfApiError(400, "MALFORMED_QUERY", "unexpected token: <EOF>" if soql == "" else
                         "A query string has to be specified")
    records, total = _execute(org, soql, include_deleted=kind == "queryAll")
    return _page(request, version, None, records, total, 0, _batch_size(request))


def query_more(request: Request, org: Org, version: str, kind: str, locator: str, offset: str) -> Response:
    """``GET query/{locator}-{offset}``: the next page of an open cursor."""
    cursor = request.environ["sfsync.app"].cursors.get(locator)
    if cursor is None or int(offset) > len(cursor.records):
        raise SfApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(request, version, locator, cursor.records, cursor.total_size, int(offset), cursor.batch)


_V = r"/services/data/v(?P<version>\d+\.\d)"
ROUTES = [
    ("GET", _V + r"/(?P<kind>query|queryAll)/?", query),
    ("GET", _V + r"/(?P<kind>query|queryAll)/(?P<locator>01g[0-9A-Za-z]{15})-(?P<offset>\d+)", query_more),
]
