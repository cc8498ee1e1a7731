"""Writes: API choice, per-row results matched to input rows, retries of what is transient."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import responses

from sfsync.errors import BudgetExhausted, TerminalError, TransientError
from sfsync.limits import SMART_BULK_THRESHOLD
from sfsync.salesforce import BudgetGuard, RowResult, choose_api, connect

from .conftest import ASYNC, DATA, FakeBulk2, add_limits, add_login, all_ok, rows_of, to_csv

LOCK = "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: a0S1:--"
MISSING = "REQUIRED_FIELD_MISSING:Required fields are missing: [Name__c]:Name__c --"


def items(n: int, parents: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Ext__c": [f"L{i}" for i in range(n)],
            "Name__c": [f"item {i}" if i % 97 else "" for i in range(n)],
            "Statement__r.Ext__c": [f"S{i % parents}" for i in range(n)],
        },
        index=pd.RangeIndex(1000, 1000 + n),
    )


def test_choose_api_is_smart():
    assert choose_api(SMART_BULK_THRESHOLD - 1, "upsert") == "rest"
    assert choose_api(SMART_BULK_THRESHOLD, "upsert") == "bulk2"
    assert choose_api(SMART_BULK_THRESHOLD, "upsert", serial=True) == "bulk1"
    assert choose_api(5, "hardDelete") == "bulk2"
    assert choose_api(5, "upsert", api="bulk1") == "bulk1"
    with pytest.raises(ValueError):
        choose_api(5, "upsert", api="soap")


def test_bulk2_results_are_matched_to_input_rows_including_failures_without_id(client, rsps, sleeps):
    def decide(row, attempt):
        if not row["Name__c"]:
            return False, "", False, MISSING
        return True, "a0L" + row["Ext__c"][1:].rjust(12, "0"), row["Ext__c"].endswith("0"), ""

    fake = FakeBulk2(rsps, decide, polls_in_progress=2)
    frame = items(3000)
    seen: list[int] = []
    results = client.write("Item__c", "upsert", frame, external_id_field="Ext__c", progress=seen.append)
    assert len(results) == 3000 and sum(seen) == 3000
    assert [r.index for r in results] == list(frame.index)
    by_index = {r.index: r for r in results}
    for label, row in frame.iterrows():
        r = by_index[label]
        if row["Name__c"]:
            assert r.success and r.id == "a0L" + row["Ext__c"][1:].rjust(12, "0") and r.created == row["Ext__c"].endswith("0")
        else:
            assert not r.success and r.id is None
            assert r.error_code == "REQUIRED_FIELD_MISSING" and r.message == "Required fields are missing: [Name__c]"
    spec = next(iter(fake.jobs.values()))["spec"]
    assert spec == {"object": "Item__c", "operation": "upsert", "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA", "externalIdFieldName": "Ext__c"}
    assert fake.uploads[0][0] == {"Ext__c": "L0", "Name__c": "", "Statement__r.Ext__c": "S0"}
    assert sleeps[0] <= 0.5 and max(sleeps) <= 3.0
    assert client.calls["bulk2"] == 3 + 3 + 2  # create, upload, close; 3 polls; two result files


def test_bulk2_insert_of_identical_rows_gives_each_row_one_result(client, rsps):
    counter = iter(range(10**6))
    FakeBulk2(rsps, lambda row, a: (True, f"a0X{next(counter):012d}", True, ""))
    frame = pd.DataFrame({"Name__c": ["same"] * 2500, "Note__c": [str(i % 3) for i in range(2500)]})
    results = client.write_frame("Thing__c", "insert", frame)
    assert results["success"].all() and results["id"].is_unique and len(results) == 2500


def test_bulk2_upsert_with_a_repeated_key_matches_results_on_whole_rows(client, rsps):
    # The external ID repeats, so the key alone cannot say which result is whose: the result
    # files are then read in full and matched on every echoed column.
    FakeBulk2(rsps, lambda row, a: (row["Name__c"] != "bad", "a0X" + row["Name__c"] if row["Name__c"] != "bad" else "", False, MISSING))
    frame = pd.DataFrame({"Ext__c": ["L1", "L1", "L2"] * 1000, "Name__c": ["one", "bad", "two"] * 1000})
    results = client.write_frame("Item__c", "upsert", frame, external_id_field="Ext__c", api="bulk2")
    assert results["success"].tolist() == [True, False, True] * 1000
    assert results["id"].tolist() == ["a0Xone", None, "a0Xtwo"] * 1000
    assert results["error_code"].tolist() == [None, "REQUIRED_FIELD_MISSING", None] * 1000
    assert results["id"].dtype == object and results["message"].dtype == object


def _rest_collections(rsps, fake, decide):
    """sObject Collections upsert answering through ``decide`` with the fake's attempt counts."""
    bodies = []

    def collection(request):
        body = json.loads(request.body)
        bodies.append(body)
        out = []
        for rec in body["records"]:
            row = {"Ext__c": rec["Ext__c"], "Name__c": rec.get("Name__c", ""), "Statement__r.Ext__c": rec["Statement__r"]["Ext__c"]}
            key = json.dumps(row, sort_keys=True)
            attempt = fake.seen.get(key, 0)
            fake.seen[key] = attempt + 1
            ok, rid, created, err = decide(row, attempt)
            code, _, message = err.partition(":")
            out.append({"id": rid or None, "success": ok, "created": created, "errors": [] if ok else [{"statusCode": code, "message": message}]})
        return 200, {}, json.dumps(out)

    rsps.add_callback(responses.PATCH, f"{DATA}/composite/sobjects/Item__c/Ext__c", callback=collection)
    return bodies


