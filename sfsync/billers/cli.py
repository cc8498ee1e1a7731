"""Click commands of the billers package; the main CLI adds them (``cli.add_command(sample_data)``)."""

from __future__ import annotations

from pathlib import Path

import click

from sfsync.billers.sample import FORMATS, generate


@click.command("sample-data")
@click.option("--accounts", type=click.IntRange(min=1), default=1000, show_default=True, help="Billing accounts.")
@click.option("--months", type=click.IntRange(min=1), default=12, show_default=True, help="Billing months.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same files.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--start-month", default="2026-01", show_default=True, help="First billing month, YYYY-MM.")
def sample_data(accounts: int, months: int, seed: int, out: Path, fmt: str, start_month: str) -> None:
    """Write a deterministic sample operator export (docs/sample-data.md)."""
    counts = generate(out, accounts=accounts, months=months, seed=seed, fmt=fmt, start_month=start_month)
    for entity, n in counts.items():
        click.echo(f"{entity:28} {n:>10,}")
    click.echo(f"written to {out}")


@click.command("sample-mutate")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True)
@click.option("--pct", type=click.FloatRange(0, 100), default=1.0, show_default=True,
              help="Percent of line items whose amount is re-issued.")
@click.option("--seed", type=int, default=7, show_default=True)
def sample_mutate(directory: Path, pct: float, seed: int) -> None:
    """Change a little sample data in place (amounts of PCT% of line items), for rerun demos."""
    from sfsync.billers.sample import mutate

    n = mutate(directory, pct, seed=seed)
    click.echo(f"re-issued {n:,} line items in {directory}")


@click.command("tmf-serve")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="A directory written by sample-data --format tmf678.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8678, show_default=True)
@click.option("--token", envvar="SFSYNC_TMF_TOKEN", default=None, help="Require this bearer token.")
def tmf_serve(directory: Path, host: str, port: int, token: str | None) -> None:
    """Serve a TMF678/666/676 biller on loopback from sample data (for demos and benchmarks)."""
    from sfsync.billers.tmf_server import serve

    click.echo(f"serving {directory} on http://{host}:{port}/tmf-api/ (Ctrl-C to stop)")
    serve(directory, host, port, token)


COMMANDS = (sample_data, sample_mutate, tmf_serve)
