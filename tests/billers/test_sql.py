"""The sql biller on SQLite and the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from sfsync.billers import SqlBiller, SqlBillerSettings, SupportsAccountFetch, SupportsExport
from sfsync.errors import TransientError, UserError
from sfsync.state import StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def biller_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/biller.db"
    return request.getfixturevalue("pg_url")


def _setup(url: str, n: int = 100) -> None:
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE statements (statement_id VARCHAR(40) PRIMARY KEY, account_number VARCHAR(20), "
                       "updated_at TIMESTAMP, balance_due NUMERIC(12,2))"))
        c.execute(text("CREATE INDEX ix_st_acct ON statements (account_number)"))
        c.execute(text("CREATE TABLE line_items (line_item_id VARCHAR(40) PRIMARY KEY, statement_id VARCHAR(40), "
                       "account_number VARCHAR(20), amount NUMERIC(12,2))"))
        c.execute(text("CREATE INDEX ix_li_acct ON line_items (account_number)"))
        c.execute(text("CREATE TABLE payments (ref_id INTEGER PRIMARY KEY, sf_id VARCHAR(18) NOT NULL UNIQUE, "
                       "amount NUMERIC(12,2) NOT NULL, account_number VARCHAR(20))"
                       if url.startswith("sqlite") else
                       "CREATE TABLE payments (ref_id SERIAL PRIMARY KEY, sf_id VARCHAR(18) NOT NULL UNIQUE, "
                       "amount NUMERIC(12,2) NOT NULL, account_number VARCHAR(20))"))
        base = dt.datetime(2026, 1, 1)
        c.execute(text("INSERT INTO statements VALUES (:i, :a, :u, :b)"),
                  [{"i": f"ST-{i:04d}", "a": f"BA-{i % 7}", "u": base + dt.timedelta(hours=i // 10), "b": i * 1.25}
                   for i in range(n)])
        c.execute(text("INSERT INTO line_items VALUES (:i, :s, :a, :m)"),
                  [{"i": f"LI-{i:05d}", "s": f"ST-{i // 3:04d}", "a": f"BA-{(i // 3) % 7}", "m": -1.5 if i % 5 == 0 else 2}
                   for i in range(n * 3)])
    eng.dispose()


def _biller(url: str, store: StateStore | None, **kw: object) -> SqlBiller:
    cfg = {"url": url, "batch_size": 17,
           "entities": {"statements": {"table": "statements", "incremental_column": "updated_at"},
                        "line_items": {"table": "line_items"}},
           "exports": {"payments": {"table": "payments", "reference_column": "ref_id"}}, **kw}
    return SqlBiller("db", SqlBillerSettings.model_validate(cfg), store)


def test_incremental_reads_with_ties_lose_nothing_and_repeat_nothing(biller_db: str, store: StateStore) -> None:
    _setup(biller_db)
    b = _biller(biller_db, store)
    seen = []
    for batch in b.read("statements"):
        assert batch.num_rows <= 17
        seen += batch.table["statement_id"].to_pylist()
        b.commit(batch.checkpoint)
    assert sorted(seen) == [f"ST-{i:04d}" for i in range(100)]
    assert [x.num_rows for x in b.read("statements")] == []
    # late rows sharing the last timestamp, and newer rows, arrive
    eng = create_engine(biller_db)
    with eng.begin() as c:
        c.execute(text("INSERT INTO statements VALUES ('ST-late', 'BA-1', :u, 1), ('ST-new', 'BA-1', :v, 2)"),
                  {"u": dt.datetime(2026, 1, 1, 9), "v": dt.datetime(2026, 1, 2)})
    eng.dispose()
    again = [r["statement_id"] for x in b.read("statements") for r in x.table.to_pylist()]
    assert again == ["ST-late", "ST-new"]
    assert sum(x.num_rows for x in b.read("statements", full=True)) == 102
    rows = next(iter(b.read("statements", full=True))).table.to_pylist()
    assert rows[0]["_source"] == "statements:ST-0000"
    b.close()


def test_uncommitted_batches_are_read_again(biller_db: str, store: StateStore) -> None:
    _setup(biller_db, 40)
    b = _biller(biller_db, store)
    batches = list(b.read("statements"))
    b.commit(batches[0].checkpoint)
    assert sum(x.num_rows for x in b.read("statements")) == 40 - batches[0].num_rows
    b.close()


def test_fetch_account(biller_db: str) -> None:
    _setup(biller_db)
    b = _biller(biller_db, None)
    assert isinstance(b, SupportsAccountFetch)
    got = b.fetch_account("BA-3")
    assert set(got) == {"statements", "line_items"}
    assert got["statements"].num_rows == len([i for i in range(100) if i % 7 == 3])
    assert set(got["line_items"]["account_number"].to_pylist()) == {"BA-3"}
    assert got["line_items"]["_source"][0].as_py().startswith("line_items:LI-")
    assert b.fetch_account("BA-nobody")["statements"].num_rows == 0
    b.close()


def test_export_is_idempotent_and_reports_bad_rows(biller_db: str) -> None:
    _setup(biller_db, 5)
    b = _biller(biller_db, None)
    assert isinstance(b, SupportsExport)
    r1 = b.export("payments", [{"sf_id": "a0A1", "amount": 10, "account_number": "BA-1"},
                               {"sf_id": "a0A2", "amount": 5.5, "account_number": "BA-2"}])
    assert [r.ok for r in r1] == [True, True] and r1[0].reference != r1[1].reference
    r2 = b.export("payments", [{"sf_id": "a0A1", "amount": 10, "account_number": "BA-1"},
                               {"sf_id": "a0A3", "amount": None, "account_number": "BA-3"},
                               {"sf_id": "a0A4", "amount": 1, "account_number": "BA-4"}])
    assert r2[0].ok and r2[0].reference == r1[0].reference
    assert not r2[1].ok and r2[1].error and not r2[1].transient
    assert r2[2].ok
    eng = create_engine(biller_db)
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM payments")).scalar() == 3
    eng.dispose()
    with pytest.raises(UserError, match="no column"):
        b.export("payments", [{"sf_id": "x", "amount": 1, "bogus": 2}])
    with pytest.raises(UserError, match="no export table"):
        b.export("adjustments", [{"sf_id": "x"}])
    b.close()


def test_query_entities_and_clear_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    _setup(url, 10)
    b = SqlBiller("db", SqlBillerSettings.model_validate({
        "url": url, "entities": {"big": {"query": "SELECT statement_id, balance_due FROM statements WHERE balance_due > 5",
                                          "key": ["statement_id"]},
                                  "broken": {"table": "no_such_table"}}}), None)
    assert sum(x.num_rows for x in b.read("big")) == 5
    with pytest.raises(UserError, match="refused"):
        list(b.read("broken"))
    with pytest.raises(UserError, match="no entity"):
        list(b.read("nope"))
    with pytest.raises(ValueError, match="exactly one"):
        SqlBillerSettings.model_validate({"url": url, "entities": {"x": {"table": "a", "query": "b"}}})


def test_unreachable_database_is_transient() -> None:
    b = SqlBiller("db", SqlBillerSettings.model_validate({
        "url": "postgresql://postgres@127.0.0.1:1/none", "connect_timeout": 1}), None)
    with pytest.raises(TransientError):
        list(b.read("statements"))