def test_lock_errors_are_retried_grouped_by_parent_then_serially(client, rsps, sleeps):
    def decide(row, attempt):
        # S3's children contend on the first two attempts.
        if row["Statement__r.Ext__c"] == "S3" and attempt < 2:
            return False, "", False, LOCK
        return True, "a0L" + row["Ext__c"][1:].rjust(12, "0"), True, ""

    fake = FakeBulk2(rsps, decide, polls_in_progress=0)
    bodies = _rest_collections(rsps, fake, decide)
    frame = items(2500, parents=7)
    results = client.write_frame("Item__c", "upsert", frame, external_id_field="Ext__c", parent_column="Statement__r.Ext__c")
    assert results["success"].all()
    s3 = frame["Statement__r.Ext__c"] == "S3"
    assert (results.loc[s3, "retried"] == 2).all() and (results.loc[~s3, "retried"] == 0).all()
    # Few locked rows: re-sent through collections, one request at a time, twice.
    assert len(fake.uploads) == 1
    assert sum(len(b["records"]) for b in bodies) == 2 * s3.sum() and all(len(b["records"]) <= 200 for b in bodies)


def test_lock_retry_of_many_rows_groups_them_by_parent(client, rsps):
    def decide(row, attempt):
        if row["Statement__r.Ext__c"] in ("S0", "S1") and attempt < 1:
            return False, "", False, LOCK
        return True, "a0L" + row["Ext__c"][1:].rjust(12, "0"), True, ""

    fake = FakeBulk2(rsps, decide, polls_in_progress=0)
    frame = items(6000, parents=3)
    results = client.write_frame("Item__c", "upsert", frame, external_id_field="Ext__c", parent_column="Statement__r.Ext__c")
    assert results["success"].all()
    retry = fake.uploads[1]
    parents = [r["Statement__r.Ext__c"] for r in retry]
    assert len(retry) == 4000 and parents == sorted(parents)  # one parent's children together
    assert (results["retried"] == frame["Statement__r.Ext__c"].isin(["S0", "S1"]).astype(int)).all()


def test_lock_retries_are_bounded(client, rsps):
    def decide(row, attempt):
        return False, "", False, LOCK

    fake = FakeBulk2(rsps, decide, polls_in_progress=0)
    _rest_collections(rsps, fake, decide)
    results = client.write_frame("Item__c", "upsert", items(50), external_id_field="Ext__c", api="rest", max_lock_retries=2)
    assert (results["error_code"] == "UNABLE_TO_LOCK_ROW").all() and (results["retried"] == 2).all()


