"""The state store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from sfsync.state import Reject, StateStore, segments
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
    n = 60_000
    assert not store.has_states("b", "Obj")
    store.put_states("b", "Obj", ((f"k{i}", None, i) for i in range(n)), rid)
    assert store.count_states("b", "Obj") == n and store.has_states("b", "Obj")
    assert not store.has_states("b", "Other") and not store.has_states("c", "Obj")
    asked = [f"k{i}" for i in range(0, n, 2)] + ["nope"]
    p = store.probe_states("b", "Obj", asked)
    assert p.present.tolist() == [True] * (n // 2) + [False]
    assert p.hash[asked.index("k58000")] == 58_000 and p.hash[-1] == 0 and p.sf_ids is None
    # The same key twice in one call: the last one given wins (as row by row).
    store.put_states("b", "Obj", [("k3", "a01000000000003AAA", 30), ("k3", "a01000000000003AAA", 31)], rid)
    assert store.get_states("b", "Obj", ["k3"])["k3"].hash == 31
    # An update changes hash and Id; other billers' keys do not collide.
    store.put_states("b", "Obj", [("k1", "a01000000000001AAA", -5)], rid)
    store.put_states("other", "Obj", [("k1", None, 99)], rid)
    got = store.get_states("b", "Obj", ["k1", "k2", "missing"])
    assert got["k1"].sf_id == "a01000000000001AAA" and got["k1"].hash == -5
    for p in (store.probe_states("b", "Obj", ["k2", "k1", "missing", "k1"], with_ids=True),
              store.scan_states("b", "Obj", ["k2", "k1", "missing", "k1"], with_ids=True)):
        assert p.present.tolist() == [True, True, False, True] and p.hash.tolist() == [2, -5, 0, -5]
        assert p.sf_ids is not None and p.sf_ids.tolist() == [None, "a01000000000001AAA", None, "a01000000000001AAA"]
    assert got["k2"].hash == 2 and "missing" not in got
    assert sum(1 for _ in store.iter_states("b", "Obj")) == n
    # 64-bit hashes survive the round trip at both ends of the range.
    store.put_states("b", "Obj", [("big", None, 2**63 - 1), ("small", None, -(2**63))], rid)
    got = store.get_states("b", "Obj", ["big", "small"])
    assert got["big"].hash == 2**63 - 1 and got["small"].hash == -(2**63)
    assert store.forget_states("b", "Obj") == n + 2
    assert not store.has_states("b", "Obj") and store.count_states("other") == 1


def test_latest_write_wins_across_segments_processes_and_compaction(db_url: str) -> None:
    a, b = StateStore(db_url), StateStore(db_url)  # two workers on one store
    rid = a.start_run("load", ["b"])
    keys = [f"LI-{i}" for i in range(1000)]
    a.put_states("b", "Item", [(k, None, 1) for k in keys], rid)
    assert a.probe_states("b", "Item", keys).hash.tolist() == [1] * 1000  # a's index now in memory
    b.put_states("b", "Item", [(k, None, 2) for k in keys[:10]], rid)  # the other worker writes
    a.put_states("b", "Item", [(k, None, 3) for k in keys[5:20]], rid)  # a writes after it
    got = a.probe_states("b", "Item", keys[:25]).hash.tolist()
    assert got == [2] * 5 + [3] * 15 + [1] * 5
    for i in range(40):  # many small writes: the store merges them by itself
        b.put_states("b", "Item", [(keys[100 + i], None, 100 + i)], rid)
    b.delete_keys("b", "Item", [keys[0], keys[999]])
    before = b.table_counts()["state_segments"]
    assert before > 40
    p = b.probe_states("b", "Item", keys)
    assert b.table_counts()["state_segments"] < before, "small segments were not merged"
    assert p.hash[100:140].tolist() == list(range(100, 140)) and p.hash[5:20].tolist() == [3] * 15
    assert not p.present[0] and not p.present[999] and p.present[1:999].all()
    # A load's one-pass scan (no index held) finds the same, from either worker.
    for store in (a, b):
        s = store.scan_states("b", "Item", keys + keys[:3])
        assert (s.present == np.concatenate([p.present, p.present[:3]])).all()
        assert (s.hash == np.concatenate([p.hash, p.hash[:3]])).all() and s.sf_ids is None
    # Worker a sees the merge (its folded-in segments are gone) and rebuilds its index.
    assert (a.probe_states("b", "Item", keys).hash == p.hash).all()
    assert a.count_states("b", "Item") == 998 and b.table_counts()["record_state"] == 998
    # A load tidies up after itself; the index it holds stays valid (no re-read of the merged segments).
    for i in range(40):
        a.put_states("b", "Item", [(keys[200 + i], None, -i)], rid)
    held = a._indexes[("b", "Item")]
    assert a.tidy_states("b", "Item") > 0 and a._indexes[("b", "Item")] is held
    assert a.probe_states("b", "Item", keys[200:240]).hash.tolist() == [-i for i in range(40)]
    assert a._indexes[("b", "Item")] is held and a.tidy_states("b", "Item") == 0


def test_two_keys_with_one_hash_never_share_an_id(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = segments.key_hashes

    def colliding(keys: object) -> np.ndarray:
        return real(keys) & np.uint64(0x3)  # four hash values for every key: collisions everywhere

    monkeypatch.setattr(segments, "key_hashes", colliding)
    store = StateStore(db_url)
    rid = store.start_run("load", ["b"])
    store.put_states("b", "Bal", [("acct-1", "a0A000000000001AAA", 11)], rid)
    store.put_states("b", "Bal", [(f"acct-{i}", f"a0A00000000000{i}AAA", i) for i in range(2, 9)], rid)
    got = store.get_states("b", "Bal", [f"acct-{i}" for i in range(1, 12)])
    # Each key gets its own state or none; never another key's Id.
    for k, state in got.items():
        assert state.sf_id and state.sf_id.endswith(f"{k.split('-')[1]}AAA"), (k, state)


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
