"""The ``sfsync`` command: parse, call a job, print. No business logic lives here.

Exit codes: 0 success, 1 failure, 2 usage/config/mapping error, 3 finished with rejected rows.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from sfsync import __version__, log
from sfsync.app import App
from sfsync.errors import SfsyncError, UserError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3

# Subcommands that live beside the code they drive; imported only when invoked, so that
# `sfsync --help` and `sfsync config check` stay fast (no pandas import).
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "emulator": ("sfsync.emulator.cli", "emulator", "Run the local Salesforce org emulator."),
    "mapping": ("sfsync.mappers.cli", "mapping", "Validate, preview and describe mappings."),
    "sample-data": ("sfsync.billers.cli", "sample_data", "Generate realistic biller data."),
    "sample-mutate": ("sfsync.billers.cli", "sample_mutate", "Change a share of sample line items (to rehearse incremental loads)."),
    "tmf-serve": ("sfsync.billers.cli", "tmf_serve", "Serve sample data as a TMF678 biller on loopback."),
    "load": ("sfsync.jobs.cli", "load", "Load the billers' data into Salesforce (only what changed)."),
    "retry": ("sfsync.jobs.cli", "retry", "Re-send the rejected rows of a run."),
    "rejects": ("sfsync.jobs.cli", "rejects", "Show (or write as CSV) the rejected rows of a run."),
    "export": ("sfsync.jobs.cli", "export", "Export payments, adjustments, methods and disputes to billers."),
    "demo": ("sfsync.demo", "demo", "Rehearse a load against the local org emulator (what `make demo` runs)."),
}


class LazyGroup(click.Group):
    """A click group whose plugin subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        module, attr, _help = LAZY_COMMANDS[name]
        try:
            found: click.Command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise click.ClickException(f"command {name!r} is not available in this build: {exc}") from None
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][2]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str(limit=80)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


pass_app = click.make_pass_decorator(App)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="SFSYNC_CONFIG",
              help="Config file (default config/sfsync.yaml; env SFSYNC_CONFIG).")
@click.option("--log-format", type=click.Choice(["console", "json"]), envvar="SFSYNC_LOG_FORMAT",
              help="Log format (default: console on a terminal, JSON otherwise).")
@click.option("-v", "--verbose", count=True, help="More detail (-vv for library debug logs).")
@click.version_option(__version__, prog_name="sfsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_format: str | None, verbose: int) -> None:
    """sfsync keeps Salesforce Communications Cloud billing data true to your billers."""
    from pathlib import Path

    log.configure(log_format, verbose)
    app = App(config_path=Path(config_path) if config_path else None, log_format=log_format, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


# -- config --------------------------------------------------------------------------------------
@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved configuration as JSON.")
@pass_app
def config_check(app: App, as_json: bool) -> None:
    """Validate the configuration and print it resolved, with every secret masked."""
    import yaml

    from sfsync.config import masked

    settings = app.settings
    data = masked(settings)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(f"# {settings.source}: valid", err=True)
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


# -- db -----------------------------------------------------------------------------------------
@cli.group("db")
def db_group() -> None:
    """Manage the state store."""


@db_group.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply the state store's migrations (an empty database is created)."""
    from sfsync.state import StateStore
    from sfsync.state.migrate import current, upgrade

    s = app.settings_or_defaults()
    store = StateStore(s.database.url, upgrade=False)
    try:
        before = current(store.engine)
        after = upgrade(store.engine)
    finally:
        store.close()
    url = store.engine.url.render_as_string(hide_password=True)
    click.echo(f"{url}: {before or 'empty'} -> {after}" if before != after else f"{url}: already at {after}")


@db_group.command("status")
@pass_app
def db_status(app: App) -> None:
    """Show the migration revision and row counts of the state store."""
    from sfsync.state.migrate import current

    store = app.store
    click.echo(f"database: {store.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"revision: {current(store.engine)}")
    for name, n in store.table_counts().items():
        click.echo(f"  {name:<16} {n:>12,}")


# -- runs ---------------------------------------------------------------------------------------
@cli.group("runs")
def runs_group() -> None:
    """Run history."""


@runs_group.command("list")
@click.option("--job", help="Only runs of this job (load, export, refresh, ...).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_list(app: App, job: str | None, limit: int, as_json: bool) -> None:
    """The latest runs, newest first."""
    from sfsync import render

    runs = app.store.list_runs(job=job, limit=limit)
    if as_json:
        click.echo(json.dumps([render.run_dict(r) for r in runs], indent=2, default=str))
    else:
        render.print_runs(runs)


@runs_group.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_show(app: App, run_id: int, as_json: bool) -> None:
    """One run: status, timings, per-object counts, API calls, rejects."""
    from sfsync import render

    run = app.store.get_run(run_id)
    if run is None:
        raise UserError(f"no run {run_id} in {app.store.engine.url.render_as_string(hide_password=True)}")
    rejected = app.store.count_rejects(run_id)
    if as_json:
        click.echo(json.dumps({**render.run_dict(run), "rejected_rows": rejected}, indent=2, default=str))
    else:
        render.print_run(run, rejected)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn errors into one line and the exit-code contract."""
    try:
        rc: Any = cli.main(args=argv, prog_name="sfsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("sfsync: aborted", err=True)
        return EXIT_FAILURE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SfsyncError as exc:
        click.echo(f"sfsync: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("sfsync: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, traceback with -v
        if "-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv):
            raise
        click.echo(f"sfsync: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
                   err=True)
        return EXIT_FAILURE
    return rc if isinstance(rc, int) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
