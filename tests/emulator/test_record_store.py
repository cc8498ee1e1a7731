"""The compact record store: records as read-only mappings, shared values, indexes built on demand."""

from __future__ import annotations

import copy
import pickle
import tracemalloc
from pathlib import Path

import pytest

from sfsync.emulator.org import Org
from sfsync.emulator.record import AUDIT_FIELDS, Record, make_record
from sfsync.emulator.store import IdMultiMap, index_key

SLI = "vlocity_cmt__StatementLineItem__c"
STMT = "vlocity_cmt__Statement__c"
EXT = "vlocity_cmt__ExternalID__c"
REL = "vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c"
AUDIT = {"IsDeleted": False, "CreatedDate": "2026-01-01T00:00:00.000+0000", "CreatedById": "005",
         "LastModifiedDate": "2026-01-01T00:00:00.000+0000", "LastModifiedById": "005",
         "SystemModstamp": "2026-01-01T00:00:00.000+0000"}


@pytest.fixture
def stmt(org: Org) -> str:
    acct = org.dml("Account", "insert", [{"Name": "Acme"}])[0].id
    result = org.dml(STMT, "upsert", [{"Name": "S1", EXT: "ST-1", "vlocity_cmt__AccountId__c": acct}], EXT)[0]
    assert result.success, result.errors
    return str(result.id)


def _rec(org: Org, rid: str) -> Record:
    rec = org.by_id(rid)
    assert rec is not None
    return rec


def _children_built(org: Org) -> bool:
    return org._md_children is not None


def _items(org: Org, n: int, start: int = 0, **extra: str) -> list[str]:
    rows = [{EXT: f"L{i}", REL: "ST-1", "vlocity_cmt__Category__c": "Usage", "vlocity_cmt__UOM__c": "min",
             "vlocity_cmt__CurrencyAmount__c": "12.5", **extra} for i in range(start, start + n)]
    results = org.dml(SLI, "upsert", rows, EXT, api="bulk2")
    assert all(r.success for r in results), [r.errors for r in results if not r.success][:2]
    return [str(r.id) for r in results]


def test_record_reads_like_the_dict_it_replaces() -> None:
    fields = {"Id": "a3U000000000001AAA", **AUDIT, "Name": "x", "Amount": 2.0}
    rec = make_record(fields)
    assert rec == fields and dict(rec) == fields and rec.to_dict() == fields
    assert rec["Name"] == "x" and rec.get("Amount") == 2.0 and rec["IsDeleted"] is False
    assert rec.get("Missing") is None and rec.get("Missing", 0) == 0 and "Missing" not in rec
    with pytest.raises(KeyError):
        rec["Missing"]
    assert len(rec) == len(fields) and set(rec) == set(fields) and "Name" in rec
    assert sorted(rec.items()) == sorted(fields.items())
    assert {**rec} == fields and "Record(" in repr(rec)
    plain = make_record({"Name": "no audit fields"})  # records need not carry them
    assert plain == {"Name": "no audit fields"} and plain.get("IsDeleted") is None


def test_record_update_keeps_identity_and_shares_shapes() -> None:
    rec = make_record({"Id": "1", **AUDIT, "A": 1})
    other = make_record({"Id": "2", **AUDIT, "A": 5})
    assert rec._row[0] is other._row[0]  # one shape for records with the same fields
    assert rec._audit is other._audit  # one audit tuple for equal audit values
    rec._update({"A": 2, "SystemModstamp": "later"})
    assert rec == {"Id": "1", **AUDIT, "A": 2, "SystemModstamp": "later"}
    rec._update({"B": "new", "A": None})  # adds and removes fields: a new shape
    assert rec == {"Id": "1", **AUDIT, "B": "new", "SystemModstamp": "later"}
    assert rec._diff({"B": "new", "A": None, "C": 1}) == {"C": 1}


