"""A webhook refresh upserting the same new External ID during the monthly load.

Salesforce answers the loser of two simultaneous inserts of one External ID with
DUPLICATE_VALUE. By then the record exists, so the load upserts those rows again (an
update), instead of rejecting them: no DUPLICATE_VALUE reaches the admin, no update is lost.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from sfsync.jobs.load import Loader, LoadOptions
from sfsync.jobs.runner import start_run
from sfsync.state import StateStore


class RacingClient:
    """Answers the first upsert of each row as if a concurrent refresh had created it first."""

    def __init__(self) -> None:
        self.calls: list[pd.DataFrame] = []
        self.calls_by_kind: dict[str, int] = {}

    def write_frame(self, sobject: str, operation: str, frame: pd.DataFrame, **_: Any) -> pd.DataFrame:
        self.calls.append(frame)
        first = len(self.calls) == 1
        lost = frame["vlocity_cmt__ExternalID__c"].str.endswith("-raced").to_numpy() if first else [False] * len(frame)
        return pd.DataFrame({
            "success": [not x for x in lost],
            "id": [None if x else f"a0B00000000000{i:01d}AAA" for i, x in enumerate(lost)],
            "created": [not first] * len(frame) if not first else [not x for x in lost],
            "error_code": ["DUPLICATE_VALUE" if x else None for x in lost],
            "message": ["duplicate value found: vlocity_cmt__ExternalID__c duplicates value on record with id: a0B" if x
                        else None for x in lost],
            "retried": [0] * len(frame),
        }, index=frame.index)


def test_duplicate_value_from_a_concurrent_upsert_is_upserted_again(sqlite_url: str) -> None:
    store = StateStore(sqlite_url)
    client = RacingClient()
    compiled = SimpleNamespace(sobject="vlocity_cmt__Statement__c",
                               load=SimpleNamespace(api="auto", serial=False, batch_size=None))
    frame = pd.DataFrame({"vlocity_cmt__ExternalID__c": ["acme:ST-1", "acme:ST-2-raced", "acme:ST-3"],
                          "Name": ["ST-1", "ST-2", "ST-3"]})
    with start_run(store, "load", ["acme"]) as run:
        loader = Loader(run, store, client, LoadOptions())  # type: ignore[arg-type]
        loader.writer._parents["vlocity_cmt__Statement__c"] = {}
        res = loader.writer.write(compiled, "upsert", frame, external_id="vlocity_cmt__ExternalID__c")  # type: ignore[arg-type]
    assert res["success"].tolist() == [True, True, True]
    assert res.loc[1, "retried"] == 1 and pd.isna(res.loc[1, "error_code"])
    # Only the raced row was sent a second time.
    assert [len(c) for c in client.calls] == [3, 1]
    assert client.calls[1]["vlocity_cmt__ExternalID__c"].tolist() == ["acme:ST-2-raced"]
    assert run.counts["vlocity_cmt__Statement__c"]["retried"] == 1