def test_validation_errors_are_not_retried(client, rsps):
    fake = FakeBulk2(rsps, lambda row, a: (False, "", False, MISSING))
    results = client.write("Item__c", "upsert", items(2100), external_id_field="Ext__c")
    assert not any(r.success for r in results) and all(r.retried == 0 for r in results)
    assert len(fake.jobs) == 1


def test_failed_job_rows_are_resent_once(client, rsps):
    fake = FakeBulk2(rsps, all_ok, fail_jobs=1)
    results = client.write_frame("Item__c", "upsert", items(2100), external_id_field="Ext__c")
    assert results["success"].all() and (results["retried"] == 1).all()
    assert len(fake.jobs) == 2


def test_job_failing_twice_is_terminal_and_keeps_answered_rows(client, rsps):
    FakeBulk2(rsps, all_ok, fail_jobs=2)
    with pytest.raises(TerminalError, match="Failed again") as info:
        client.write_frame("Item__c", "upsert", items(2100), external_id_field="Ext__c")
    partial = info.value.results
    assert len(partial) == 2100 and (partial["error_code"] == "UNPROCESSED").all()


def test_budget_guard_stops_before_a_bulk_job(rsps, settings, policy):
    add_login(rsps)
    add_limits(rsps, used=7498, maximum=15000)
    fake = FakeBulk2(rsps, all_ok)
    client = connect(settings, policy=policy, guard=BudgetGuard(0.5))
    with pytest.raises(BudgetExhausted) as info:
        client.write("Item__c", "upsert", items(2100), external_id_field="Ext__c")
    assert fake.jobs == {} and len(info.value.results) == 0


def test_rest_collections_for_small_writes(client, rsps):
    bodies = []

    def answer(request):
        body = json.loads(request.body)
        bodies.append(body)
        out = []
        for i, rec in enumerate(body["records"]):
            if "Name__c" not in rec:
                out.append({"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name__c]", "fields": ["Name__c"]}]})
            else:
                out.append({"id": f"a0L{i}", "success": True, "created": i % 2 == 0, "errors": []})
        return 200, {}, json.dumps(out)

    rsps.add_callback(responses.PATCH, f"{DATA}/composite/sobjects/Item__c/Ext__c", callback=answer)
    frame = pd.DataFrame({"Ext__c": ["A", "B", "C"], "Name__c": ["x", "", "#N/A"], "Statement__r.Ext__c": ["S1", "S1", None]})
    results = client.write("Item__c", "upsert", frame, external_id_field="Ext__c")
    assert results[0] == RowResult(0, True, "a0L0", True, None, None, 0)
    assert results[1].error_code == "REQUIRED_FIELD_MISSING" and not results[1].success
    assert bodies[0]["allOrNone"] is False
    records = bodies[0]["records"]
    assert records[0] == {"attributes": {"type": "Item__c"}, "Ext__c": "A", "Name__c": "x", "Statement__r": {"Ext__c": "S1"}}
    assert records[2] == {"attributes": {"type": "Item__c"}, "Ext__c": "C", "Name__c": None}  # #N/A → null


def test_rest_collections_split_at_200(client, rsps):
    sizes = []

    def answer(request):
        recs = json.loads(request.body)["records"]
        sizes.append(len(recs))
        return 200, {}, json.dumps([{"id": "a", "success": True, "errors": []} for _ in recs])

    rsps.add_callback(responses.POST, f"{DATA}/composite/sobjects", callback=answer)
    results = client.write_frame("Thing__c", "insert", pd.DataFrame({"Name": [str(i) for i in range(450)]}))
    assert sizes == [200, 200, 50] and results["created"].all()


