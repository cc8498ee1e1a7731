"""``SalesforceClient``: the one object jobs use to talk to Salesforce."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import requests

from sfsync.limits import QUERY_DEFAULT_BATCH, QUERY_MAX_BATCH, QUERY_MIN_BATCH

from . import bulk2
from .auth import Authenticator, SettingsLike, credentials_from_settings, make_session
from .describe import DEFAULT_MAX_AGE, DescribeCache
from .guard import BudgetGuard, CallCounter, install_hook
from .load import MAX_LOCK_RETRIES, Progress, write_frame
from .results import RowResult, frame_to_results
from .transport import RetryPolicy, Transport

#: ``query_frames`` switches to a Bulk API 2.0 query above this many rows: below it, a
#: few REST pages cost fewer calls than a job (create, poll, results).
QUERY_BULK_THRESHOLD = 5 * QUERY_MAX_BATCH


class SalesforceClient:
    """Describe, query, limits and writes over one login, with the budget guard.

    Build it with :func:`connect`. ``calls`` counts the calls made, by kind.
    """

    def __init__(self, transport: Transport, describe_cache: DescribeCache) -> None:
        self.transport = transport
        self._describe = describe_cache

    # -- introspection ---------------------------------------------------------------

    @property
    def calls(self) -> dict[str, int]:
        """Calls made so far by kind: ``rest``, ``query``, ``bulk1``, ``bulk2``.

        Also, once they happened: ``http_retries`` (calls sent again after a 5xx or a
        connection failure; each attempt is counted in its kind too) and ``relogins``.
        """
        calls = self.transport.counter.as_dict()
        for key, n in (("http_retries", self.transport.retries), ("relogins", self.transport.relogins)):
            if n:
                calls[key] = n
        return calls

    @property
    def guard(self) -> BudgetGuard:
        """The API budget guard of this client."""
        return self.transport.guard

    @property
    def instance_url(self) -> str:
        """The org's instance URL."""
        return self.transport.token.instance_url

    @property
    def sf(self) -> Any:
        """The underlying simple-salesforce client (for calls sfsync does not wrap)."""
        return self.transport.sf

    def limits(self) -> dict[str, Any]:
        """The org's limits (``GET limits/``); also primes the budget guard."""
        result = self.transport.call("rest", lambda sf: sf.limits(timeout=self.transport.timeout))
        self.guard.observe_limits(result)
        return dict(result)

    # -- schema ----------------------------------------------------------------------

    def describe(self, sobject: str, *, refresh: bool = False) -> dict[str, Any]:
        """``sobjects/{sobject}/describe``, cached in memory and on disk.

        Raises:
            ApiError: the object does not exist (status 404) or is not accessible.
        """

        def fetch() -> Any:
            return self.transport.call("rest", lambda sf: sf.restful(f"sobjects/{quote(sobject)}/describe", timeout=self.transport.timeout))

        return self._describe.get(sobject, fetch, refresh=refresh)

    def describe_global(self, *, refresh: bool = False) -> dict[str, Any]:
        """``sobjects`` (the list of the org's objects), cached like :meth:`describe`."""
        return self._describe.get("__global__", lambda: self.transport.call("rest", lambda sf: sf.restful("sobjects", timeout=self.transport.timeout)), refresh=refresh)

    def refresh_describe(self) -> None:
        """Drop every cached describe (``--refresh``)."""
        self._describe.clear()

    # -- reads -----------------------------------------------------------------------

    def query(self, soql: str, *, include_deleted: bool = False, batch_size: int = QUERY_DEFAULT_BATCH) -> Iterator[dict[str, Any]]:
        """Run a SOQL query through REST, following ``nextRecordsUrl``, lazily.

        Args:
            soql: the query.
            include_deleted: use ``queryAll`` (soft-deleted rows, ``IsDeleted``).
            batch_size: rows per page (``Sforce-Query-Options``), clamped to 200..2000.

        Yields:
            Records as Salesforce returns them, without the top-level ``attributes``.
        """
        for page in self._pages(soql, include_deleted=include_deleted, batch_size=batch_size):
            for record in page["records"]:
                record.pop("attributes", None)
                yield record

    def count(self, soql: str) -> int:
        """The ``totalSize`` of a query (``SELECT COUNT() FROM …``): one API call, no records."""
        page = next(self._pages(soql, include_deleted=False, batch_size=QUERY_MIN_BATCH))
        return int(page.get("totalSize") or 0)

    def _pages(self, soql: str, *, include_deleted: bool, batch_size: int) -> Generator[dict[str, Any], None, None]:
        size = max(QUERY_MIN_BATCH, min(QUERY_MAX_BATCH, batch_size))
        headers = {"Sforce-Query-Options": f"batchSize={size}"}
        timeout = self.transport.timeout
        page = self.transport.call("query", lambda sf: sf.query(soql, include_deleted=include_deleted, headers=headers, timeout=timeout))
        while True:
            yield page
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = page["nextRecordsUrl"]
            page = self.transport.call("query", partial(_query_more, url=url, headers=headers, timeout=timeout))

    def query_bulk(self, soql: str, *, include_deleted: bool = False) -> Iterator[pd.DataFrame]:
        """Run a Bulk API 2.0 query; one frame of string columns per results page."""
        return bulk2.query(self.transport, soql, include_deleted=include_deleted)

    def query_frames(self, soql: str, expected_size: int | None = None, *, include_deleted: bool = False) -> Iterator[pd.DataFrame]:
        """Query into frames through REST or Bulk 2.0, whichever costs fewer calls.

        Args:
            soql: the query.
            expected_size: the caller's estimate of the row count; when unknown, the
                first REST page's ``totalSize`` decides (that page is used, not wasted,
                when REST is chosen).
            include_deleted: include soft-deleted rows.

        Yields:
            Frames with string values (booleans ``"true"``/``"false"``), nulls as
            missing; relationship fields flattened as ``Parent__r.Field``.
        """
        for page in self._query_pages(soql, expected_size, include_deleted):
            yield page if isinstance(page, pd.DataFrame) else page.to_pandas()

    def query_tables(self, soql: str, expected_size: int | None = None, *, include_deleted: bool = False) -> Iterator[pa.Table]:
        """:meth:`query_frames` as Arrow tables of strings: a Bulk 2.0 page is never made Python objects.

        For callers that keep columns (the lookup cache reads every Account number of an org):
        a results page parsed from CSV stays Arrow, without a Python string per value.
        """
        for page in self._query_pages(soql, expected_size, include_deleted):
            yield page if isinstance(page, pa.Table) else pa.Table.from_pandas(page, preserve_index=False)

    def _query_pages(self, soql: str, expected_size: int | None, include_deleted: bool) -> Iterator[pd.DataFrame | pa.Table]:
        """REST pages as frames, or Bulk 2.0 pages as Arrow tables (see :meth:`query_frames`)."""
        if expected_size is not None and expected_size >= QUERY_BULK_THRESHOLD:
            yield from bulk2.query_tables(self.transport, soql, include_deleted=include_deleted)
            return
        pages = self._pages(soql, include_deleted=include_deleted, batch_size=QUERY_MAX_BATCH)
        first = next(pages)
        if expected_size is None and not first.get("done", True) and int(first.get("totalSize") or 0) >= QUERY_BULK_THRESHOLD:
            pages.close()
            yield from bulk2.query_tables(self.transport, soql, include_deleted=include_deleted)
            return
        yield records_frame(first["records"])
        for page in pages:
            yield records_frame(page["records"])

    # -- writes ----------------------------------------------------------------------

    def write_frame(
        self,
        sobject: str,
        operation: str,
        frame: pd.DataFrame,
        *,
        external_id_field: str | None = None,
        api: str = "auto",
        serial: bool = False,
        batch_size: int | None = None,
        progress: Progress | None = None,
        parent_column: str | None = None,
        max_lock_retries: int = MAX_LOCK_RETRIES,
        match_on: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Like :meth:`write`, but results as a frame (``success, id, created, error_code,
        message, retried``) indexed like ``frame``: the fast path for large loads."""
        if not self.guard.known:
            self.limits()  # learn the org's usage before the first write
        return write_frame(
            self.transport,
            sobject,
            operation,
            frame,
            external_id_field=external_id_field,
            api=api,
            serial=serial,
            batch_size=batch_size,
            progress=progress,
            parent_column=parent_column,
            max_lock_retries=max_lock_retries,
            match_on=match_on,
        )

    def write(
        self,
        sobject: str,
        operation: str,
        frame: pd.DataFrame,
        *,
        external_id_field: str | None = None,
        api: str = "auto",
        serial: bool = False,
        batch_size: int | None = None,
        progress: Progress | None = None,
        parent_column: str | None = None,
        max_lock_retries: int = MAX_LOCK_RETRIES,
    ) -> list[RowResult]:
        """Insert, update, upsert, delete or hard-delete the rows of ``frame``.

        Args:
            sobject: the object, e.g. ``vlocity_cmt__Statement__c``.
            operation: ``insert``, ``update``, ``upsert``, ``delete`` or ``hardDelete``.
            frame: string values ready for CSV (empty/null: field untouched; ``#N/A``:
                set to null); relationship columns flat (``Parent__r.ExtId__c``).
            external_id_field: the upsert key field.
            api: ``"auto"`` (REST below 2,000 rows, else Bulk 2.0), ``"rest"``,
                ``"bulk2"`` or ``"bulk1"``.
            serial: Bulk 1.0 Serial instead of Bulk 2.0 for volumes.
            batch_size: cap on rows per request/batch/job.
            progress: called with the number of rows answered, as they are answered.
            parent_column: the column holding each row's parent, to group lock retries.
            max_lock_retries: bound on re-sends of UNABLE_TO_LOCK_ROW rows.

        Returns:
            One :class:`RowResult` per input row, in input order.

        Raises:
            BudgetExhausted: the guard stopped the write; ``exc.results`` has the rows
                already answered (a result frame).
            TerminalError: a bulk job failed twice, or Salesforce refused the request.
            TransientError: Salesforce stayed unavailable through the retries.
        """
        frame_out = self.write_frame(
            sobject,
            operation,
            frame,
            external_id_field=external_id_field,
            api=api,
            serial=serial,
            batch_size=batch_size,
            progress=progress,
            parent_column=parent_column,
            max_lock_retries=max_lock_retries,
        )
        return frame_to_results(frame_out)


def _query_more(sf: Any, *, url: str, headers: dict[str, str], timeout: float) -> Any:
    return sf.query_more(url, identifier_is_url=True, headers=headers, timeout=timeout)


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """REST query records as a frame of strings, like a Bulk 2.0 query's CSV.

    Relationship fields are flattened (``Parent__r.Name``); a relationship that is null in
    every record of the page stays one null column named after the relationship.
    """
    if not records:
        return pd.DataFrame()
    flat = [_flatten(record, "", {}) for record in records]
    frame = pd.DataFrame(flat, dtype=object)
    names = set(frame.columns)
    # "Parent__r" (null in some records) next to "Parent__r.Name": keep the fields only.
    shadowed = [c for c in frame.columns if any(n.startswith(c + ".") for n in names)]
    frame = frame.drop(columns=shadowed)
    return frame.astype(object).where(frame.notna(), None)


def _flatten(record: dict[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    for key, value in record.items():
        if key == "attributes":
            continue
        name = prefix + key
        if isinstance(value, dict) and "records" not in value:
            _flatten(value, name + ".", out)
        else:
            out[name] = _text(value)
    return out


def _text(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value  # nulls, and child-relationship subquery results, stay as they are
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def connect(
    settings: SettingsLike,
    *,
    session: requests.Session | None = None,
    guard: BudgetGuard | None = None,
    policy: RetryPolicy | None = None,
    refresh_describe: bool = False,
    describe_max_age: float = DEFAULT_MAX_AGE,
) -> SalesforceClient:
    """Log in as the settings say and return a client.

    Args:
        settings: ``sfsync.config.SalesforceSettings`` (or any object with its fields).
        session: an HTTP session to use (e.g. the emulator's in-process session).
        guard: a budget guard shared by the run; default ``BudgetGuard(share)`` with
            ``settings.api_budget_share`` if present, else 0.5.
        policy: back-off and polling (tests pass a no-sleep policy).
        refresh_describe: ignore describes cached on disk (``--refresh``).
        describe_max_age: seconds a describe cached on disk stays valid.

    Raises:
        ConfigError: the settings are incomplete for the chosen auth method.
        LoginFailed: Salesforce refused the credentials.
        TransientError: the login host was unreachable.
    """
    credentials = credentials_from_settings(settings)
    http = make_session(credentials, session)
    guard = guard or BudgetGuard(share=float(getattr(settings, "api_budget_share", None) or 0.5))
    install_hook(http, guard)
    transport = Transport(
        Authenticator(credentials, http),
        guard,
        CallCounter(),
        policy,
        timeout=credentials.timeout,
        ca_bundle=str(credentials.ca_bundle) if credentials.ca_bundle else None,
    )
    cache_dir = getattr(settings, "describe_cache_dir", None)
    cache = DescribeCache(
        Path(cache_dir) if cache_dir else None,
        transport.token.instance_url,
        credentials.api_version,
        max_age=describe_max_age,
        refresh=refresh_describe,
    )
    return SalesforceClient(transport, cache)
