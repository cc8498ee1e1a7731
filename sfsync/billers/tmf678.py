"""The *tmf678* biller: a billing system speaking TM Forum Open APIs over HTTP.

Reads TMF678 ``customerBill`` and ``appliedCustomerBillingRate``, TMF666 ``billingAccount``
and disputes with offset/limit paging (``X-Total-Count``), incrementally by a date field
(``billDate.gte=`` + the ids already read at that instant, like the sql biller's cursor).
Records keep their nested shape: struct and list columns in the Arrow table.

Exports: payments go to TMF676 ``POST /payment`` with ``correlatorId`` = the Salesforce Id;
a 409 (duplicate correlatorId) means "already accepted" and returns the existing payment's
id, so a retry never pays twice. Adjustments, payment methods and disputes go to configurable
endpoints with the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import Field

from sfsync.billers._http import Auth, BadResponse, HttpClient, decode
from sfsync.billers.base import (
    BAD_RECORD,
    BAD_RESPONSE,
    SOURCE,
    Batch,
    Biller,
    EntitySpec,
    ExportResult,
    KindSettings,
    error_batch,
    rejects_table,
)
from sfsync.billers.layout import TMF_ACCOUNT_ENTITIES, TMF_ENTITIES
from sfsync.errors import TransientError, UserError

CBM = "/tmf-api/customerBillManagement/v4"


class TmfPaths(KindSettings):
    """API paths, relative to ``base_url`` (or absolute URLs)."""

    customerBill: str = f"{CBM}/customerBill"
    appliedCustomerBillingRate: str = f"{CBM}/appliedCustomerBillingRate"
    billingAccount: str = "/tmf-api/accountManagement/v4/billingAccount"
    dispute: str = f"{CBM}/dispute"
    payment: str = "/tmf-api/paymentManagement/v4/payment"
    adjustment: str = f"{CBM}/adjustment"
    paymentMethod: str = "/tmf-api/paymentMethods/v4/paymentMethod"


_INCREMENTAL: dict[str, str | None] = {"customerBill": "billDate", "appliedCustomerBillingRate": "date", "billingAccount": "lastUpdate",
                "dispute": "creationDate"}
_EXPORT_PATH = {"payments": "payment", "adjustments": "adjustment", "payment_methods": "paymentMethod",
                "disputes": "dispute"}


class TmfBillerSettings(KindSettings):
    """Settings of a ``kind: tmf678`` biller."""

    base_url: str
    auth: Auth | None = None
    timeout: float = Field(30.0, gt=0)
    retries: int = Field(4, ge=0)
    backoff: float = Field(0.5, ge=0)
    max_backoff: float = Field(30.0, ge=0)
    page_size: int = Field(1000, ge=1, le=10_000)
    paths: TmfPaths = Field(default_factory=TmfPaths)
    incremental: dict[str, str | None] = Field(default_factory=lambda: dict(_INCREMENTAL))
    verify: bool | str = True


@dataclass(frozen=True)
class TmfCheckpoint:
    """Cursor after a page: the last incremental value and the ids read at that value."""

    entity: str
    value: str
    ids_at_value: list[str] = field(default_factory=list)


def _get(rec: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(rec, dict):
            return None
        rec = rec.get(part)  # type: ignore[assignment]
    return rec


def records_table(entity: str, records: list[dict[str, Any]]) -> pa.Table:
    """JSON records → Arrow (nested columns kept) + ``_source`` = ``entity:id``."""
    try:
        t = pa.Table.from_pylist(records) if records else pa.table({})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types inside one field (a characteristic value that is a string here, a number
        # there): keep the clean columns typed and carry the mixed ones as JSON text.
        names = list(dict.fromkeys(k for r in records for k in r))
        cols = []
        for n in names:
            vals = [r.get(n) for r in records]
            try:
                cols.append(pa.array(vals))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                cols.append(pa.array([None if v is None else json.dumps(v) for v in vals], pa.string()))
        t = pa.table(cols, names=names)
    return t.append_column(SOURCE, pa.array([f"{entity}:{r.get('id')}" for r in records], pa.string()))


class TmfBiller(Biller):
    """Reads TMF resources page by page; posts payments and adjustments."""

    kind = "tmf678"
    settings = TmfBillerSettings
    config: TmfBillerSettings

    def __init__(self, name: str, settings: TmfBillerSettings, store: Any = None,
                 session: Any = None) -> None:
        super().__init__(name, settings, store)
        s = settings
        self.http = HttpClient(s.base_url, s.auth, timeout=s.timeout, retries=s.retries, backoff=s.backoff,
                               max_backoff=s.max_backoff, verify=s.verify, session=session)

    def close(self) -> None:
        """Close the HTTP session."""
        self.http.session.close()

    def entities(self) -> dict[str, EntitySpec]:
        """TMF678 bills and rates, TMF666 billing accounts, disputes."""
        return dict(TMF_ENTITIES)

    def _pages(self, entity: str, params: dict[str, Any]) -> Iterator[tuple[list[dict[str, Any]], str]]:
        path = getattr(self.config.paths, entity)
        offset = 0
        while True:
            data, r = self.http.get_json(path, {**params, "offset": offset, "limit": self.config.page_size})
            if not isinstance(data, list):
                raise BadResponse(f"GET {r.url}: expected a JSON array of {entity}, got {type(data).__name__}")
            yield data, r.url
            offset += len(data)
            total = r.headers.get("X-Total-Count")
            if not data or (total is not None and offset >= int(total)) or \
                    (total is None and len(data) < self.config.page_size):
                return

    def read(self, entity: str, *, full: bool = False) -> Iterator[Batch]:
        """Page through the entity after the stored cursor (everything with ``full``)."""
        spec = self._spec(entity)
        inc = self.config.incremental.get(entity)
        cursor = None if (full or self.store is None or not inc) else self.store.get_cursor(self.name, entity)
        params: dict[str, Any] = {}
        if inc:
            params["sort"] = f"{inc},id"
        skip: set[str] = set()
        last, at_value = None, []
        if cursor:
            params[f"{inc}.gte"] = cursor["value"]
            skip = set(cursor.get("ids_at_value", []))
            last, at_value = cursor["value"], list(cursor.get("ids_at_value", []))
        try:
            for records, url in self._pages(entity, params):
                good, bad = [], []
                for rec in records:
                    if not isinstance(rec, dict) or not rec.get("id"):
                        bad.append(rec)
                    elif not (rec["id"] in skip and inc and _get(rec, inc) == cursor["value"]):  # type: ignore[index]
                        good.append(rec)
                rejects = rejects_table([url] * len(bad), BAD_RECORD, [f"{entity} without an id: {str(b)[:120]}"
                                                                       for b in bad]) if bad else None
                cp = None
                if inc and good:
                    for rec in good:
                        v = _get(rec, inc)
                        if v is None:
                            continue
                        if v != last:
                            last, at_value = v, []
                        at_value.append(rec["id"])
                    if last is not None:
                        cp = TmfCheckpoint(entity, str(last), list(at_value))
                if spec.key and not good and not bad:
                    continue
                yield Batch(entity, records_table(entity, good), cp, rejects, source=url)
        except BadResponse as exc:
            yield error_batch(entity, getattr(self.config.paths, entity), BAD_RESPONSE, str(exc))

    def commit(self, checkpoint: object) -> None:
        """Store the cursor of ``checkpoint``."""
        if not isinstance(checkpoint, TmfCheckpoint):
            raise TypeError(f"not a tmf678 checkpoint: {checkpoint!r}")
        if self.store is not None:
            self.store.set_cursor(self.name, checkpoint.entity,
                                  {"value": checkpoint.value, "ids_at_value": checkpoint.ids_at_value})

    def fetch_account(self, account_number: str) -> dict[str, pa.Table]:
        """Bills, rates, the billing account and disputes of one account (keyed by TMF entity)."""
        out: dict[str, pa.Table] = {}
        try:
            for entity in TMF_ACCOUNT_ENTITIES:
                key = "id" if entity == "billingAccount" else "billingAccount.id"
                records: list[dict[str, Any]] = []
                for page, _ in self._pages(entity, {key: account_number}):
                    records.extend(page)
                out[entity] = records_table(entity, records)
        except BadResponse as exc:
            raise TransientError(f"biller {self.name!r}: {exc}") from None
        return out

    def export(self, stream: str, records: list[dict[str, Any]]) -> list[ExportResult]:
        """POST each record with ``correlatorId`` = its Salesforce Id; a duplicate is success."""
        if stream not in _EXPORT_PATH:
            raise UserError(f"unknown export stream {stream!r}; expected one of {', '.join(_EXPORT_PATH)}")
        path = getattr(self.config.paths, _EXPORT_PATH[stream])
        return [self._post(path, r) for r in records]

    def _post(self, path: str, record: dict[str, Any]) -> ExportResult:
        sf_id = str(record["sf_id"])
        body = {k: v for k, v in record.items() if k != "sf_id"}
        body["correlatorId"] = sf_id
        try:
            r = self.http.request("POST", path, json=body, headers={"Idempotency-Key": sf_id})
        except TransientError as exc:
            return ExportResult(sf_id, False, None, str(exc), transient=True)
        if r.status_code in (200, 201, 202):
            try:
                return ExportResult(sf_id, True, _ref(decode(r)))
            except BadResponse as exc:
                return ExportResult(sf_id, False, None, str(exc), transient=True)
        if r.status_code == 409:
            return ExportResult(sf_id, True, self._existing(path, sf_id, r))
        return ExportResult(sf_id, False, None, _reason(r))

    def _existing(self, path: str, sf_id: str, r: Any) -> str | None:
        """The reference of an already accepted record (from the 409 body, else a lookup)."""
        try:
            ref = _ref(r.json())
            if ref:
                return ref
        except ValueError:
            pass
        try:
            data, _ = self.http.get_json(path, {"correlatorId": sf_id})
        except (BadResponse, TransientError):
            return None
        return _ref(data[0]) if isinstance(data, list) and data else None


def _ref(body: Any) -> str | None:
    if isinstance(body, dict):
        v = body.get("id") or body.get("existingId")
        return str(v) if v is not None else None
    return None


def _reason(r: Any) -> str:
    try:
        body = r.json()
        if isinstance(body, dict):
            msg = body.get("message") or body.get("reason") or body.get("error")
            if msg:
                return f"HTTP {r.status_code}: {body.get('code', '')} {msg}".replace("  ", " ")
    except ValueError:
        pass
    return f"HTTP {r.status_code}: {' '.join(r.text[:160].split())}"
