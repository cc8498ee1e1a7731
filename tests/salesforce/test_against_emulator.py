"""The Salesforce layer against the emulator, in-process, with the unmodified clients.

simple-salesforce and salesforce-bulk talk to :class:`sfsync.emulator.Org` through
``sfsync.emulator.testing.route_requests`` (every ``requests`` call to the emulator's host,
module-level ones included). Fault knobs rehearse what real orgs do to a load.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr

from sfsync.config import SalesforceSettings
from sfsync.errors import BudgetExhausted, TerminalError
from sfsync.salesforce import BudgetGuard, RetryPolicy, SalesforceClient, connect


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


pytestmark = pytest.mark.skipif(
    not (_has("sfsync.emulator.testing") and _has("sfsync.emulator.rest") and _has("sfsync.emulator.bulk2") and _has("sfsync.emulator.bulk1")),
    reason="the emulator's in-process adapter, REST or Bulk modules are not there yet",
)

STATEMENT = "vlocity_cmt__Statement__c"
ITEM = "vlocity_cmt__StatementLineItem__c"
EXT = "vlocity_cmt__ExternalID__c"
PARENT = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"


@pytest.fixture
def org() -> Any:
    from sfsync.emulator.org import Org

    return Org()


@pytest.fixture
def routed(org: Any) -> Iterator[str]:
    from sfsync.emulator.testing import DEFAULT_HOST, route_requests

    with route_requests(org):
        yield f"https://{DEFAULT_HOST}"


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _settings(org: Any, url: str, tmp_path: Any) -> SalesforceSettings:
    creds = org.credentials
    return SalesforceSettings(
        login_url=url,
        username=creds["username"],
        password=SecretStr(creds["password"]),
        security_token=SecretStr(creds["security_token"]),
        client_id=creds["client_id"],
        client_secret=SecretStr(creds["client_secret"]),
        describe_cache_dir=tmp_path / "describe",
    )


@pytest.fixture
def client(org: Any, routed: str, tmp_path: Any, sleeps: list[float]) -> SalesforceClient:
    return connect(_settings(org, routed, tmp_path), policy=RetryPolicy(sleep=sleeps.append, base_delay=0.01, first_poll=0.0))


@pytest.fixture
def statements(client: SalesforceClient) -> list[str]:
    """Two accounts with 20 statements between them; returns the statements' external IDs."""
    accounts = client.write("Account", "insert", pd.DataFrame({"Name": ["Acme", "Globex"]}))
    assert all(r.success for r in accounts), accounts
    ext = [f"ST-{i:03d}" for i in range(20)]
    frame = pd.DataFrame({"Name": ext, EXT: ext, "vlocity_cmt__AccountId__c": [accounts[i % 2].id for i in range(20)]})
    results = client.write(STATEMENT, "upsert", frame, external_id_field=EXT)
    assert all(r.success for r in results), [r for r in results if not r.success][:3]
    return ext


def items(n: int, parents: list[str], *, bad_every: int = 0, orphan_every: int = 0) -> pd.DataFrame:
    """Line items; every ``bad_every``-th has a refused picklist value, every
    ``orphan_every``-th a parent that does not exist."""
    category = ["Usage" if not bad_every or i % bad_every else "Bogus" for i in range(n)]
    parent = [("ST-NOPE" if orphan_every and i % orphan_every == 1 else parents[i % len(parents)]) for i in range(n)]
    return pd.DataFrame(
        {EXT: [f"LI-{i:06d}" for i in range(n)], "vlocity_cmt__Amount__c": [str(i) for i in range(n)], "vlocity_cmt__Category__c": category, PARENT: parent},
        index=pd.RangeIndex(10, 10 + n),
    )


def _check_against_org(org: Any, frame: pd.DataFrame, results: pd.DataFrame) -> None:
    """Every successful row's Id is the org's record with that external ID; failed rows are absent."""
    for label, row in frame.iterrows():
        found = org.find_by(ITEM, EXT, row[EXT])
        if results.at[label, "success"]:
            assert found and found[0]["Id"] == results.at[label, "id"], (label, row[EXT])
        else:
            assert not found, (label, row[EXT])


def test_smart_api_choice(client, statements, org):
    small = client.write_frame(ITEM, "upsert", items(50, statements), external_id_field=EXT)
    assert small["success"].all() and client.calls["bulk2"] == 0 and client.calls["rest"] > 0
    big = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    assert big["success"].all() and client.calls["bulk2"] > 0 and client.calls["bulk1"] == 0
    assert big["created"].sum() == 2450  # the first 50 existed already
    serial = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT, serial=True)
    assert serial["success"].all() and not serial["created"].any() and client.calls["bulk1"] > 0


