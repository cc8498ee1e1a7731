"""The tmf678 biller: paging, auth, retries, bad answers, idempotent payments; and the loopback server."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from sfsync.billers import SupportsAccountFetch, SupportsExport, TmfBiller, TmfBillerSettings
from sfsync.billers.tmf_server import run_in_thread
from sfsync.errors import TransientError
from sfsync.state import StateStore

BASE = "https://biller.example.com"
BILLS = f"{BASE}/tmf-api/customerBillManagement/v4/customerBill"
PAY = f"{BASE}/tmf-api/paymentManagement/v4/payment"
TOKEN = "tok-SECRET-123"


def _bill(i: int, day: int) -> dict:
    return {"id": f"B{i}", "billDate": f"2026-01-{day:02d}T00:00:00Z", "state": "sent",
            "amountDue": {"unit": "EUR", "value": i + 0.5}, "billingAccount": {"id": f"BA-{i % 3}"}}


def _biller(store: StateStore | None = None, **kw: object) -> TmfBiller:
    cfg = {"base_url": BASE, "auth": {"type": "bearer", "token": TOKEN}, "page_size": 2, "backoff": 0, **kw}
    b = TmfBiller("tmf", TmfBillerSettings.model_validate(cfg), store)
    b.http.sleep = lambda s: None
    return b


def _paged(bills: list[dict]):  # type: ignore[no-untyped-def]
    def cb(request):  # type: ignore[no-untyped-def]
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        sel = [b for b in bills if "billDate.gte" not in q or b["billDate"] >= q["billDate.gte"]]
        sel.sort(key=lambda b: (b["billDate"], b["id"]))
        off, lim = int(q.get("offset", 0)), int(q.get("limit", 100))
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        return 200, {"X-Total-Count": str(len(sel)), "Content-Type": "application/json"}, json.dumps(sel[off:off + lim])
    return cb


@responses.activate
def test_pages_with_total_count_and_incremental_cursor_with_ties(store: StateStore) -> None:
    bills = [_bill(i, 1 + i // 2) for i in range(5)]
    responses.add_callback(responses.GET, BILLS, callback=_paged(bills))
    b = _biller(store)
    got = []
    for batch in b.read("customerBill"):
        got += batch.table["id"].to_pylist()
        assert batch.table.schema.field("amountDue").type.num_fields == 2  # nested struct kept
        b.commit(batch.checkpoint)
    assert got == ["B0", "B1", "B2", "B3", "B4"]
    assert store.get_cursor("tmf", "customerBill")["value"] == "2026-01-03T00:00:00Z"
    assert [x.num_rows for x in b.read("customerBill")] in ([], [0])
    bills.append({**_bill(9, 3)})                     # same instant as the cursor, arrived late
    bills.append({**_bill(10, 4)})
    assert [i for x in b.read("customerBill") for i in x.table["id"].to_pylist()] == ["B9", "B10"]
    assert next(iter(b.read("customerBill", full=True))).table["_source"][0].as_py() == "customerBill:B0"


@responses.activate
def test_retries_429_and_5xx_honouring_retry_after_then_gives_up_transiently() -> None:
    waits: list[float] = []
    responses.add(responses.GET, BILLS, status=429, headers={"Retry-After": "7"})
    responses.add(responses.GET, BILLS, status=503)
    responses.add(responses.GET, BILLS, json=[_bill(1, 1)], headers={"X-Total-Count": "1"})
    b = _biller(retries=3)
    b.http.sleep = waits.append
    assert sum(x.num_rows for x in b.read("customerBill", full=True)) == 1
    assert waits[0] == 7 and len(waits) == 2
    responses.replace(responses.GET, BILLS, status=500)
    with pytest.raises(TransientError, match="HTTP 500 after 4 attempts"):
        list(_biller(retries=3).read("customerBill", full=True))


@responses.activate
def test_html_answer_is_one_clear_error_naming_the_url(store: StateStore) -> None:
    responses.add(responses.GET, BILLS, body="<html><h1>Gateway login</h1></html>", content_type="text/html")
    batches = list(_biller(store).read("customerBill"))
    assert len(batches) == 1 and batches[0].checkpoint is None and batches[0].num_rows == 0
    assert "expected JSON" in batches[0].file_error and BILLS in batches[0].file_error
    assert batches[0].rejects.to_pylist()[0]["code"] == "BAD_RESPONSE"
    assert store.get_cursor("tmf", "customerBill") is None


@responses.activate
def test_records_without_id_are_row_rejects() -> None:
    responses.add(responses.GET, BILLS, json=[_bill(1, 1), {"billDate": "2026-01-01T00:00:00Z"}],
                  headers={"X-Total-Count": "2"})
    batches = list(_biller().read("customerBill", full=True))
    assert sum(x.num_rows for x in batches) == 1
    assert [r["code"] for x in batches if x.rejects is not None for r in x.rejects.to_pylist()] == ["BAD_RECORD"]


@responses.activate
def test_auth_modes_and_secrets_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    responses.add(responses.POST, f"{BASE}/oauth/token", json={"access_token": "AT-1", "expires_in": 3600})
    responses.add(responses.POST, f"{BASE}/oauth/token", json={"access_token": "AT-2", "expires_in": 3600})
    responses.add(responses.GET, BILLS, status=401)
    responses.add(responses.GET, BILLS, json=[], headers={"X-Total-Count": "0"})
    caplog.set_level(logging.DEBUG)
    b = _biller(auth={"type": "oauth2", "token_url": f"{BASE}/oauth/token", "client_id": "cid",
                      "client_secret": "CS-SECRET"})
    assert list(b.read("customerBill", full=True)) == []
    gets = [c.request for c in responses.calls if c.request.method == "GET"]
    assert gets[0].headers["Authorization"] == "Bearer AT-1" and gets[1].headers["Authorization"] == "Bearer AT-2"
    token_call = responses.calls[0].request
    assert "grant_type=client_credentials" in token_call.body
    responses.replace(responses.GET, BILLS, status=502)
    k = _biller(auth={"type": "api_key", "header": "X-Key", "key": "K-SECRET"}, retries=0)
    with pytest.raises(TransientError) as err:
        list(k.read("customerBill", full=True))
    assert responses.calls[-1].request.headers["X-Key"] == "K-SECRET"
    for secret in ("K-SECRET", "CS-SECRET", "AT-1", "AT-2", TOKEN):
        assert secret not in str(err.value) and secret not in caplog.text
        assert secret not in repr(k.config) and secret not in repr(b.config)


@responses.activate
def test_payments_post_with_correlator_id_and_duplicates_are_accepted() -> None:
    posted: dict[str, str] = {}

    def cb(request):  # type: ignore[no-untyped-def]
        body = json.loads(request.body)
        c = body["correlatorId"]
        if body.get("totalAmount", {}).get("value", 0) < 0:
            return 400, {}, json.dumps({"code": "INVALID_AMOUNT", "message": "amount must be positive"})
        if c in posted:
            return 409, {}, json.dumps({"code": "DUPLICATE", "message": "correlatorId exists", "id": posted[c]})
        posted[c] = f"PAY-{len(posted) + 1}"
        return 201, {}, json.dumps({"id": posted[c], "correlatorId": c})

    responses.add_callback(responses.POST, PAY, callback=cb)
    b = _biller()
    assert isinstance(b, SupportsExport) and isinstance(b, SupportsAccountFetch)
    recs = [{"sf_id": "a0P1", "totalAmount": {"unit": "EUR", "value": 12.5}, "account": {"id": "BA-1"}},
            {"sf_id": "a0P2", "totalAmount": {"unit": "EUR", "value": -1}}]
    r = b.export("payments", recs)
    assert (r[0].ok, r[0].reference) == (True, "PAY-1")
    assert (r[1].ok, r[1].transient) == (False, False) and "amount must be positive" in r[1].error
    again = b.export("payments", recs[:1])
    assert (again[0].ok, again[0].reference) == (True, "PAY-1")
    assert len(posted) == 1
    responses.replace(responses.POST, PAY, status=503)
    down = _biller(retries=1).export("payments", [{"sf_id": "a0P9", "totalAmount": {"unit": "EUR", "value": 1}}])
    assert down[0].transient and not down[0].ok


def test_loopback_server_fetch_account_export_and_faults(sample_tmf: Path, store: StateStore) -> None:
    with run_in_thread(sample_tmf, token="loop-token") as srv:
        b = TmfBiller("tmf", TmfBillerSettings.model_validate({
            "base_url": srv.url, "auth": {"type": "bearer", "token": "loop-token"}, "page_size": 50,
            "backoff": 0}), store)
        total = 0
        for batch in b.read("appliedCustomerBillingRate"):
            total += batch.num_rows
            b.commit(batch.checkpoint)
        expected = sum(1 for p in sample_tmf.glob("appliedCustomerBillingRate_*.jsonl") for _ in open(p))
        assert total == expected
        assert sum(x.num_rows for x in b.read("appliedCustomerBillingRate")) == 0
        acct = b.fetch_account("BA-000002")  # its speed is measured by bench/billers_fetch.py, not here
        assert acct["customerBill"].num_rows == 24 and acct["billingAccount"].num_rows == 1
        assert set(acct["appliedCustomerBillingRate"]["billingAccount"].combine_chunks().field("id").to_pylist()) \
            == {"BA-000002"}
        r1 = b.export("payments", [{"sf_id": "a0L1", "totalAmount": {"unit": "EUR", "value": 3}}])
        r2 = b.export("payments", [{"sf_id": "a0L1", "totalAmount": {"unit": "EUR", "value": 3}}])
        assert r1[0].ok and r2[0].ok and r1[0].reference == r2[0].reference
        srv.faults.extend([503, "html"])
        batches = list(b.read("dispute", full=True))
        assert batches[-1].file_error and "text/html" in batches[-1].file_error
