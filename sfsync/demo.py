"""``make demo``: the main job, end to end, on the embedded default.

1. starts the local org emulator (HTTPS on loopback, in this process);
2. generates a deterministic operator export (the files biller);
3. runs ``sfsync load`` against it and prints the summary;
4. changes a little of the biller's data and loads again: only the changed rows are sent;
5. enters payments and adjustments in the org as agents would, and exports them to the
   biller's outbox (twice: the second run sends nothing);
6. shows the run history and stops the emulator (nothing is left running).

Everything lives under ``.sfsync/demo/`` (recreated on every run).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def _say(text: str) -> None:
    click.secho(f"\n== {text}", fg="cyan", bold=True)


def demo_config(base: Path, emulator_dir: Path, data: Path, mappings: Path) -> Path:
    """Write the demo's sfsync.yaml: the emulator, a SQLite store, one files biller."""
    cfg = base / "sfsync.yaml"
    cfg.write_text(
        "# Written by `make demo`: the local org emulator, a SQLite state store, one files biller.\n"
        f"salesforce:\n  emulator: {emulator_dir}\n  describe_cache_dir: {base / 'describe'}\n"
        f"database:\n  url: sqlite:///{base / 'state.db'}\n"
        "billers:\n"
        f"  - name: acme\n    kind: files\n    path: {data}\n"
        f"    mappings: ['{mappings}/files/*.yaml', '{mappings}/export/files/*.yaml']\n"
        f"    outbox: {base / 'outbox'}\n"
        "load:\n  trim_date: org\n",
        encoding="utf-8")
    return cfg


@click.command("demo")
@click.option("--accounts", default=2_000, show_default=True, help="Billing accounts to generate.")
@click.option("--months", default=6, show_default=True, help="Billing months to generate.")
@click.option("--change-pct", default=2.0, show_default=True, help="Share of line items changed before the second load.")
@click.option("--dir", "base", type=click.Path(file_okay=False, path_type=Path), default=Path(".sfsync/demo"),
              show_default=True)
def demo(accounts: int, months: int, change_pct: float, base: Path) -> int:
    """Rehearse a monthly load against the local org emulator, then an incremental one."""
    from sfsync.billers.sample import generate, mutate
    from sfsync.cli import main as sfsync
    from sfsync.emulator.org import Org
    from sfsync.emulator.server import run_in_thread

    started = time.monotonic()
    base = base.resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    emulator_dir, data = base / "emulator", base / "acme"

    _say("starting the local Salesforce org emulator (Vlocity billing schema)")
    org = Org(state_dir=emulator_dir)
    handle = run_in_thread(org, state_dir=emulator_dir)
    click.echo(f"org at {handle.url}; connection details in {handle.connection_file}")
    try:
        _say(f"generating the biller's monthly export: {accounts:,} accounts × {months} months")
        counts = generate(data, accounts=accounts, months=months, seed=7)
        click.echo(", ".join(f"{k} {v:,}" for k, v in counts.items()) + f"  →  {data}")
        cfg = demo_config(base, emulator_dir, data, ROOT / "mappings")
        args = ["--config", str(cfg), "--log-format", "json"]

        _say("sfsync load  (first load: everything is new)")
        rc1 = _quiet(sfsync, [*args, "load"], base / "load-1.log")

        _say(f"the biller re-issues {change_pct}% of line items; sfsync load --dry-run")
        changed = mutate(data, change_pct, seed=11)
        click.echo(f"{changed:,} line items changed in the biller's files")
        rc_dry = _quiet(sfsync, [*args, "load", "--dry-run"], base / "load-dry.log")

        _say("sfsync load  (second load: only what changed is sent)")
        rc2 = _quiet(sfsync, [*args, "load"], base / "load-2.log")

        _say("agents approve adjustments and take payments in Salesforce; sfsync export")
        entered = enter_payments(org, 25)
        click.echo(f"{entered} approved adjustments and customer payments entered in the org")
        rc_exp1 = _quiet(sfsync, [*args, "export"], base / "export-1.log")
        click.echo(f"the biller's outbox: {', '.join(sorted(p.name for p in (base / 'outbox').glob('*.*'))) or 'empty'}")

        _say("sfsync export again  (nothing new: nothing is sent twice)")
        rc_exp2 = _quiet(sfsync, [*args, "export"], base / "export-2.log")

        _say("sfsync runs list")
        sfsync([*args, "runs", "list"])
    finally:
        handle.stop()
    click.echo(f"\nemulator stopped; demo took {time.monotonic() - started:.0f}s. Logs, config and state in {base}")
    click.echo(f"try: .venv/bin/sfsync --config {base / 'sfsync.yaml'} runs show 1")
    return demo_exit_code([rc1, rc_dry, rc2, rc_exp1, rc_exp2])


def demo_exit_code(codes: list[int]) -> int:
    """The demo's exit code from its steps': a failure (1, 2) wins over rejected rows (3), then 0."""
    failed = [rc for rc in codes if rc not in (0, 3)]
    if failed:
        return max(failed)
    return 3 if 3 in codes else 0


def enter_payments(org: object, n: int) -> int:
    """What agents do in Salesforce: approved adjustments and customer payments on loaded accounts."""
    accounts = [r["Id"] for r in org.records("Account")[:n]]  # type: ignore[attr-defined]
    rows = []
    for i, acc in enumerate(accounts):
        payment = i % 2 == 0
        rows.append({"vlocity_cmt__AccountId__c": acc, "vlocity_cmt__Status__c": "Approved",
                     "vlocity_cmt__Type__c": "Customer Payment" if payment else "CSR Adjustment",
                     "vlocity_cmt__Method__c": "Credit Card" if payment else "Adjustment Credit",
                     "vlocity_cmt__Amount__c": round(10 + i * 3.5, 2), "vlocity_cmt__Date__c": "2026-11-20",
                     "vlocity_cmt__Notes__c": "Goodwill credit, billing error" if not payment else None})
    results = org.dml("vlocity_cmt__PaymentAdjustment__c", "insert", rows)  # type: ignore[attr-defined]
    return sum(1 for r in results if r.success)


def _quiet(cmd: object, argv: list[str], log_file: Path) -> int:
    """Run an sfsync command with its JSON log going to a file, its summary to the terminal."""
    err = sys.stderr
    with log_file.open("w", encoding="utf-8") as fh:
        sys.stderr = fh
        try:
            rc = cmd(argv)  # type: ignore[operator]
        finally:
            sys.stderr = err
    click.echo(f"(exit {rc}; log: {log_file})")
    return int(rc)


def main() -> None:
    """``python -m sfsync.demo``."""
    sys.exit(demo.main(standalone_mode=False) or 0)


if __name__ == "__main__":
    main()