def test_bulk1_serial_job_results_are_positional(client, rsps):
    ns = "http://www.force.com/2009/06/asyncapi/dataload"
    posted = []

    def xml(tag, **fields):
        inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
        return f'<?xml version="1.0" encoding="UTF-8"?><{tag} xmlns="{ns}">{inner}</{tag}>'

    def create(request):
        posted.append(request.body)
        return 201, {"Content-Type": "application/xml"}, xml("jobInfo", id="750J", state="Open")

    batches = []

    def add_batch(request):
        body = bytes(request.body) if isinstance(request.body, (bytes, memoryview)) else b"".join(request.body)
        batches.append(rows_of(body))
        return 201, {"Content-Type": "application/xml"}, xml("batchInfo", id=f"751B{len(batches)}", jobId="750J", state="Queued")

    def batch_list(request):
        infos = "".join(f"<batchInfo><id>751B{i + 1}</id><jobId>750J</jobId><state>Completed</state></batchInfo>" for i in range(len(batches)))
        return 200, {"Content-Type": "application/xml"}, f'<?xml version="1.0"?><batchInfoList xmlns="{ns}">{infos}</batchInfoList>'

    def result(request):
        n = int(re.search(r"751B(\d+)", request.url).group(1))
        rows = [["a0L" + r["Ext__c"], "true", "false", ""] if r["Name__c"] else ["", "false", "false", MISSING] for r in batches[n - 1]]
        return 200, {"Content-Type": "text/csv"}, to_csv(["Id", "Success", "Created", "Error"], rows)

    rsps.add_callback(responses.POST, f"{ASYNC}/job", callback=create)
    rsps.add_callback(responses.POST, f"{ASYNC}/job/750J/batch", callback=add_batch)
    rsps.add(responses.POST, f"{ASYNC}/job/750J", body=xml("jobInfo", id="750J", state="Closed"), content_type="application/xml")
    rsps.add_callback(responses.GET, f"{ASYNC}/job/750J/batch", callback=batch_list)
    rsps.add_callback(responses.GET, re.compile(rf"{re.escape(ASYNC)}/job/750J/batch/751B\d+/result"), callback=result)
    frame = items(2500)
    results = client.write_frame("Item__c", "upsert", frame, external_id_field="Ext__c", serial=True, batch_size=1000)
    assert b"<concurrencyMode>Serial</concurrencyMode>" in posted[0] and b"<externalIdFieldName>Ext__c</externalIdFieldName>" in posted[0]
    assert [len(b) for b in batches] == [1000, 1000, 500]
    ok = frame["Name__c"] != ""
    assert results.loc[ok, "success"].all() and (results.loc[ok, "id"] == "a0L" + frame.loc[ok, "Ext__c"]).all()
    assert (results.loc[~ok, "error_code"] == "REQUIRED_FIELD_MISSING").all()
    assert client.calls["bulk1"] == 1 + 3 + 1 + 1 + 3


def test_bulk1_invalid_session_logs_in_again(rsps, settings, policy):
    forms = add_login(rsps, "T1", "T2")
    add_limits(rsps)
    rsps.add(responses.POST, f"{ASYNC}/job", status=400, body='<error><exceptionCode>InvalidSessionId</exceptionCode><exceptionMessage>Invalid session id</exceptionMessage></error>')
    rsps.add(responses.POST, f"{ASYNC}/job", status=500, body="stop here")
    client = connect(settings, policy=policy)
    with pytest.raises(TransientError):  # the 500 after the re-login ends the test
        client.write("Item__c", "upsert", items(10), external_id_field="Ext__c", api="bulk1")
    assert len(forms) == 2
    assert rsps.calls[-1].request.headers["X-SFDC-Session"] == "T2"


def test_bad_arguments_are_refused_before_any_call(client):
    with pytest.raises(ValueError, match="external_id_field"):
        client.write("Item__c", "upsert", items(3))
    with pytest.raises(ValueError, match="Id column"):
        client.write("Item__c", "update", items(3))
    with pytest.raises(ValueError, match="parent_column"):
        client.write("Item__c", "upsert", items(3), external_id_field="Ext__c", parent_column="Nope")
    assert client.write("Item__c", "insert", items(0)) == []


def test_a_submitted_job_is_finished_even_past_the_share(rsps, settings, policy):
    add_login(rsps)
    add_limits(rsps, used=100, maximum=15000)
    FakeBulk2(rsps, all_ok, polls_in_progress=4)  # job creation reports usage 200/15000
    client = connect(settings, policy=policy, guard=BudgetGuard(105 / 15000))
    results = client.write_frame("Item__c", "upsert", items(2100), external_id_field="Ext__c")
    assert results["success"].all()  # polls and result downloads were not cut off
    with pytest.raises(BudgetExhausted):
        client.write_frame("Item__c", "upsert", items(2100), external_id_field="Ext__c")
