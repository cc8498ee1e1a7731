"""A webhook refresh upserting the same new External IDs during the monthly load.

Salesforce answers the loser of two simultaneous upserts of one new External ID with
DUPLICATE_VALUE; by then the record exists. The emulator's ``concurrent_upsert`` fault plays the
other writer: it creates the record first (External ID and required fields only) and answers
the load's row DUPLICATE_VALUE. The load upserts those rows again, so no DUPLICATE_VALUE
reaches the admin and none of the load's values is lost.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sfsync.app import App
from sfsync.emulator.org import Org
from sfsync.emulator.testing import route_requests
from sfsync.jobs.load import LoadOptions
from sfsync.jobs.load_run import run_load
from tests.jobs.conftest import EXT, ITEM, STATEMENT, bulk_mappings, write_config

SYSTEM = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "CreatedById", "LastModifiedById", "OwnerId"}
SF_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


def content(org: Org, sobject: str) -> dict[str, dict[str, Any]]:
    """Each record's own values by External ID (Ids and auto-numbers, which differ between orgs, left out)."""
    numbered = {f.name for f in org.schema.get(sobject).fields.values() if f.auto_number is not None}
    return {str(r[EXT]): {k: v for k, v in r.items()
                          if k not in SYSTEM | numbered and not (isinstance(v, str) and SF_ID.match(v))}
            for r in org.records(sobject)}


def load_into(org: Org, base: Path, data: Path, mappings: Path | None) -> Any:
    base.mkdir()
    config = write_config(base, org, data, **({"mappings": mappings} if mappings else {}))
    with route_requests(org):
        app = App(config_path=config)
        try:
            return run_load(app, options=LoadOptions(), progress=False)
        finally:
            app.close()


@pytest.mark.parametrize("api", ["auto", "bulk1"], ids=["rest-collections", "bulk1-serial"])
@pytest.mark.parametrize("sobject", [STATEMENT, ITEM], ids=["statements", "line-items"])
def test_upserts_that_lose_a_race_for_a_new_external_id_are_upserted_again(
        tmp_path: Path, data: Path, api: str, sobject: str) -> None:
    mappings = bulk_mappings(tmp_path) if api == "bulk1" else None
    clean = Org()
    load_into(clean, tmp_path / "clean", data, mappings)
    raced = Org()
    raced.faults.update({"seed": 7, "concurrent_upsert": {"object": sobject, "rate": 0.2}}, replace=True)

    report = load_into(raced, tmp_path / "raced", data, mappings)

    assert report.run.status == "succeeded" and report.run.rejected == 0
    lost = raced.faults.upserts_raced
    assert lost > 0
    counts = report.run.plain_counts()[sobject]
    assert counts["retried"] == lost  # each lost race sent once more, and counted
    assert counts["sent"] == counts["created"] + counts["updated"] == len(clean.records(sobject))
    assert counts["updated"] == lost  # the other writer created them; the load updated them
    for obj in (STATEMENT, ITEM):  # no duplicates, nothing missing, every value the load's
        assert content(raced, obj) == content(clean, obj)
