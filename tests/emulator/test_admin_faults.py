"""Admin endpoints and fault knobs, seen through HTTP and the unmodified client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import SalesforceError, SalesforceRefusedRequest

from sfsync.emulator.faults import Faults
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST

BASE = f"https://{DEFAULT_HOST}"

ADMIN = f"{BASE}/__emulator"


def test_admin_records_counters_reset(sf: Any, http: requests.Session, org: Org, account_id: str) -> None:
    dump = http.get(f"{ADMIN}/records/account").json()
    assert dump["sobject"] == "Account" and dump["totalSize"] == 1 and dump["records"][0]["Id"] == account_id
    counters = http.get(f"{ADMIN}/counters").json()
    assert counters["counters"]["rest"] >= 1
    assert counters["limits"]["DailyApiRequests"]["Remaining"] < counters["limits"]["DailyApiRequests"]["Max"]
    assert http.post(f"{ADMIN}/reset").json() == {"reset": True}
    assert http.get(f"{ADMIN}/records/Account").json()["totalSize"] == 0
    assert http.get(f"{ADMIN}/records/Nope").status_code == 404


def test_admin_seed_and_session(http: requests.Session, org: Org) -> None:
    seeded = http.post(f"{ADMIN}/seed", json={"sobject": "Account", "records": [{"Name": "Seeded", "AccountNumber": "S-1"}]})
    assert seeded.json()[0]["success"] is True
    token = http.post(f"{ADMIN}/session").json()["access_token"]
    resp = http.get(f"{BASE}/services/data/v59.0/sobjects/Account/AccountNumber/S-1",
                    headers={"Authorization": f"Bearer {token}"})
    assert resp.json()["Name"] == "Seeded"
    assert org.counters["rest"] == 1


def test_admin_faults_live(http: requests.Session, org: Org) -> None:
    assert http.get(f"{ADMIN}/faults").json()["lock_error_rate"] == 0.0
    put = http.put(f"{ADMIN}/faults", json={"seed": 7, "lock_error_rate": 0.5})
    assert put.status_code == 200 and org.faults.lock_error_rate == 0.5
    http.patch(f"{ADMIN}/faults", json={"bulk_job_in_progress_polls": 2})
    assert org.faults.lock_error_rate == 0.5 and org.faults.in_progress_polls() == 2
    http.put(f"{ADMIN}/faults", json={})
    assert org.faults.lock_error_rate == 0.0
    bad = http.put(f"{ADMIN}/faults", json={"nonsense": 1})
    assert bad.status_code == 400 and "nonsense" in bad.json()[0]["message"]


def test_lock_error_rate_is_deterministic(org: Org) -> None:
    def run() -> list[bool]:
        org.reset()
        org.faults.update({"seed": 3, "lock_error_rate": 0.5}, replace=True)
        results = org.dml("Account", "insert", [{"Name": f"A{i}"} for i in range(40)])
        return [r.success for r in results]

    first, second = run(), run()
    assert first == second and 0 < first.count(False) < 40


def test_http_503_burst(sf: Any, org: Org) -> None:
    org.faults.update({"http_503_burst": {"start_at_call": 2, "count": 2}})
    sf.query("SELECT COUNT() FROM Account")
    for _ in range(2):
        with pytest.raises(SalesforceError) as exc:
            sf.query("SELECT COUNT() FROM Account")
        assert exc.value.status == 503
        assert exc.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_daily_request_limit(sf: Any, org: Org) -> None:
    org.faults.update({"daily_request_limit": 3})
    for _ in range(3):
        sf.limits()
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.limits()
    assert exc.value.status == 403
    assert exc.value.content[0] == {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}


def test_concurrent_upsert_loses_the_race_for_a_new_external_id(sf: Any, org: Org) -> None:
    org.faults.update({"concurrent_upsert": {"object": "Account", "times": 1}})
    with pytest.raises(SalesforceError) as exc:
        sf.Account.upsert("AccountNumber/N-1", {"Name": "Acme", "Phone": "555"})
    assert exc.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    (first,) = org.records("Account")  # the other writer's record: External ID and required fields only
    assert exc.value.content[0]["message"] == (
        f"duplicate value found: AccountNumber duplicates value on record with id: {first['Id']}")
    assert first["AccountNumber"] == "N-1" and first["Name"] == "Acme" and first.get("Phone") is None
    assert sf.Account.upsert("AccountNumber/N-1", {"Name": "Acme", "Phone": "555"}) == 200  # updated: times used up
    assert [(r["Id"], r["Phone"]) for r in org.records("Account")] == [(first["Id"], "555")]
    assert sf.Account.upsert("AccountNumber/N-2", {"Name": "Other"}) == 201
    assert not Faults.from_dict({"concurrent_upsert": {"object": "Case"}}).upsert_raced("Account")


def test_bulk_job_fail_rule() -> None:
    faults = Faults.from_dict({"bulk_job_fail": {"object": "Account", "operation": "insert", "message": "boom"}})
    assert faults.job_failure("Case", "insert") is None
    assert faults.job_failure("account", "INSERT") == "boom"
    assert faults.job_failure("Account", "insert") is None  # times defaults to 1


def test_faults_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("seed: 1\nsession_expire_after_calls: 5\nlock_contention: {enabled: true, probability: 1.0}\n")
    faults = Faults.load(path)
    assert faults.session_expire_after_calls == 5 and faults.should_lock("a3T", True)
    path.write_text("bogus: 1\n")
    with pytest.raises(ValueError, match="bogus"):
        Faults.load(path)
