"""kill -9 at each step of an export, then rerun: every record reaches its biller exactly once.

The killed run is a real ``sfsync export`` in a subprocess, talking to the emulator over
loopback HTTPS (``salesforce: {emulator: DIR}``); ``SFSYNC_CRASH_AT=<step>`` makes it die
with ``os._exit(137)`` at that step, as ``kill -9`` would. The rerun happens in this process,
over the same HTTPS server. We count what each biller received: outbox rows, SQL rows, TMF POSTs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sfsync.app import App
from sfsync.config import load_settings
from sfsync.emulator.org import Org
from sfsync.jobs.export import CRASH_STEPS
from sfsync.jobs.export_run import run_export

ROOT = Path(__file__).resolve().parents[2]
PA = "vlocity_cmt__PaymentAdjustment__c"
N = 40


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Org, Path]]:
    from sfsync.emulator.server import run_in_thread

    state = tmp_path_factory.mktemp("emulator")
    org = Org()
    handle = run_in_thread(org, state_dir=state)
    try:
        yield org, state
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def tmf() -> Iterator[Any]:
    from sfsync.billers.tmf_server import run_in_thread

    with run_in_thread() as server:
        yield server


def _biller(kind: str, tmp: Path, tmf_url: str) -> str:
    if kind == "files":
        (tmp / "drop").mkdir()
        return (f"  - {{name: b, kind: files, path: '{tmp / 'drop'}', outbox: '{tmp / 'outbox'}',\n"
                f"     mappings: ['{ROOT}/mappings/export/files/adjustments.yaml']}}\n")
    if kind == "sql":
        engine = sa.create_engine(f"sqlite:///{tmp / 'biller.db'}")
        with engine.begin() as c:
            c.execute(sa.text("CREATE TABLE adj (sf_id TEXT PRIMARY KEY, adjustment_ref TEXT, account_number TEXT,"
                              " statement_id TEXT, dispute_id TEXT, amount NUMERIC, adjustment_date TEXT,"
                              " kind TEXT, reason TEXT)"))
        engine.dispose()
        return (f"  - {{name: b, kind: sql, url: 'sqlite:///{tmp / 'biller.db'}', exports: {{adjustments: {{table: adj}}}},\n"
                f"     mappings: ['{ROOT}/mappings/export/files/adjustments.yaml']}}\n")
    return (f"  - {{name: b, kind: tmf678, base_url: '{tmf_url}', retries: 0,\n"
            f"     mappings: ['{ROOT}/mappings/export/tmf678/adjustment.yaml']}}\n")


def _received(kind: str, tmp: Path, tmf: Any, ids: set[str]) -> list[str]:
    if kind == "files":
        out: list[str] = []
        for p in sorted((tmp / "outbox").glob("*.csv")):
            with p.open(newline="") as f:
                out.extend(r["sf_id"] for r in csv.DictReader(f))
        return out
    if kind == "sql":
        engine = sa.create_engine(f"sqlite:///{tmp / 'biller.db'}")
        with engine.connect() as c:
            found = [r[0] for r in c.execute(sa.text("SELECT sf_id FROM adj"))]
        engine.dispose()
        return found
    posted = [json.loads(line)["correlatorId"] for line in tmf.data.resources["adjustment"].lines]
    return [p for p in posted if p in ids]


CASES = [(step, "files") for step in CRASH_STEPS] + [
    ("export.after_accept", "sql"), ("export.after_ledger", "sql"),
    ("export.after_accept", "tmf678"), ("export.after_writeback", "tmf678")]


@pytest.mark.parametrize(("step", "kind"), CASES)
def test_kill_at_a_step_then_rerun_exports_each_record_once(
        step: str, kind: str, tmp_path: Path, emulator: tuple[Org, Path], tmf: Any) -> None:
    org, state = emulator
    acc = org.dml("Account", "insert", [{"Name": f"K {step} {kind}", "AccountNumber": f"K-{kind}-{step}"}])[0].id
    rows = [{"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__Amount__c": str(i + 1), "vlocity_cmt__Status__c": "Approved",
             "vlocity_cmt__Type__c": "CSR Adjustment", "vlocity_cmt__Method__c": "Adjustment Credit"} for i in range(N)]
    ids = {str(r.id) for r in org.dml(PA, "insert", rows)}
    cfg = tmp_path / "sfsync.yaml"
    cfg.write_text(
        f"salesforce: {{emulator: '{state}', describe_cache_dir: '{tmp_path / 'describe'}'}}\n"
        f"database: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        # Other tests' adjustments live in the same org: route them nowhere near this biller.
        f"export: {{objects: {{{PA}: {{where: \"vlocity_cmt__AccountId__c = '{acc}'\"}}}},\n"
        f"          send_rows: 15, chunk_rows: 25}}\n"
        "billers:\n" + _biller(kind, tmp_path, tmf.url), encoding="utf-8")
    env = {**os.environ, "SFSYNC_CRASH_AT": step, "SFSYNC_LOG_FORMAT": "json"}
    env.pop("REQUESTS_CA_BUNDLE", None)
    killed = subprocess.run([sys.executable, "-c", "import sys; from sfsync.cli import main; sys.exit(main())",
                             "--config", str(cfg), "export"], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr[-2000:]
    got_before = _received(kind, tmp_path, tmf, ids)
    assert len(got_before) == len(set(got_before))

    report = run_export(App(_settings=load_settings(cfg)))
    assert report.run.exit_code == 0, report.run.error
    got = _received(kind, tmp_path, tmf, ids)
    assert sorted(got) == sorted(ids), f"{kind}: {len(got)} received for {len(ids)} records ({step})"
    assert {org.get(PA, i)["vlocity_cmt__Status__c"] for i in ids} == {"Applied"}
    again = run_export(App(_settings=load_settings(cfg)))
    assert again.run.exit_code == 0 and sorted(_received(kind, tmp_path, tmf, ids)) == sorted(ids)
