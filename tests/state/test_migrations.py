"""Upgrading a state store that already holds data keeps it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from sfsync.state import StateStore
from sfsync.state.migrate import current, head, upgrade


def test_record_states_of_0001_move_into_segments_with_their_hashes(db_url: str) -> None:
    engine = create_engine(db_url)
    upgrade(engine, "0001")
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(text("INSERT INTO record_state (biller, sobject, key, sf_id, hash, run_id, updated_at) "
                       "VALUES (:b, :s, :k, :i, :h, 1, :t)"),
                  [{"b": "acme", "s": "Item", "k": f"LI-{n}", "i": f"a0B{n:015d}", "h": n - 2**62, "t": now}
                   for n in range(1500)] + [{"b": "beta", "s": "Item", "k": "LI-1", "i": None, "h": 7, "t": now}])
    engine.dispose()
    store = StateStore(db_url)  # upgrades by itself
    assert current(store.engine) == head()
    got = store.get_states("acme", "Item", ["LI-0", "LI-1499", "LI-1500"])
    assert got["LI-0"].hash == -(2**62) and got["LI-1499"].sf_id == f"a0B{1499:015d}" and "LI-1500" not in got
    assert store.count_states("acme") == 1500 and store.get_states("beta", "Item", ["LI-1"])["LI-1"].hash == 7
    assert "record_state" in store.table_counts()


def test_head_constant_is_the_newest_migration_script() -> None:
    # The store checks the database against HEAD without importing Alembic: it must not drift.
    from sfsync.state.migrate import HEAD

    assert HEAD == head()
