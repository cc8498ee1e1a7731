"""Transport rules (re-login, back-off, budget), describe cache and queries."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pytest
import responses

from sfsync.errors import BudgetExhausted, TransientError
from sfsync.salesforce import ApiError, BudgetGuard, connect, parse_limit_info

from .conftest import DATA, add_login, to_csv

EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _page(records, done=True, next_url=None, total=None):
    page = {"totalSize": total if total is not None else len(records), "done": done, "records": records}
    if next_url:
        page["nextRecordsUrl"] = next_url
    return page


def test_expired_session_logs_in_again_and_retries_once(rsps, settings, policy):
    forms = add_login(rsps, "T1", "T2")
    rsps.add(responses.GET, f"{DATA}/query/", status=401, json=EXPIRED)
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([{"attributes": {"type": "Account"}, "Id": "001"}]))
    client = connect(settings, policy=policy)
    assert list(client.query("SELECT Id FROM Account")) == [{"Id": "001"}]
    assert len(forms) == 2
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer T2"
    assert client.transport.relogins == 1


def test_session_expiring_twice_in_a_row_is_not_retried_forever(rsps, settings, policy):
    from sfsync.errors import SessionExpired

    add_login(rsps, "T1", "T2")
    rsps.add(responses.GET, f"{DATA}/query/", status=401, json=EXPIRED)
    client = connect(settings, policy=policy)
    with pytest.raises(SessionExpired):
        list(client.query("SELECT Id FROM Account"))


def test_5xx_backs_off_honouring_retry_after(rsps, settings, policy, sleeps):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", status=503, body="busy", headers={"Retry-After": "7"})
    rsps.add(responses.GET, f"{DATA}/query/", status=502, body="busy")
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([]))
    client = connect(settings, policy=policy)
    assert list(client.query("SELECT Id FROM Account")) == []
    assert len(sleeps) == 2 and sleeps[0] >= 7 and sleeps[1] < 1
    assert client.calls["query"] == 3


def test_5xx_that_never_ends_is_a_transient_error(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", status=503, body="busy")
    client = connect(settings, policy=policy)
    with pytest.raises(TransientError):
        list(client.query("SELECT Id FROM Account"))
    assert client.calls["query"] == policy.attempts


def test_validation_errors_are_never_retried(rsps, settings, policy, sleeps):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", status=400, json=[{"message": "No such column 'Foo'", "errorCode": "INVALID_FIELD"}])
    client = connect(settings, policy=policy)
    with pytest.raises(ApiError) as info:
        list(client.query("SELECT Foo FROM Account"))
    assert info.value.error_code == "INVALID_FIELD" and info.value.status == 400
    assert sleeps == [] and client.calls["query"] == 1


def test_daily_limit_exceeded_is_budget_exhausted(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", status=403, json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    client = connect(settings, policy=policy)
    with pytest.raises(BudgetExhausted):
        list(client.query("SELECT Id FROM Account"))


def test_guard_stops_before_crossing_its_share(rsps, settings, policy):
    add_login(rsps)
    headers = {"Sforce-Limit-Info": "api-usage=5000/10000; per-app-api-usage=10/250(appName=x)"}
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([]), headers=headers)
    client = connect(settings, policy=policy, guard=BudgetGuard(share=0.5))
    list(client.query("SELECT Id FROM Account"))
    assert client.guard.used == 5000 and client.guard.max == 10000
    with pytest.raises(BudgetExhausted, match="50%"):
        list(client.query("SELECT Id FROM Account"))
    assert client.calls["query"] == 1  # the refused call was never made


def test_parse_limit_info_ignores_per_app_usage():
    assert parse_limit_info("per-app-api-usage=17/250(appName=x); api-usage=18/5000") == (18, 5000)
    assert parse_limit_info("api-usage=18/5000") == (18, 5000)
    assert parse_limit_info("per-app-api-usage=17/250(appName=x)") is None


def test_limits_primes_the_guard(client):
    limits = client.limits()
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert client.guard.used == 100 and client.calls["rest"] == 1


def test_describe_is_cached_in_memory_and_on_disk(rsps, settings, policy):
    add_login(rsps)
    describe = {"name": "Account", "fields": [{"name": "Id", "type": "id"}]}
    rsps.add(responses.GET, f"{DATA}/sobjects/Account/describe", json=describe)
    client = connect(settings, policy=policy)
    assert client.describe("Account") == describe
    assert client.describe("Account") == describe
    assert client.calls["rest"] == 1
    again = connect(settings, policy=policy)  # a new run: read from disk
    assert again.describe("Account") == describe and again.calls["rest"] == 0
    fresh = connect(settings, policy=policy, refresh_describe=True)  # --refresh
    assert fresh.describe("Account") == describe and fresh.calls["rest"] == 1
    stale = connect(settings, policy=policy, describe_max_age=60)
    for path in settings.describe_cache_dir.rglob("*.json"):
        old = time.time() - 3600
        os.utime(path, (old, old))
    assert stale.describe("Account") == describe and stale.calls["rest"] == 1


def test_describe_of_unknown_object_is_an_api_error(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/sobjects/Nope__c/describe", status=404, json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    with pytest.raises(ApiError) as info:
        connect(settings, policy=policy).describe("Nope__c")
    assert info.value.status == 404


def test_query_follows_next_records_url_with_batch_size_header(rsps, settings, policy):
    add_login(rsps)
    rec = lambda i: {"attributes": {"type": "Account", "url": "/x"}, "Id": f"001{i}", "Parent__r": {"attributes": {}, "Name": "p"}}  # noqa: E731
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([rec(1), rec(2)], done=False, next_url="/services/data/v59.0/query/01g-2", total=3))
    rsps.add(responses.GET, f"{DATA}/query/01g-2", json=_page([rec(3)], total=3))
    client = connect(settings, policy=policy)
    records = list(client.query("SELECT Id, Parent__r.Name FROM Account", batch_size=5))
    assert [r["Id"] for r in records] == ["0011", "0012", "0013"]
    assert all("attributes" not in r for r in records)
    assert rsps.calls[1].request.headers["Sforce-Query-Options"] == "batchSize=200"  # clamped
    assert rsps.calls[2].request.headers["Sforce-Query-Options"] == "batchSize=200"


def test_query_all_uses_query_all_endpoint(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/queryAll/", json=_page([{"Id": "001", "IsDeleted": True}]))
    assert list(connect(settings, policy=policy).query("SELECT Id FROM Account", include_deleted=True)) == [{"Id": "001", "IsDeleted": True}]


def _bulk_query(rsps, pages):
    rsps.add(responses.POST, f"{DATA}/jobs/query", json={"id": "750Q", "state": "UploadComplete"})
    rsps.add(responses.GET, f"{DATA}/jobs/query/750Q", json={"id": "750Q", "state": "InProgress"})
    rsps.add(responses.GET, f"{DATA}/jobs/query/750Q", json={"id": "750Q", "state": "JobComplete"})
    for i, rows in enumerate(pages):
        locator = "null" if i == len(pages) - 1 else f"L{i + 1}"
        rsps.add(
            responses.GET,
            f"{DATA}/jobs/query/750Q/results",
            body=to_csv(["Id", "Name", "Parent__r.Name"], rows),
            headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(rows))},
            content_type="text/csv",
        )


def test_query_bulk_pages_with_the_locator(rsps, settings, policy, sleeps):
    add_login(rsps)
    _bulk_query(rsps, [[["1", "a", "p"], ["2", "", "q"]], [["3", "c", ""]]])
    frames = list(connect(settings, policy=policy).query_bulk("SELECT Id, Name, Parent__r.Name FROM Account"))
    assert [len(f) for f in frames] == [2, 1]
    assert frames[0]["Name"].tolist()[0] == "a" and frames[0]["Name"].isna().tolist() == [False, True]
    assert json.loads(rsps.calls[1].request.body)["query"].startswith("SELECT")
    assert "locator=L1" in rsps.calls[-1].request.url
    assert sleeps[0] <= 0.5  # first status check within half a second


def test_download_reads_the_whole_body_in_pieces_and_retries_5xx(rsps, settings, policy, sleeps, monkeypatch):
    import sfsync.salesforce.transport as transport_module

    monkeypatch.setattr(transport_module, "BODY_PIECE", 7)  # many pieces for a small body
    add_login(rsps)
    body = to_csv(["Id", "Name"], [[str(i), f"name {i}"] for i in range(50)])
    url = f"{DATA}/jobs/ingest/750X/successfulResults"
    rsps.add(responses.GET, url, status=503, body="busy")
    rsps.add(responses.GET, url, body=body, headers={"Sforce-Locator": "null"}, content_type="text/csv")
    client = connect(settings, policy=policy)
    data, headers = client.transport.download("bulk2", "jobs/ingest/750X/successfulResults", guarded=False)
    assert data == body.encode() and headers["Sforce-Locator"] == "null"
    assert client.calls["bulk2"] == 2 and len(sleeps) == 1
    assert rsps.calls[-1].request.headers["Accept"] == "text/csv"


def test_download_into_the_reused_buffer_gives_each_body_whole(rsps, settings, policy, monkeypatch):
    import sfsync.salesforce.transport as transport_module

    monkeypatch.setattr(transport_module, "BODY_PIECE", 5)
    add_login(rsps)
    bodies = [b"x" * 40, b"y" * 90, b"z" * 7, b"w" * 60]
    for i, body in enumerate(bodies):
        rsps.add(responses.GET, f"{DATA}/r{i}", body=body)
    transport = connect(settings, policy=policy).transport
    first, _ = transport.download("bulk2", "r0", reuse=True)
    assert first == bodies[0]
    second, _ = transport.download("bulk2", "r1", reuse=True)
    assert second is first and second == bodies[1]  # the same buffer, overwritten
    assert transport.download("bulk2", "r2", reuse=True)[0] == bodies[2]
    held = memoryview(first)  # someone still looks at the last body: it is left alone
    fourth, _ = transport.download("bulk2", "r3", reuse=True)
    assert fourth == bodies[3] and fourth is not first and held.tobytes() == bodies[2]


def test_query_frames_stays_on_rest_for_small_results(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([{"attributes": {}, "Id": "1", "Active__c": True, "Amount__c": 2.5, "Parent__r": None}]))
    frames = list(connect(settings, policy=policy).query_frames("SELECT Id FROM Account"))
    assert frames[0].to_dict("records") == [{"Id": "1", "Active__c": "true", "Amount__c": "2.5", "Parent__r": None}]


def test_query_frames_switches_to_bulk_for_large_results(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([{"Id": "x"}], done=False, next_url="/services/data/v59.0/query/01g-2", total=50_000))
    _bulk_query(rsps, [[["1", "a", "p"]]])
    client = connect(settings, policy=policy)
    frames = list(client.query_frames("SELECT Id, Name, Parent__r.Name FROM Account"))
    assert len(frames) == 1 and frames[0]["Id"].tolist() == ["1"]
    assert client.calls["query"] == 1 + 4  # one REST page, then the bulk job


def test_query_frames_with_expected_size_goes_straight_to_bulk(rsps, settings, policy):
    add_login(rsps)
    _bulk_query(rsps, [[["1", "a", "p"]]])
    client = connect(settings, policy=policy)
    assert len(list(client.query_frames("SELECT Id, Name, Parent__r.Name FROM Account", expected_size=1_000_000))) == 1
    assert client.calls["query"] == 4


def test_query_tables_give_arrow_string_columns_on_either_path(rsps, settings, policy):
    add_login(rsps)
    rsps.add(responses.GET, f"{DATA}/query/", json=_page([{"attributes": {}, "Id": "1", "Active__c": True, "Parent__r": None}]))
    _bulk_query(rsps, [[["1", "a", "p"], ["2", "", "q"]], [["3", "c", ""]]])
    client = connect(settings, policy=policy)
    rest = list(client.query_tables("SELECT Id, Active__c FROM Account"))
    assert [t.to_pylist() for t in rest] == [[{"Id": "1", "Active__c": "true", "Parent__r": None}]]
    bulk = list(client.query_tables("SELECT Id, Name, Parent__r.Name FROM Account", expected_size=1_000_000))
    assert [t.num_rows for t in bulk] == [2, 1]
    name_type = bulk[0].schema.field("Name").type
    assert all(isinstance(t, pa.Table) for t in bulk) and (pa.types.is_string(name_type) or pa.types.is_large_string(name_type))
    assert bulk[0].column("Name").to_pylist() == ["a", None]  # empty values are nulls, as in query_frames


def test_calls_are_counted_by_kind(client):
    assert set(client.calls) == {"rest", "query", "bulk1", "bulk2"}


def test_records_frame_flattens_relationships_as_text():
    from sfsync.salesforce import records_frame

    frame = records_frame(
        [
            {"attributes": {"type": "X"}, "Id": "1", "N__c": 1, "Parent__r": None},
            {"attributes": {"type": "X"}, "Id": "2", "N__c": None, "Parent__r": {"attributes": {"type": "P"}, "Name": "p", "Count__c": 3}},
        ]
    )
    assert frame.to_dict("records") == [
        {"Id": "1", "N__c": "1", "Parent__r.Name": None, "Parent__r.Count__c": None},
        {"Id": "2", "N__c": None, "Parent__r.Name": "p", "Parent__r.Count__c": "3"},
    ]