@pytest.mark.parametrize("api", ["rest", "bulk2", "bulk1"])
def test_row_results_match_input_rows_with_failures(client, statements, org, api):
    frame = items(300, statements, bad_every=7, orphan_every=11)
    results = client.write_frame(ITEM, "upsert", frame, external_id_field=EXT, api=api)
    bad = frame["vlocity_cmt__Category__c"] == "Bogus"
    orphan = frame[PARENT] == "ST-NOPE"
    assert (results.index == frame.index).all()
    assert not results.loc[bad | orphan, "success"].any() and results.loc[~(bad | orphan), "success"].all()
    assert results.loc[bad & ~orphan, "error_code"].eq("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST").all()
    assert results.loc[orphan & ~bad, "error_code"].isin(["INVALID_FIELD", "INVALID_CROSS_REFERENCE_KEY"]).all()
    assert results.loc[~results["success"], "message"].str.len().gt(0).all()
    _check_against_org(org, frame, results)


def test_lock_errors_are_retried_until_loaded(client, statements, org):
    org.faults.update({"seed": 3, "lock_error_rate": 0.05})
    frame = items(3000, statements)
    results = client.write_frame(ITEM, "upsert", frame, external_id_field=EXT, parent_column=PARENT)
    assert results["success"].all()
    assert results["retried"].gt(0).sum() > 50 and results["retried"].max() <= 2
    _check_against_org(org, frame.sample(200, random_state=1), results)


def test_session_expiry_mid_run(client, statements, org):
    org.faults.update({"session_expire_after_calls": 4})
    results = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    assert results["success"].all() and client.transport.relogins >= 1
    serial = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT, api="bulk1", batch_size=500)
    assert serial["success"].all()


def test_503_burst_is_ridden_out(client, statements, org, sleeps):
    org.faults.update({"http_503_burst": {"start_at_call": org.counters["http_calls"] + 2, "count": 3}})
    results = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    assert results["success"].all() and org.counters["http_503"] == 3


def test_budget_guard_stops_cleanly_and_the_rerun_completes(org, routed, tmp_path, statements):
    used = org.limits()["DailyApiRequests"]["Max"] - org.limits()["DailyApiRequests"]["Remaining"]
    org.faults.update({"daily_request_limit": 2 * (used + 4)})  # cap: limits + 3 writes
    client = connect(_settings(org, routed, tmp_path), policy=RetryPolicy(sleep=lambda s: None, first_poll=0.0), guard=BudgetGuard(0.5))
    frame = items(600, statements)
    with pytest.raises(BudgetExhausted) as info:
        for start in range(0, 600, 100):  # a job writing in slices, recording each
            client.write_frame(ITEM, "upsert", frame.iloc[start : start + 100], external_id_field=EXT)
    assert client.guard.estimated_used <= client.guard.cap
    assert len(info.value.results) == 0  # stopped between requests, not inside one
    loaded = sum(bool(org.find_by(ITEM, EXT, e)) for e in frame[EXT])
    assert loaded == 300  # limits() plus three writes fit under the cap
    org.faults.update({"daily_request_limit": None})
    rerun = connect(_settings(org, routed, tmp_path), policy=RetryPolicy(sleep=lambda s: None, first_poll=0.0))
    assert rerun.write_frame(ITEM, "upsert", frame, external_id_field=EXT, api="bulk2")["success"].all()


def test_failed_job_is_resent_once_then_terminal(client, statements, org):
    org.faults.update({"bulk_job_fail": {"object": ITEM, "times": 1, "message": "InvalidBatch : simulated failure"}})
    results = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    assert results["success"].all() and results["retried"].eq(1).all()
    org.faults.update({"bulk_job_fail": {"object": ITEM, "times": 2}})
    with pytest.raises(TerminalError, match="again"):
        client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)


def test_slow_jobs_are_polled_on_our_schedule(client, statements, org, sleeps):
    org.faults.update({"bulk_job_in_progress_polls": 3})
    results = client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    assert results["success"].all() and len(sleeps) >= 4 and max(sleeps) <= 3.0


def test_describe_and_queries(client, statements, org):
    describe = client.describe(ITEM)
    assert {f["name"] for f in describe["fields"]} >= {EXT, "vlocity_cmt__StatementId__c"}
    client.describe(ITEM)
    assert client.calls["rest"] >= 1
    client.write_frame(ITEM, "upsert", items(2500, statements), external_id_field=EXT)
    soql = f"SELECT Id, {EXT}, vlocity_cmt__StatementId__r.Name FROM {ITEM}"
    rest_rows = list(client.query(soql))
    assert len(rest_rows) == 2500
    bulk = pd.concat(list(client.query_bulk(soql)))
    assert len(bulk) == 2500 and set(bulk[EXT]) == {r[EXT] for r in rest_rows}
    frames = pd.concat(list(client.query_frames(soql)))
    assert len(frames) == 2500 and "vlocity_cmt__StatementId__r.Name" in frames.columns
    assert client.limits()["DailyApiRequests"]["Max"] > 0


