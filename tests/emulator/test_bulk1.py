"""Bulk API 1.0 on the emulator, through the unmodified clients: salesforce-bulk (XML jobs,
CSV batches, module-level ``requests``) and simple-salesforce's ``sf.bulk`` (JSON)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from salesforce_bulk import CsvDictsAdapter, SalesforceBulk
from salesforce_bulk.salesforce_bulk import BulkApiError, BulkBatchFailed

from sfsync.emulator import auth
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, inprocess_salesforce, route_requests

SLI = "vlocity_cmt__StatementLineItem__c"
STATEMENT = "vlocity_cmt__Statement__c"
EXT = "vlocity_cmt__ExternalID__c"
REL = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"
ASYNC = f"https://{DEFAULT_HOST}/services/async/59.0"


@pytest.fixture
def org() -> Org:
    return Org()


@pytest.fixture
def token(org: Org) -> str:
    return auth.new_session(org, source="test", expires=False)


@pytest.fixture
def bulk(org: Org, token: str) -> Iterator[SalesforceBulk]:
    with route_requests(org):
        yield SalesforceBulk(sessionId=token, host=f"https://{DEFAULT_HOST}", API_version="59.0")


@pytest.fixture
def sf(org: Org) -> Any:
    return inprocess_salesforce(org)


def _csv(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _statements(bulk: SalesforceBulk, n: int) -> None:
    job = bulk.create_insert_job("Account", contentType="CSV")
    batch = bulk.post_batch(job, _csv([{"Name": "Owner"}]))
    assert bulk.is_batch_done(batch)
    account = bulk.get_batch_results(batch)[0].id
    job = bulk.create_upsert_job(STATEMENT, external_id_name=EXT, contentType="CSV")
    rows = [{EXT: f"ST-{i}", "Name": f"Statement {i}", "vlocity_cmt__AccountId__c": account} for i in range(n)]
    batch = bulk.post_batch(job, _csv(rows))
    assert bulk.is_batch_done(batch)
    assert all(r.success == "true" for r in bulk.get_batch_results(batch))


# ------------------------------------------------------------------ salesforce-bulk


def test_xml_job_with_csv_batches_results_and_status(bulk: SalesforceBulk, org: Org) -> None:
    _statements(bulk, 2)
    job = bulk.create_upsert_job(SLI, external_id_name=EXT, contentType="CSV")
    first = bulk.post_batch(job, CsvDictsAdapter(iter([{EXT: "L-1", REL: "ST-0"}, {EXT: "L-2", REL: "ST-9"}])))
    second = bulk.post_batch(job, CsvDictsAdapter(iter([{EXT: "L-3", REL: "ST-1"}])))
    bulk.close_job(job)
    assert bulk.is_batch_done(first) and bulk.is_batch_done(second)

    results = bulk.get_batch_results(first)
    assert [r.success for r in results] == ["true", "false"]
    assert results[0].created == "true" and results[0].id.startswith(org.schema.key_prefix(SLI))
    assert results[1].id == ""
    assert results[1].error.startswith("INVALID_FIELD:Foreign key external ID: ST-9 not found")
    assert bulk.get_batch_results(second)[0].success == "true"

    status = bulk.job_status(job)
    assert status["state"] == "Closed" and status["numberBatchesCompleted"] == "2"
    assert status["numberRecordsProcessed"] == "3" and status["numberRecordsFailed"] == "1"
    assert [b["id"] for b in bulk.get_batch_list(job)] == [first, second]


def test_csv_results_are_exact(bulk: SalesforceBulk, token: str) -> None:
    job = bulk.create_insert_job("Account", contentType="CSV")
    batch = bulk.post_batch(job, b"Name,AccountNumber\nAcme,1\n,2\n")
    assert bulk.is_batch_done(batch)
    resp = requests.get(f"{ASYNC}/job/{job}/batch/{batch}/result", headers={"X-SFDC-Session": token})
    assert resp.headers["Content-Type"] == "text/csv"
    lines = resp.text.splitlines()
    assert lines[0] == '"Id","Success","Created","Error"'
    assert lines[1].endswith('","true","true",""')
    assert lines[2] == '"","false","false","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"'
    request = requests.get(f"{ASYNC}/job/{job}/batch/{batch}/request", headers={"X-SFDC-Session": token})
    assert request.content == b"Name,AccountNumber\nAcme,1\n,2\n"


def test_query_job(bulk: SalesforceBulk) -> None:
    _statements(bulk, 3)
    job = bulk.create_query_job(STATEMENT, contentType="CSV")
    batch = bulk.query(job, f"SELECT {EXT}, Name FROM {STATEMENT} ORDER BY {EXT}")
    bulk.close_job(job)
    assert bulk.is_batch_done(batch)
    pages = [page.read().decode() for page in bulk.get_all_results_for_query_batch(batch)]
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert [r[EXT] for r in rows] == ["ST-0", "ST-1", "ST-2"]
    assert pages[0].startswith(f'"{EXT}","Name"\n')

    empty = bulk.create_query_job(STATEMENT, contentType="CSV")
    batch = bulk.query(empty, f"SELECT Id FROM {STATEMENT} WHERE Name = 'none'")
    assert bulk.is_batch_done(batch)
    assert [p.read() for p in bulk.get_all_results_for_query_batch(batch)] == [b"Records not found for this query"]

    as_json = bulk.create_query_job(STATEMENT, contentType="JSON")
    batch = bulk.query(as_json, f"SELECT Name FROM {STATEMENT} WHERE {EXT} = 'ST-1'")
    assert bulk.is_batch_done(batch)
    records = json.loads(next(bulk.get_all_results_for_query_batch(batch)).read())
    assert records[0]["Name"] == "Statement 1" and records[0]["attributes"]["type"] == STATEMENT


def test_query_batch_with_bad_soql_fails(bulk: SalesforceBulk) -> None:
    job = bulk.create_query_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Nope__c FROM Account")
    with pytest.raises(BulkBatchFailed) as failure:
        bulk.is_batch_done(batch)
    assert failure.value.state_message.startswith("InvalidBatch : Failed to process query: INVALID_FIELD")


# ------------------------------------------------------------- simple-salesforce (JSON)


def test_simple_salesforce_json_upsert_serial_with_relationships(sf: Any, org: Org, bulk: SalesforceBulk) -> None:
    _statements(bulk, 2)
    rows = [
        {EXT: "J-1", "vlocity_cmt__StatementId__r": {EXT: "ST-0"}, "vlocity_cmt__CurrencyAmount__c": 12.5},
        {EXT: "J-2", "vlocity_cmt__StatementId__r": {EXT: "ST-1"}, "vlocity_cmt__Category__c": "Nope"},
        {EXT: "J-3", "vlocity_cmt__StatementId__r": {EXT: "ST-1"}, "vlocity_cmt__CurrencyAmount__c": None},
    ]
    results = sf.bulk.__getattr__(SLI).upsert(rows, EXT, batch_size=2, use_serial=True)
    assert [r["success"] for r in results] == [True, False, True]
    assert results[0]["created"] is True and results[0]["errors"] == []
    assert results[1]["id"] is None
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert org.counters["bulk1"] > 0

    again = sf.bulk.__getattr__(SLI).upsert(rows[:1], EXT, use_serial=True)
    assert again[0]["created"] is False and again[0]["id"] == results[0]["id"]
    found = sf.bulk.__getattr__(SLI).query(f"SELECT {EXT}, {REL} FROM {SLI} ORDER BY {EXT}")
    assert [(r[EXT], r["vlocity_cmt__StatementId__r"][EXT]) for r in found] == [("J-1", "ST-0"), ("J-3", "ST-1")]


def test_simple_salesforce_json_job_info(sf: Any, token: str, org: Org) -> None:
    headers = {"X-SFDC-Session": token, "Content-Type": "application/json"}
    with route_requests(org):
        job = requests.post(f"{ASYNC}/job", headers=headers,
                            data=json.dumps({"operation": "insert", "object": "Account", "contentType": "JSON",
                                             "concurrencyMode": 1}))
        assert job.status_code == 201 and job.headers["Content-Type"] == "application/json"
        info = job.json()
        assert (info["state"], info["concurrencyMode"], info["apiVersion"]) == ("Open", "Serial", 59.0)
        batch = requests.post(f"{ASYNC}/job/{info['id']}/batch", headers=headers, data='[{"Name": "J"}]').json()
        assert batch["state"] == "Queued"
        listed = requests.get(f"{ASYNC}/job/{info['id']}/batch", headers=headers).json()
        assert [b["state"] for b in listed["batchInfo"]] == ["Completed"]


# ---------------------------------------------------------------------------- faults


def _line_items(start: int, n: int) -> list[dict[str, str]]:
    return [{EXT: f"L-{i}", REL: f"ST-{i % 2}"} for i in range(start, start + n)]


@pytest.mark.parametrize("mode, failures", [("Parallel", 5), ("Serial", 0)])
def test_parent_lock_contention_parallel_vs_serial(bulk: SalesforceBulk, org: Org, mode: str, failures: int) -> None:
    _statements(bulk, 2)
    org.faults.update({"lock_contention": {"enabled": True, "probability": 1.0}})
    job = bulk.create_upsert_job(SLI, external_id_name=EXT, contentType="CSV", concurrency=mode)
    batches = [bulk.post_batch(job, _csv(_line_items(0, 5))), bulk.post_batch(job, _csv(_line_items(5, 5)))]
    bulk.close_job(job)
    results = [r for b in batches if bulk.is_batch_done(b) for r in bulk.get_batch_results(b)]
    locked = [r for r in results if r.success == "false"]
    assert len(locked) == failures
    assert all(r.error.startswith("UNABLE_TO_LOCK_ROW:") for r in locked)
    # The first batch holds the statements' locks; only the second one's rows lose.
    assert all(r.success == "true" for r in results[:5])


def test_batch_stays_in_progress_for_n_polls(bulk: SalesforceBulk, org: Org) -> None:
    org.faults.update({"bulk_job_in_progress_polls": 2})
    job = bulk.create_insert_job("Account", contentType="CSV")
    batch = bulk.post_batch(job, b"Name\nSlow\n")
    assert [bulk.is_batch_done(batch) for _ in range(3)] == [False, False, True]


def test_failed_batch_has_state_message(bulk: SalesforceBulk, org: Org) -> None:
    org.faults.update({"bulk_job_fail": {"message": "InvalidBatch : simulated"}})
    job = bulk.create_insert_job("Account", contentType="CSV")
    batch = bulk.post_batch(job, b"Name\nDoomed\n")
    with pytest.raises(BulkBatchFailed) as failure:
        bulk.is_batch_done(batch)
    assert failure.value.state_message == "InvalidBatch : simulated"
    assert bulk.batch_status(batch)["numberRecordsProcessed"] == "0"


def test_abort_leaves_queued_batches_not_processed(bulk: SalesforceBulk) -> None:
    job = bulk.create_insert_job("Account", contentType="CSV")
    batch = bulk.post_batch(job, b"Name\nNever\n")
    bulk.abort_job(job)
    assert bulk.job_state(job) == "Aborted"
    with pytest.raises(BulkBatchFailed):
        bulk.is_batch_done(batch)
    assert bulk.batch_state(batch) == "NotProcessed"


# ------------------------------------------------------------------------- bad input


def _xml_error(resp: requests.Response) -> tuple[int, str]:
    assert resp.headers["Content-Type"] == "application/xml"
    code = resp.text.split("<exceptionCode>")[1].split("</exceptionCode>")[0]
    return resp.status_code, code


def test_bad_requests(org: Org, token: str, bulk: SalesforceBulk) -> None:
    xml = {"X-SFDC-Session": token, "Content-Type": "application/xml; charset=UTF-8"}
    assert _xml_error(requests.post(f"{ASYNC}/job", headers={**xml, "X-SFDC-Session": "expired"}, data="")) == (
        400, "InvalidSessionId")
    as_json = requests.get(f"{ASYNC}/job/x", headers={"X-SFDC-Session": "expired", "Content-Type": "application/json"})
    assert as_json.status_code == 400 and as_json.json() == {"exceptionCode": "InvalidSessionId",
                                                             "exceptionMessage": "Invalid session id"}
    assert _xml_error(requests.post(f"{ASYNC}/job", headers=xml, data="<jobInfo")) == (400, "InvalidXML")
    with pytest.raises(BulkApiError, match="Unable to find object: Nope__c"):
        bulk.create_insert_job("Nope__c")
    with pytest.raises(BulkApiError, match="External ID was blank"):
        bulk.create_job("Account", "upsert")
    assert _xml_error(requests.get(f"{ASYNC}/job/7508d00000000ZZAAA", headers=xml)) == (400, "InvalidJob")

    job = bulk.create_insert_job("Account", contentType="CSV")
    wrong = requests.post(f"{ASYNC}/job/{job}/batch", headers={**xml, "Content-Type": "application/json"}, data="[]")
    assert wrong.status_code == 400 and "InvalidBatch" in wrong.text
    unknown = bulk.post_batch(job, b"Name,Bogus__c\nA,1\n")
    ragged = bulk.post_batch(job, b"Name,AccountNumber\nA,1\nB\n")
    for batch, message in ((unknown, "InvalidBatch : Field name not found : Bogus__c"), (ragged, "Failed to parse CSV")):
        with pytest.raises(BulkBatchFailed) as failure:
            bulk.is_batch_done(batch)
        assert message in failure.value.state_message
    bulk.close_job(job)
    with pytest.raises(BulkApiError, match="InvalidJobState"):
        bulk.post_batch(job, b"Name\nLate\n")


def test_bad_json_batch_fails(org: Org, token: str) -> None:
    headers = {"X-SFDC-Session": token, "Content-Type": "application/json"}
    with route_requests(org):
        job = requests.post(f"{ASYNC}/job", headers=headers,
                            data=json.dumps({"operation": "insert", "object": "Account", "contentType": "JSON"})).json()
        batch = requests.post(f"{ASYNC}/job/{job['id']}/batch", headers=headers, data="[{not json").json()
        status = requests.get(f"{ASYNC}/job/{job['id']}/batch/{batch['id']}", headers=headers).json()
    assert status["state"] == "Failed" and status["stateMessage"].startswith("InvalidBatch")


# ------------------------------------------------------------------- real loopback HTTPS


def _self_signed(tmp: Any) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_over_loopback_https_with_chunked_uploads(org: Org, token: str, tmp_path: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from simple_salesforce import Salesforce
    from werkzeug.serving import make_server

    from sfsync.emulator.app import create_app

    cert, key = _self_signed(tmp_path)
    server = make_server("127.0.0.1", 0, create_app(org), threaded=True, ssl_context=(cert, key))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_port}"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
        bulk = SalesforceBulk(sessionId=token, host=f"https://{host}", API_version="59.0")
        job = bulk.create_insert_job("Account", contentType="CSV")
        # CsvDictsAdapter is a generator: requests sends it with Transfer-Encoding: chunked.
        batch = bulk.post_batch(job, CsvDictsAdapter(iter([{"Name": f"Socket {i}"} for i in range(50)])))
        bulk.close_job(job)
        assert bulk.is_batch_done(batch)
        assert [r.success for r in bulk.get_batch_results(batch)] == ["true"] * 50

        session = requests.Session()
        session.verify = cert
        sf = Salesforce(instance_url=f"https://{host}", session_id=token, session=session, version="59.0")
        summary = sf.bulk2.Account.upsert(records=[{"Name": "Bulk2 over TLS"}], external_id_field="Id", wait=0)
        assert summary[0]["numberRecordsFailed"] == 0
        pages = list(sf.bulk2.Account.query("SELECT Name FROM Account", max_records=20, wait=0))
        assert len(pages) == 3 and sum(len(p.splitlines()) - 1 for p in pages) == 51
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_closed_jobs_beyond_the_retention_are_deleted_oldest_first(token: str) -> None:
    org = Org(bulk_retention_mb=600 / (1 << 20))  # each closed job below keeps more than 600 bytes
    with route_requests(org):
        bulk = SalesforceBulk(sessionId=auth.new_session(org, source="test", expires=False),
                              host=f"https://{DEFAULT_HOST}", API_version="59.0")
        jobs = []
        for n in range(3):
            job = bulk.create_insert_job("Account", contentType="CSV")
            batch = bulk.post_batch(job, _csv([{"Name": f"Acct {n}-{i}"} for i in range(10)]))
            bulk.close_job(job)
            assert bulk.is_batch_done(batch) and len(bulk.get_batch_results(batch)) == 10
            jobs.append(job)
        open_job = bulk.create_insert_job("Account", contentType="CSV")  # open jobs are never deleted
        bulk.post_batch(open_job, _csv([{"Name": "Late"}]))
        job4 = bulk.create_insert_job("Account", contentType="CSV")
        bulk.post_batch(job4, _csv([{"Name": f"More {i}"} for i in range(10)]))
        bulk.close_job(job4)
        statuses = []
        for job in [*jobs, open_job]:
            try:
                statuses.append(bulk.job_status(job)["state"])
            except Exception as exc:  # salesforce-bulk raises on the InvalidJob error document
                statuses.append("InvalidJob" if "InvalidJob" in str(exc) else repr(exc))
    assert statuses == ["InvalidJob", "InvalidJob", "InvalidJob", "Open"]
    assert org.counters["bulk_jobs_expired"] == 3
