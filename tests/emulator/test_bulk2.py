"""Bulk API 2.0 on the emulator, driven through the unmodified simple-salesforce client
(and raw ``requests`` where the point is the exact wire shape of an error)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import SalesforceOperationError

from sfsync.emulator import auth, bulk2
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, inprocess_salesforce, inprocess_session

SLI = "vlocity_cmt__StatementLineItem__c"
STATEMENT = "vlocity_cmt__Statement__c"
EXT = "vlocity_cmt__ExternalID__c"
REL = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"
BASE = f"https://{DEFAULT_HOST}/services/data/v59.0/jobs"


@pytest.fixture
def org() -> Org:
    return Org()


@pytest.fixture
def sf(org: Org) -> Any:
    return inprocess_salesforce(org)


class Raw:
    """Plain HTTP against the emulator, for exact status codes, headers and bodies."""

    def __init__(self, org: Org) -> None:
        self.session = inprocess_session(org)
        token = auth.new_session(org, source="test", expires=False)
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json", **kw: Any) -> requests.Response:
        data = json.dumps(body) if isinstance(body, dict) else body
        return self.session.request(method, f"{BASE}/{path}", data=data,
                                    headers={**self.auth, "Content-Type": ctype}, **kw)

    def job(self, spec: dict[str, Any], data: bytes | None = None, close: bool = True) -> str:
        created = self.call("POST", "ingest", {"contentType": "CSV", **spec})
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        if data is not None:
            put = self.call("PUT", f"ingest/{job_id}/batches", data, "text/csv")
            assert put.status_code == 201, put.text
        if close:
            assert self.call("PATCH", f"ingest/{job_id}", {"state": "UploadComplete"}).status_code == 200
        return job_id


@pytest.fixture
def raw(org: Org) -> Raw:
    return Raw(org)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _accounts(sf: Any, n: int) -> list[str]:
    sf.bulk2.Account.insert(records=[{"Name": f"Account {i}"} for i in range(n)], wait=0)
    return [r["Id"] for r in sf.query_all("SELECT Id FROM Account ORDER BY Name")["records"]]


def _statements(sf: Any, account_id: str, n: int) -> None:
    records = [{EXT: f"ST-{i}", "Name": f"Statement {i}", "vlocity_cmt__AccountId__c": account_id} for i in range(n)]
    result = sf.bulk2.__getattr__(STATEMENT).upsert(records=records, external_id_field=EXT, wait=0)
    assert result[0]["numberRecordsFailed"] == 0


# ----------------------------------------------------------------------------- ingest


def test_upsert_with_relationship_column_results_match_input_rows(sf: Any, org: Org) -> None:
    account = _accounts(sf, 1)[0]
    _statements(sf, account, 2)
    rows = [
        {EXT: "L-1", REL: "ST-0", "vlocity_cmt__CurrencyAmount__c": "10.50"},
        {EXT: "L-2", REL: "ST-1", "vlocity_cmt__CurrencyAmount__c": "3"},
        {EXT: "L-3", REL: "ST-404", "vlocity_cmt__CurrencyAmount__c": "1"},  # unknown statement
        {EXT: "L-4", REL: "ST-0", "vlocity_cmt__Amount__c": "1.5"},  # Number(18,0): no decimals
    ]
    bulk = sf.bulk2.__getattr__(SLI)
    summary = bulk.upsert(records=rows, external_id_field=EXT, wait=0)
    assert summary[0]["numberRecordsProcessed"] == 4
    assert summary[0]["numberRecordsFailed"] == 2
    results = bulk.get_all_ingest_records(summary[0]["job_id"])

    ok = {r[EXT]: r for r in results["successfulRecords"]}
    assert set(ok) == {"L-1", "L-2"}
    assert all(r["sf__Created"] == "true" and r["sf__Id"].startswith(org.schema.key_prefix(SLI)) for r in ok.values())
    assert ok["L-1"][REL] == "ST-0" and ok["L-1"]["vlocity_cmt__CurrencyAmount__c"] == "10.50"
    stored = sf.query(f"SELECT {REL} FROM {SLI} WHERE Id = '{ok['L-1']['sf__Id']}'")["records"][0]
    assert stored["vlocity_cmt__StatementId__r"]["vlocity_cmt__ExternalID__c"] == "ST-0"

    failed = {r[EXT]: r for r in results["failedRecords"]}
    assert set(failed) == {"L-3", "L-4"}
    assert failed["L-3"]["sf__Id"] == ""
    assert failed["L-3"]["sf__Error"].startswith("INVALID_FIELD:Foreign key external ID: ST-404 not found")
    assert failed["L-3"]["sf__Error"].endswith("--")
    assert failed["L-4"]["sf__Error"].split(":", 1)[0] in ("NUMBER_OUTSIDE_VALID_RANGE", "INVALID_TYPE_ON_FIELD_IN_RECORD")
    assert results["unprocessedRecords"] == []

    again = bulk.upsert(records=rows[:1], external_id_field=EXT, wait=0)
    updated = bulk.get_all_ingest_records(again[0]["job_id"])["successfulRecords"]
    assert updated[0]["sf__Created"] == "false" and updated[0]["sf__Id"] == ok["L-1"]["sf__Id"]


def test_result_files_exact_shape(raw: Raw) -> None:
    job = raw.job({"object": "Account", "operation": "insert"}, b"Name,AccountNumber\nAcme,A1\n,A2\n")
    assert raw.call("GET", f"ingest/{job}").json()["state"] == "JobComplete"
    ok = raw.call("GET", f"ingest/{job}/successfulResults")
    assert ok.headers["Content-Type"] == "text/csv"
    lines = ok.text.splitlines()
    assert lines[0] == '"sf__Id","sf__Created",Name,AccountNumber'
    assert lines[1].endswith('","true","Acme","A1"')
    failed = raw.call("GET", f"ingest/{job}/failedResults").text.splitlines()
    assert failed == [
        '"sf__Id","sf__Error",Name,AccountNumber',
        '"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --","","A2"',
    ]
    # The path matches case-insensitively; the header row is there even when empty.
    assert raw.call("GET", f"ingest/{job}/unprocessedRecords").text == "Name,AccountNumber\n"


def test_duplicate_external_ids_in_one_job_fail_both_rows(sf: Any) -> None:
    account = _accounts(sf, 1)[0]
    rows = [
        {EXT: "DUP", "Name": "first", "vlocity_cmt__AccountId__c": account},
        {EXT: "dup", "Name": "second", "vlocity_cmt__AccountId__c": account},
        {EXT: "UNIQUE", "Name": "third", "vlocity_cmt__AccountId__c": account},
    ]
    bulk = sf.bulk2.__getattr__(STATEMENT)
    job = bulk.upsert(records=rows, external_id_field=EXT, wait=0)[0]["job_id"]
    failed = bulk.get_all_ingest_records(job)["failedRecords"]
    assert sorted(r["Name"] for r in failed) == ["first", "second"]
    assert all("Duplicate external id specified" in r["sf__Error"] for r in failed)


def test_delimiter_and_line_ending_options(sf: Any) -> None:
    bulk = sf.bulk2.Account
    summary = bulk.insert(records=[{"Name": "Pipe|Co", "AccountNumber": "P1"}, {"Name": "Plain", "AccountNumber": "P2"}],
                          column_delimiter="SEMICOLON", line_ending="CRLF", wait=0)
    assert summary[0]["numberRecordsFailed"] == 0
    text = bulk.get_successful_records(summary[0]["job_id"])
    assert text.startswith('"sf__Id";"sf__Created";')
    lines = text.split("\r\n")
    assert lines[-1] == "" and len(lines) == 4  # header, two rows, all CRLF-terminated
    assert any('"Pipe|Co"' in line and '"P1"' in line for line in lines)


def test_update_and_delete_by_id(sf: Any) -> None:
    ids = _accounts(sf, 3)
    sf.bulk2.Account.update(records=[{"Id": ids[0], "Name": "Renamed"}], wait=0)
    assert sf.query(f"SELECT Name FROM Account WHERE Id = '{ids[0]}'")["records"][0]["Name"] == "Renamed"
    summary = sf.bulk2.Account.delete(records=[{"Id": ids[1]}, {"Id": ids[2]}], wait=0)
    assert summary[0]["numberRecordsFailed"] == 0
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1


def test_abort_list_and_delete_jobs(raw: Raw) -> None:
    job = raw.job({"object": "Account", "operation": "insert"}, b"Name\nNever\n", close=False)
    assert raw.call("PATCH", f"ingest/{job}", {"state": "Aborted"}).json()["state"] == "Aborted"
    assert _rows(raw.call("GET", f"ingest/{job}/unprocessedrecords").text) == [{"Name": "Never"}]
    listed = raw.call("GET", "ingest").json()
    assert listed["done"] is True and [j["id"] for j in listed["records"]] == [job]
    assert listed["records"][0]["jobType"] == "V2Ingest"
    deleted = raw.call("DELETE", f"ingest/{job}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert raw.call("GET", f"ingest/{job}").status_code == 404


def test_calls_and_rows_are_counted(sf: Any, org: Org) -> None:
    before = org.limits()["DailyBulkApiBatches"]["Remaining"]
    sf.bulk2.Account.insert(records=[{"Name": "A"}, {"Name": "B"}], wait=0)
    assert org.counters["bulk2"] >= 4  # create, upload, close, poll
    assert org.counters["records_ingested"] == 2
    assert org.limits()["DailyBulkApiBatches"]["Remaining"] == before - 1


# ---------------------------------------------------------------------- job states


def test_job_stays_in_progress_for_n_polls(raw: Raw, org: Org) -> None:
    org.faults.update({"bulk_job_in_progress_polls": 2})
    job = raw.job({"object": "Account", "operation": "insert"}, b"Name\nSlow\n")
    states = [raw.call("GET", f"ingest/{job}").json()["state"] for _ in range(3)]
    assert states == ["InProgress", "InProgress", "JobComplete"]


def test_simple_salesforce_waits_through_in_progress(sf: Any, org: Org) -> None:
    org.faults.update({"bulk_job_in_progress_polls": 2})
    summary = sf.bulk2.Account.insert(records=[{"Name": "Patient"}], wait=0)
    assert summary[0]["numberRecordsProcessed"] == 1


def test_failed_job(sf: Any, raw: Raw, org: Org) -> None:
    org.faults.update({"bulk_job_fail": {"object": "Account", "message": "InvalidBatch : simulated", "times": 2}})
    with pytest.raises(SalesforceOperationError, match="InvalidBatch : simulated"):
        sf.bulk2.Account.insert(records=[{"Name": "Doomed"}], wait=0)
    job = raw.job({"object": "Account", "operation": "insert"}, b"Name\nX\nY\n")
    info = raw.call("GET", f"ingest/{job}").json()
    assert (info["state"], info["errorMessage"], info["numberRecordsProcessed"]) == ("Failed", "InvalidBatch : simulated", 0)
    assert _rows(raw.call("GET", f"ingest/{job}/unprocessedrecords").text) == [{"Name": "X"}, {"Name": "Y"}]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


# ----------------------------------------------------------------------- bad input


def _failed_with(raw: Raw, spec: dict[str, Any], data: bytes) -> str:
    job = raw.job(spec, data)
    info = raw.call("GET", f"ingest/{job}").json()
    assert info["state"] == "Failed", info
    return str(info["errorMessage"])


def test_bad_csv_fails_the_job(raw: Raw) -> None:
    insert = {"object": "Account", "operation": "insert"}
    assert "Found 3 columns in line 3" in _failed_with(raw, insert, b"Name,AccountNumber\nA,1\nB,2,extra\n")
    assert _failed_with(raw, insert, b"Name,Bogus__c\nA,1\n") == "InvalidBatch : Field name not found : Bogus__c"
    assert _failed_with(raw, insert, b"Name\r\nA\r\n") == (
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF")
    assert "Failed to parse CSV" in _failed_with(raw, insert, b'Name\n"unterminated\n')
    upsert = {"object": SLI, "operation": "upsert", "externalIdFieldName": EXT}
    bad_rel = _failed_with(raw, upsert, f"{EXT},vlocity_cmt__StatementId__r.Name__x\nL,S\n".encode())
    assert bad_rel.startswith("InvalidBatch : Field name not found")


def test_bad_requests_get_salesforce_errors(raw: Raw) -> None:
    def error(resp: requests.Response) -> tuple[int, str]:
        body = resp.json()
        assert isinstance(body, list) and set(body[0]) == {"errorCode", "message"}
        return resp.status_code, body[0]["errorCode"]

    assert error(raw.call("POST", "ingest", {"object": "Nope__c", "operation": "insert"})) == (400, "INVALIDJOB")
    assert error(raw.call("POST", "ingest", {"object": "Account", "operation": "merge"})) == (400, "INVALIDJOB")
    assert error(raw.call("POST", "ingest", {"object": "Account", "operation": "upsert"})) == (400, "INVALIDJOB")
    bad_ext = raw.call("POST", "ingest", {"object": "Account", "operation": "upsert", "externalIdFieldName": "Phone"})
    assert "does not match an External ID" in bad_ext.json()[0]["message"]
    assert error(raw.call("POST", "ingest", "{not json")) == (400, "JSON_PARSER_ERROR")
    assert error(raw.call("POST", "ingest", {"object": "Account", "operation": "insert", "columnDelimiter": "X"})) == (
        400, "JSON_PARSER_ERROR")
    assert error(raw.call("GET", "ingest/7508d00000000ZZAAA")) == (404, "NOT_FOUND")

    job = raw.job({"object": "Account", "operation": "insert"}, close=False)
    assert error(raw.call("PUT", f"ingest/{job}/batches", b'{"Name": "x"}', "application/json")) == (
        415, "UNSUPPORTED_MEDIA_TYPE")
    assert raw.call("PUT", f"ingest/{job}/batches", b"Name\nA\n", "text/csv").status_code == 201
    assert error(raw.call("PUT", f"ingest/{job}/batches", b"Name\nB\n", "text/csv")) == (400, "BULK_API_ERROR")
    assert raw.call("PATCH", f"ingest/{job}", {"state": "UploadComplete"}).status_code == 200
    assert error(raw.call("PATCH", f"ingest/{job}", {"state": "UploadComplete"})) == (409, "INVALIDJOBSTATE")


def test_oversized_upload_is_refused_without_reading_it(raw: Raw, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk2, "BULK2_MAX_UPLOAD_BYTES", 64)
    job = raw.job({"object": "Account", "operation": "insert"}, close=False)
    resp = raw.call("PUT", f"ingest/{job}/batches", b"Name\n" + b"x" * 100 + b"\n", "text/csv")
    assert resp.status_code == 413 and resp.json()[0]["errorCode"] == "EXCEEDED_MAX_SIZE_REQUEST"
    assert raw.call("PUT", f"ingest/{job}/batches", b"Name\nsmall\n", "text/csv").status_code == 201


def test_expired_session_is_rest_shaped(org: Org) -> None:
    session = inprocess_session(org)
    resp = session.post(f"{BASE}/ingest", data="{}", headers={"Authorization": "Bearer nope",
                                                               "Content-Type": "application/json"})
    assert resp.status_code == 401 and resp.json()[0]["errorCode"] == "INVALID_SESSION_ID"


# --------------------------------------------------------------------------- query


def test_query_pages_with_locators(sf: Any, raw: Raw) -> None:
    sf.bulk2.Account.insert(records=[{"Name": f"Acc {i:02d}", "AccountNumber": str(i)} for i in range(25)], wait=0)
    pages = list(sf.bulk2.Account.query("SELECT Name, AccountNumber FROM Account ORDER BY Name",
                                        max_records=10, wait=0))
    assert len(pages) == 3
    names = [row["Name"] for page in pages for row in _rows(page)]
    assert names == [f"Acc {i:02d}" for i in range(25)]
    assert all(page.startswith('"Name","AccountNumber"\n') for page in pages)

    created = raw.call("POST", "query", {"operation": "query", "query": "SELECT Id FROM Account"})
    assert created.json()["state"] == "UploadComplete"
    job = created.json()["id"]
    assert raw.call("GET", f"query/{job}").json()["state"] == "JobComplete"
    locator, sizes = "", []
    while True:
        params = {"maxRecords": 20, **({"locator": locator} if locator else {})}
        page = raw.call("GET", f"query/{job}/results", params=params)
        sizes.append(int(page.headers["Sforce-NumberOfRecords"]))
        locator = page.headers["Sforce-Locator"]
        if locator == "null":
            break
    assert sizes == [20, 5]
    assert raw.call("GET", f"query/{job}/results", params={"locator": "garbage!"}).status_code == 400


def test_query_all_sees_deleted_rows(sf: Any) -> None:
    ids = _accounts(sf, 2)
    sf.bulk2.Account.delete(records=[{"Id": ids[0]}], wait=0)
    live = "".join(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0))
    every = "".join(sf.bulk2.Account.query_all("SELECT Id, IsDeleted FROM Account", wait=0))
    assert len(_rows(live)) == 1 and len(_rows(every)) == 2
    assert sorted(r["IsDeleted"] for r in _rows(every)) == ["false", "true"]


def test_query_job_errors(raw: Raw, org: Org) -> None:
    bad = raw.call("POST", "query", {"operation": "query", "query": "SELECT Nope__c FROM Account"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"
    agg = raw.call("POST", "query", {"operation": "query", "query": "SELECT COUNT() FROM Account"})
    assert agg.status_code == 400
    org.faults.update({"bulk_job_in_progress_polls": 1})
    job = raw.call("POST", "query", {"operation": "query", "query": "SELECT Id FROM Account"}).json()["id"]
    assert raw.call("GET", f"query/{job}").json()["state"] == "InProgress"
    assert raw.call("GET", f"query/{job}/results").status_code == 400
    assert raw.call("GET", f"query/{job}").json()["state"] == "JobComplete"
    assert raw.call("DELETE", f"query/{job}").status_code == 204


def _many(n: int) -> Iterator[dict[str, str]]:
    for i in range(n):
        yield {EXT: f"L-{i}", REL: f"ST-{i % 3}"}


def test_internal_batches_contend_for_the_parent_lock(sf: Any, org: Org) -> None:
    account = _accounts(sf, 1)[0]
    _statements(sf, account, 3)
    org.faults.update({"lock_contention": {"enabled": True, "probability": 1.0}})
    bulk = sf.bulk2.__getattr__(SLI)
    summary = bulk.upsert(records=list(_many(25_000)), external_id_field=EXT, wait=0)[0]
    failed = bulk.get_all_ingest_records(summary["job_id"])["failedRecords"]
    # Every 10,000-row internal batch after the first writes under the same three
    # statements as the first one, so its rows lose the statements' locks.
    assert summary["numberRecordsFailed"] == 15_000 == len(failed)
    assert all(r["sf__Error"].startswith("UNABLE_TO_LOCK_ROW:") for r in failed)


# ---------------------------------------------------------------------- retention


def test_finished_jobs_beyond_the_retention_are_deleted_oldest_first() -> None:
    """Like Salesforce deleting week-old jobs: finished jobs' data is kept up to a budget, then
    the oldest go (their records stay in the org); the newest is always kept for its results."""
    org = Org(bulk_retention_mb=1500 / (1 << 20))  # ~1.5 KB: each job below keeps more than that
    sf, raw = inprocess_salesforce(org), Raw(org)
    jobs = []
    for n in range(3):
        results = sf.bulk2.Account.insert(records=[{"Name": f"Acct {n}-{i}"} for i in range(20)], wait=0)
        assert results[0]["numberRecordsProcessed"] == 20
        jobs.append(results[0]["job_id"])
    assert [raw.call("GET", f"ingest/{j}").status_code for j in jobs] == [404, 404, 200]
    assert raw.call("GET", f"ingest/{jobs[0]}/successfulResults").json()[0]["errorCode"] == "NOT_FOUND"
    assert len(_rows(raw.call("GET", f"ingest/{jobs[2]}/successfulResults").text)) == 20
    assert org.counters["bulk_jobs_expired"] == 2
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 60  # every record stays loaded


def test_jobs_are_kept_within_the_default_retention(sf: Any, raw: Raw, org: Org) -> None:
    jobs = [sf.bulk2.Account.insert(records=[{"Name": f"A{n}"}], wait=0)[0]["job_id"] for n in range(3)]
    assert all(raw.call("GET", f"ingest/{j}").status_code == 200 for j in jobs)
    assert org.counters["bulk_jobs_expired"] == 0
    assert bulk2.store_for(org).retained_bytes > 0


def test_retention_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFSYNC_EMULATOR_BULK_RETENTION_MB", "0.5")
    assert Org().bulk_retention_bytes == 1 << 19
    monkeypatch.setenv("SFSYNC_EMULATOR_BULK_RETENTION_MB", "lots")
    with pytest.raises(ValueError, match="SFSYNC_EMULATOR_BULK_RETENTION_MB"):
        Org()
