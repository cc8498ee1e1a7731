"""`make demo` (``sfsync demo``): the README's first command, end to end on a small data set."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from sfsync.app import App
from sfsync.demo import demo, demo_exit_code

ITEM = "vlocity_cmt__StatementLineItem__c"


def test_demo_loads_then_sends_only_what_changed_and_leaves_nothing_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {t.ident for t in threading.enumerate()}

    rc = demo.main(["--accounts", "40", "--months", "2", "--change-pct", "10", "--dir", str(tmp_path / "demo")],
                   standalone_mode=False)

    out = capsys.readouterr().out
    assert rc == 0, out
    assert "emulator stopped" in out
    assert [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()] == []
    logs = sorted(p.name for p in (tmp_path / "demo").glob("*.log"))
    assert {"load-1.log", "load-dry.log", "load-2.log", "export-1.log", "export-2.log"} <= set(logs)
    changed = int(re.search(r"(\d+) line items changed", out).group(1))  # type: ignore[union-attr]
    app = App(config_path=tmp_path / "demo" / "sfsync.yaml")
    try:
        first, dry, second = sorted(app.store.list_runs(job="load"), key=lambda r: r.id)
    finally:
        app.close()
    assert first.counts[ITEM]["sent"] == first.counts[ITEM]["read"] > changed > 0
    assert "sent" not in dry.counts[ITEM] or dry.counts[ITEM]["sent"] == 0
    assert second.counts[ITEM]["sent"] == changed  # only the changed line items, the second time


@pytest.mark.parametrize(("codes", "expected"), [
    ([0, 0, 0, 0, 0], 0),
    ([0, 0, 3, 0, 0], 3),  # rows rejected: look at `sfsync rejects`
    ([1, 0, 3, 0, 0], 1),  # a failed first load is not hidden by a later run's rejects
    ([0, 0, 0, 2, 0], 2),  # an export that could not start
])
def test_demo_exit_code_reports_the_worst_step(codes: list[int], expected: int) -> None:
    assert demo_exit_code(codes) == expected
