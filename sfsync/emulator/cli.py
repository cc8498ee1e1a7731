"""``sfsync emulator`` commands (the lead wires the group into ``sfsync.cli``)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from sfsync.emulator.faults import Faults
from sfsync.emulator.org import Org
from sfsync.emulator.server import ServerHandle, serve


@click.group(name="emulator")
def emulator() -> None:
    """A local Salesforce org with the Vlocity billing schema."""


@emulator.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep it loopback).")
@click.option("--port", default=8443, show_default=True, type=int, help="HTTPS port (0 picks a free one).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".sfsync/emulator"),
              show_default=True, help="Where data, key material and connection.json live.")
@click.option("--schema-overlay", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file adding fields/objects to the packaged schema.")
@click.option("--faults", "faults_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON fault knobs (see docs/emulator.md).")
@click.option("--bulk-retention-mb", type=click.FloatRange(min=0), default=None,
              help="Data finished Bulk jobs keep before the oldest are deleted "
                   "[default: $SFSYNC_EMULATOR_BULK_RETENTION_MB, else 256].")
def serve_cmd(host: str, port: int, state_dir: Path, schema_overlay: Path | None, faults_file: Path | None,
              bulk_retention_mb: float | None) -> None:
    """Serve the org over HTTPS until Ctrl-C / SIGTERM; the state is flushed on the way out."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        faults = Faults.load(faults_file) if faults_file else None
        org = Org(state_dir=state_dir, schema_overlay=schema_overlay, faults=faults, bulk_retention_mb=bulk_retention_mb)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from None

    def ready(handle: ServerHandle) -> None:
        click.echo(f"sfsync emulator serving {handle.url}")
        click.echo(f"connection.json: {handle.connection_file}")
        click.echo("Ctrl-C to stop")

    serve(org, host=host, port=port, state_dir=state_dir, on_ready=ready)
    click.echo("emulator stopped; state saved")