def test_record_pickles_and_copies() -> None:
    recs = [make_record({"Id": str(i), **AUDIT, "A": i}) for i in range(3)]
    again = pickle.loads(pickle.dumps(recs, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == recs and all(isinstance(r, Record) for r in again)
    assert again[0]._row[0] is recs[0]._row[0]  # the shape comes back shared
    assert copy.deepcopy(recs[1]) == recs[1]


def test_id_multi_map() -> None:
    idx = IdMultiMap()
    assert idx.ids("k") == ()
    idx.add("k", "a")
    idx.add("k", "a")
    assert idx.ids("k") == ("a",)
    idx.add("k", "b")
    assert sorted(idx.ids("k")) == ["a", "b"]
    idx.discard("k", "a")
    assert idx.ids("k") == ("b",)
    idx.discard("k", "zzz")
    assert idx.pop("k") == ("b",) and idx.ids("k") == ()
    idx.discard("k", "b")  # nothing left: no error


def test_index_key_shares_lower_case_text() -> None:
    text = "already-lower-1"
    assert index_key(text, False) is text
    assert index_key("ABC", False) == "abc" and index_key("ABC", True) == "ABC" and index_key(12, False) == "12"


def test_records_of_one_call_share_values_and_audit(org: Org, stmt: str) -> None:
    ids = _items(org, 3) + _items(org, 2, start=3)
    recs = [_rec(org, i) for i in ids]
    assert all(isinstance(r, Record) for r in recs)
    first, last = recs[0], recs[-1]
    # Values many records hold are one object, also across calls.
    for name in ("vlocity_cmt__Category__c", "vlocity_cmt__UOM__c", "vlocity_cmt__CurrencyAmount__c"):
        assert first[name] is last[name], name
    assert first["vlocity_cmt__StatementId__c"] is last["vlocity_cmt__StatementId__c"]
    assert recs[0]._audit is recs[2]._audit  # same call, same audit fields
    assert set(AUDIT_FIELDS) <= set(first)


def test_updates_rewrite_records_in_place(org: Org, stmt: str) -> None:
    (rid,) = _items(org, 1)
    rec = _rec(org, rid)
    before = rec["SystemModstamp"]
    org.dml(SLI, "upsert", [{EXT: "L0", "vlocity_cmt__UOM__c": "#N/A", "vlocity_cmt__Usage__c": "4"}], EXT,
            api="bulk2")
    assert org.by_id(rid) is rec  # the live record changed
    assert rec.get("vlocity_cmt__UOM__c") is None and rec["vlocity_cmt__Usage__c"] == 4.0
    assert rec["SystemModstamp"] >= before and rec["vlocity_cmt__Category__c"] == "Usage"


def test_name_index_is_built_on_first_lookup(org: Org, stmt: str) -> None:
    ids = _items(org, 3)
    assert org._midx[SLI] == {}  # nobody looked line items up by Name yet
    name = _rec(org, ids[1])["Name"]
    assert [r["Id"] for r in org.find_by(SLI, "Name", name.lower())] == [ids[1]]
    assert "Name" in org._midx[SLI]
    later = _items(org, 1, start=10)[0]  # kept up to date from now on
    later_name = _rec(org, later)["Name"]
    assert [r["Id"] for r in org.find_by(SLI, "Name", later_name)] == [later]
    org.dml(SLI, "delete", [{"Id": later}])
    assert org.find_by(SLI, "Name", later_name) == []


def test_master_detail_children_are_found_after_a_lazy_build(org: Org, stmt: str) -> None:
    first = _items(org, 2)
    assert not _children_built(org)  # loads never pay for the children index
    account = _rec(org, stmt)["vlocity_cmt__AccountId__c"]
    other = str(org.dml(STMT, "upsert", [{"Name": "S2", EXT: "ST-2", "vlocity_cmt__AccountId__c": account}],
                        EXT)[0].id)
    moved = str(org.dml(SLI, "insert", [{REL: "ST-2"}])[0].id)
    org.dml(STMT, "delete", [{"Id": other}])  # builds the index, cascades to its child
    assert _rec(org, moved)["IsDeleted"] is True
    assert _children_built(org)
    late = _items(org, 1, start=50)  # a child added after the build is cascaded too
    org.dml(STMT, "hardDelete", [{"Id": stmt}])
    assert all(org.by_id(i) is None for i in first + late)
    org.dml(STMT, "undelete", [{"Id": other}])
    assert _rec(org, moved)["IsDeleted"] is False


def test_version_1_state_with_plain_dicts_still_loads(tmp_path: Path) -> None:
    org = Org(state_dir=tmp_path)
    org.dml("Account", "insert", [{"Name": "Kept", "AccountNumber": "K-1"}])
    org.flush()
    state_file = tmp_path / "org.pickle"
    state = pickle.loads(state_file.read_bytes())
    assert state["version"] == 2
    state["version"] = 1  # what an older emulator wrote: dict records and a children map
    state["data"] = {name: {rid: rec.to_dict() for rid, rec in records.items()} for name, records in state["data"].items()}
    state["md_children"] = {}
    state_file.write_bytes(pickle.dumps(state))
    again = Org(state_dir=tmp_path)
    (kept,) = again.find_by("Account", "AccountNumber", "k-1")
    assert isinstance(kept, Record) and kept["Name"] == "Kept"


def test_memory_per_line_item_stays_small(org: Org, stmt: str) -> None:
    # A line item with a dozen fields cost ~1,160 bytes as a dict; the compact store ~500
    # (tracemalloc, CPython 3.11). The bound leaves room for interpreter differences.
    _items(org, 200)  # shapes, memos and converters exist before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _items(org, 5_000, start=1_000, vlocity_cmt__Type__c="Call", vlocity_cmt__StatementDate__c="2026-10-01",
               vlocity_cmt__ServiceType__c="Voice", vlocity_cmt__Usage__c="3", vlocity_cmt__Amount__c="7")
        per_record = (tracemalloc.get_traced_memory()[0] - before) / 5_000
    finally:
        tracemalloc.stop()
    assert per_record < 750, per_record
