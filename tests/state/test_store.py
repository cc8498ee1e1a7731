"""The state store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from sfsync.state import Reject, StateStore
from sfsync.state.migrate import current, head


def test_empty_database_is_upgraded_on_first_use(db_url: str) -> None:
    store = StateStore(db_url)
    assert current(store.engine) == head()
    assert set(store.table_counts()) >= {"runs", "record_state", "cursors", "files", "export_ledger",
                                         "rejects", "inbound_events", "run_locks"}
    # Opening again is a no-op, not a second migration.
    StateStore(db_url).close()
    store.close()


def test_run_lifecycle(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("load", ["acme", "tmf"], "cron", options={"full": True})
    run = store.get_run(rid)
    assert run and run.status == "running" and run.billers == ["acme", "tmf"] and run.trigger == "cron"
    store.finish_run(rid, "rejected", counts={"Statement": {"sent": 3, "rejected": 1}}, api_calls={"bulk2": 4})
    run = store.get_run(rid)
    assert run and run.status == "rejected" and run.finished_at is not None
    assert run.counts["Statement"]["rejected"] == 1 and run.api_calls == {"bulk2": 4}
    assert [r.id for r in store.list_runs(job="load")] == [rid]
    assert store.list_runs(job="export") == []


def test_record_state_bulk_upsert_and_lookup(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("load", ["b"])
    n = 60_000  # more than one write chunk and several lookup chunks
    assert not store.has_states("b", "Obj")
    store.put_states("b", "Obj", ((f"k{i}", None, i) for i in range(n)), rid)
    assert store.count_states("b", "Obj") == n and store.has_states("b", "Obj")
    assert not store.has_states("b", "Other") and not store.has_states("c", "Obj")
    found, ids, hashes = store.state_columns("b", "Obj", [f"k{i}" for i in range(0, n, 2)] + ["nope"])
    assert len(found) == n // 2 and dict(zip(found, hashes, strict=True))["k58000"] == 58_000
    # The same key twice in one call: the last one given wins (as row by row).
    store.put_states("b", "Obj", [("k3", "a01000000000003AAA", 30), ("k3", "a01000000000003AAA", 31)], rid)
    assert store.get_states("b", "Obj", ["k3"])["k3"].hash == 31
    # An update changes hash and Id; other billers' keys do not collide.
    store.put_states("b", "Obj", [("k1", "a01000000000001AAA", -5)], rid)
    store.put_states("other", "Obj", [("k1", None, 99)], rid)
    got = store.get_states("b", "Obj", ["k1", "k2", "missing"])
    assert got["k1"].sf_id == "a01000000000001AAA" and got["k1"].hash == -5
    assert got["k2"].hash == 2 and "missing" not in got
    assert sum(1 for _ in store.iter_states("b", "Obj")) == n
    # 64-bit hashes survive the round trip at both ends of the range.
    store.put_states("b", "Obj", [("big", None, 2**63 - 1), ("small", None, -(2**63))], rid)
    got = store.get_states("b", "Obj", ["big", "small"])
    assert got["big"].hash == 2**63 - 1 and got["small"].hash == -(2**63)
    assert store.forget_states("b", "Obj") == n + 2


def test_cursors_and_file_manifest(db_url: str) -> None:
    store = StateStore(db_url)
    assert store.get_cursor("b", "statements") is None
    store.set_cursor("b", "statements", {"ts": "2026-11-01T00:00:00Z", "id": "x"})
    store.set_cursor("b", "statements", {"ts": "2026-11-02T00:00:00Z", "id": "y"})
    assert store.get_cursor("b", "statements") == {"ts": "2026-11-02T00:00:00Z", "id": "y"}
    assert store.file_status("b", "st_202611.csv") is None
    store.mark_file("b", "st_202611.csv", 10, "abc")
    entry = store.file_status("b", "st_202611.csv")
    assert entry and entry.checksum == "abc" and entry.status == "processed"


def test_rejects_keep_source_and_payload(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("load", ["b"])
    store.add_rejects([Reject(rid, "b", "vlocity_cmt__Statement__c", "b:ST-1", "statements.csv:17", "salesforce",
                              "STRING_TOO_LONG", "Name: data value too large", {"Name": "x" * 100})])
    (r,) = store.list_rejects(rid)
    assert (r.source, r.code, r.payload["Name"]) == ("statements.csv:17", "STRING_TOO_LONG", "x" * 100)
    assert store.count_rejects(rid) == 1


def test_export_ledger_is_unique_per_record(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("export", ["b"])
    new = store.ledger_intend("b", "PA", [("a1", 1, "t1"), ("a2", 2, "t1")], rid)
    assert sorted(new) == ["a1", "a2"]
    # A second intent for the same record (a rerun after a crash) records nothing new.
    assert store.ledger_intend("b", "PA", [("a1", 1, "t2"), ("a3", 3, "t2")], rid) == ["a3"]
    store.ledger_update("b", "PA", "a1", status="accepted", biller_ref="PAY-9", attempt=True)
    e = store.ledger_get("b", "PA", ["a1"])["a1"]
    assert (e.status, e.biller_ref, e.attempts) == ("accepted", "PAY-9", 1)
    assert [x.sf_id for x in store.ledger_list(statuses=["pending"])] == ["a2", "a3"]


def test_inbound_events_dedupe(db_url: str) -> None:
    store = StateStore(db_url)
    assert store.record_event("msg_1", "webhook", "BA-1") is True
    assert store.record_event("msg_1", "webhook", "BA-1") is False
