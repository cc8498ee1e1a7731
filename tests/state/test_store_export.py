"""Store methods the export job relies on: bulk ledger marks, unwritten outcomes, ownership."""

from __future__ import annotations

from sfsync.state import StateStore


def test_ledger_mark_sets_many_entries_and_counts_attempts(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("export", ["b"])
    ids = [f"a1A{i:015d}" for i in range(7_000)]  # more than one chunk
    assert len(store.ledger_intend("b", "PA", [(i, 1, None) for i in ids], rid)) == len(ids)
    store.ledger_mark("b", "PA", [{"sf_id": i, "status": "sending"} for i in ids], attempt=True)
    store.ledger_mark("b", "PA", [{"sf_id": ids[0], "status": "accepted", "biller_ref": "R1"},
                                  {"sf_id": ids[1], "status": "rejected", "last_error": "no"}])
    got = store.ledger_get("b", "PA", ids[:3])
    assert (got[ids[0]].status, got[ids[0]].biller_ref, got[ids[0]].attempts) == ("accepted", "R1", 1)
    assert (got[ids[1]].status, got[ids[1]].last_error) == ("rejected", "no")
    assert got[ids[2]].status == "sending"
    # Other billers' entries are untouched.
    store.ledger_intend("other", "PA", [(ids[0], 1, None)], rid)
    assert store.ledger_get("other", "PA", [ids[0]])[ids[0]].status == "pending"
    unwritten = store.ledger_unwritten(["b", "other"], "PA")
    assert [e.sf_id for e in unwritten] == ids[:2]
    store.ledger_mark("b", "PA", [{"sf_id": ids[0], "written_back": True}])
    assert [e.sf_id for e in store.ledger_unwritten(["b"], "PA")] == [ids[1]]
    store.close()


def test_owners_says_which_biller_loaded_a_record(db_url: str) -> None:
    store = StateStore(db_url)
    rid = store.start_run("load", ["a"])
    store.put_states("a", "Account", [("a:1", "001A", 1), ("a:2", "001B", 1)], rid)
    store.put_states("b", "Account", [("b:9", "001B", 1)], rid)
    store.put_states("b", "vlocity_cmt__Statement__c", [("b:s", "001A", 1)], rid)  # other object: ignored
    assert store.owners("Account", ["001A", "001B", "001C"]) == {"001A": {"a"}, "001B": {"a", "b"}}
    store.close()