def test_parent_lock_contention_is_resolved_by_grouping_and_serial_retries(client, statements, org):
    org.faults.update({"seed": 5, "lock_contention": {"enabled": True, "probability": 1.0}})
    frame = items(25_000, statements)  # several internal 10k batches touch every statement
    results = client.write_frame(ITEM, "upsert", frame, external_id_field=EXT, parent_column=PARENT)
    assert results["success"].all(), results["error_code"].value_counts()
    contended = results["retried"].gt(0)
    assert contended.any()
    serial = client.write_frame(ITEM, "upsert", frame, external_id_field=EXT, serial=True)
    assert serial["success"].all() and serial["retried"].eq(0).all()  # Serial mode never contends


@pytest.mark.parametrize("api", ["rest", "bulk2", "bulk1"])
def test_insert_update_delete_round_trip(client, org, api):
    names = [f"Customer {i % 40}" for i in range(120)]  # repeated names: inserts match on all columns
    frame = pd.DataFrame({"Name": names, "Site": ["HQ"] * 120})
    inserted = client.write_frame("Account", "insert", frame, api=api)
    assert inserted["success"].all() and inserted["created"].all() and inserted["id"].is_unique
    assert org.get("Account", inserted["id"].iloc[5])["Name"] == names[5]
    update = pd.DataFrame({"Id": inserted["id"], "Site": ["Branch"] * 120})
    update.loc[update.index[7], "Id"] = "001000000000000AAA"  # no such record
    updated = client.write_frame("Account", "update", update, api=api)
    assert updated.drop(index=update.index[7])["success"].all() and not updated.at[update.index[7], "success"]
    assert org.get("Account", inserted["id"].iloc[3])["Site"] == "Branch"
    deleted = client.write_frame("Account", "delete", update[["Id"]], api=api)
    assert deleted.drop(index=update.index[7])["success"].all() and not deleted.at[update.index[7], "success"]
    assert org.get("Account", inserted["id"].iloc[3]) is None


@pytest.mark.skipif(not _has("sfsync.emulator.server"), reason="the emulator's HTTPS server is not there yet")
def test_over_loopback_tls_with_the_connection_file(tmp_path):
    """``emulator: DIR`` end to end: HTTPS on loopback, its CA trusted by both clients."""
    from sfsync.emulator.org import Org
    from sfsync.emulator.server import run_in_thread

    org = Org()
    handle = run_in_thread(org, state_dir=tmp_path / "emu")
    try:
        client = connect(SalesforceSettings(emulator=tmp_path / "emu", describe_cache_dir=tmp_path / "d"), policy=RetryPolicy(first_poll=0.05))
        accounts = pd.DataFrame({"Name": [f"A{i}" for i in range(2100)]})
        assert client.write_frame("Account", "insert", accounts)["success"].all()  # Bulk 2.0
        ids = client.write_frame("Account", "insert", accounts.head(30), api="bulk1")  # salesforce-bulk
        assert ids["success"].all()
        assert len(list(client.query("SELECT Id FROM Account WHERE Name = 'A7'"))) == 2
        conn = handle.connection()
        jwt_settings = SalesforceSettings(
            login_url=conn["login_url"],
            auth="jwt",
            username=conn["username"],
            client_id=conn["client_id"],
            private_key_file=conn["private_key_file"],
            ca_bundle=conn["ca_bundle"],
            describe_cache_dir=tmp_path / "d",
        )
        assert connect(jwt_settings).limits()["DailyApiRequests"]["Max"] > 0
    finally:
        handle.stop()


@pytest.mark.skipif(not _has("sfsync.emulator.server"), reason="the emulator's HTTPS server is not there yet")
def test_untrusted_certificate_is_a_config_error(tmp_path):
    from sfsync.emulator.org import Org
    from sfsync.emulator.server import run_in_thread
    from sfsync.errors import ConfigError

    handle = run_in_thread(Org(), state_dir=tmp_path / "emu")
    try:
        conn = handle.connection()
        settings = SalesforceSettings(
            login_url=conn["login_url"],
            username=conn["username"],
            password=SecretStr(conn["password"]),
            security_token=SecretStr(conn["security_token"]),
            client_id=conn["client_id"],
            client_secret=SecretStr(conn["client_secret"]),
        )
        with pytest.raises(ConfigError, match="ca_bundle"):
            connect(settings)
    finally:
        handle.stop()
