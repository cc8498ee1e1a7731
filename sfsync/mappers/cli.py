"""``sfsync mapping validate | preview | schema`` — a click group usable on its own.

Parse, call the mapper, print. User mistakes print every problem and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sfsync.errors import MappingError, UserError

EXIT_USAGE = 2
DEFAULT_MAPPINGS = "mappings"


def _fail(problems: list[str], header: str) -> None:
    click.echo(header, err=True)
    for p in problems:
        click.echo(f"  {p}", err=True)
    sys.exit(EXIT_USAGE)


def _describe_source(org: bool, cache: str | None, config: str | None, offline: bool = False) -> tuple[Any, str]:
    """The describe to use and a note on where it comes from.

    ``--describe-cache`` wins; ``--org`` connects (falling back to the emulator's schema when no
    connection is configured); ``offline`` (preview's default) uses ``.sfsync/describe`` when
    present, else the emulator's schema.
    """
    from sfsync.mappers.describe import DEFAULT_CACHE_DIR, from_cache_dir

    if offline and not org and not cache:
        if DEFAULT_CACHE_DIR.is_dir() and any(DEFAULT_CACHE_DIR.glob("*.json")):
            cache = str(DEFAULT_CACHE_DIR)
        else:
            from sfsync.emulator.org import Org

            return Org().describe, "the local emulator's schema"
    if cache:
        if not Path(cache).is_dir():
            raise UserError(f"--describe-cache {cache}: no such directory")
        return from_cache_dir(cache), f"describe cache {cache}"
    if org:
        try:
            from sfsync.config import load_settings
            from sfsync.salesforce import connect

            settings = load_settings(config)
            client = connect(settings.salesforce)  # type: ignore[arg-type]
            return client.describe, "the org"
        except ImportError:
            pass
        except UserError as exc:
            click.echo(f"note: no Salesforce connection ({exc}); using the local emulator's schema", err=True)
        from sfsync.emulator.org import Org

        return Org().describe, "the local emulator's schema"
    return None, ""


@click.group(name="mapping")
def mapping() -> None:
    """Validate, preview and describe mappings."""


@mapping.command("validate")
@click.argument("files", nargs=-1, type=click.Path())
@click.option("--org", "use_org", is_flag=True, help="Also check against the org's describe (emulator when offline).")
@click.option("--describe-cache", type=click.Path(), default=None, help="Directory of <Object>.json describe files.")
@click.option("--config", "config_path", type=click.Path(), default=None, help="sfsync config file (for --org).")
def validate(files: tuple[str, ...], use_org: bool, describe_cache: str | None, config_path: str | None) -> None:
    """Check mapping FILES (default: the mappings/ folder). Exit 2 listing every problem."""
    from sfsync.mappers.describe import describer
    from sfsync.mappers.loader import discover, load_mapping
    from sfsync.mappers.order import plan_order
    from sfsync.mappers.validate import validate_mapping

    paths = discover(files or [DEFAULT_MAPPINGS])
    if not paths:
        _fail([f"{', '.join(files) or DEFAULT_MAPPINGS}: no mapping files found"], "mapping validate: nothing to check")
    try:
        source, where = _describe_source(use_org, describe_cache, config_path)
    except UserError as exc:
        _fail([str(exc)], "mapping validate: cannot read the describe")
    desc = describer(source)
    problems: list[str] = []
    loaded = []
    for p in paths:
        try:
            m = load_mapping(p)
        except MappingError as exc:
            problems.extend(exc.problems)
            continue
        loaded.append(m)
        problems.extend(validate_mapping(m, desc))
    names: dict[str, str] = {}
    for m in loaded:
        if m.name in names:
            problems.append(m.problem(("name",), f"mapping name {m.name!r} is also used by {names[m.name]}"))
        names.setdefault(m.name, m.path)
    try:
        plan_order(loaded, desc)
    except MappingError as exc:
        problems.extend(exc.problems)
    if problems:
        _fail(problems, f"{len(problems)} problem(s) in {len(paths)} mapping file(s):")
    checked = f" against {where}" if where else " (statically; add --org or --describe-cache for org checks)"
    click.echo(f"ok: {len(loaded)} mapping(s) valid{checked}")


@mapping.command("preview")
@click.argument("mapping_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--input", "input_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A .csv, .jsonl or .parquet file in the biller's layout.")
@click.option("--limit", default=20, show_default=True, help="Records to read.")
@click.option("--biller", default="preview", show_default=True, help="Biller name used in keys.")
@click.option("--org", "use_org", is_flag=True, help="Describe from the org (emulator when offline).")
@click.option("--describe-cache", type=click.Path(), default=None, help="Directory of <Object>.json describe files.")
@click.option("--config", "config_path", type=click.Path(), default=None, help="sfsync config file (for --org).")
def preview(mapping_file: str, input_file: str, limit: int, biller: str, use_org: bool,
            describe_cache: str | None, config_path: str | None) -> None:
    """Show MAPPING_FILE applied to the first rows of --input: mapped rows, then rejects.

    Lookups are not resolved (no org queries): their values show in ``_lookup.*`` columns.
    """
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from sfsync.mappers.compile import compile_mapping
    from sfsync.mappers.inputs import read_input
    from sfsync.mappers.loader import load_mapping

    try:
        m = load_mapping(mapping_file)
        source, where = _describe_source(use_org, describe_cache, config_path, offline=True)
        compiled = compile_mapping(m, source)
        table = read_input(input_file, limit)
        batch = compiled.apply(table, biller=biller)
    except MappingError as exc:
        _fail(exc.problems, f"mapping preview: {len(exc.problems)} problem(s):")
    except (UserError, ValueError) as exc:
        _fail([str(exc)], "mapping preview: cannot run")
    out = Console(highlight=False, soft_wrap=False, width=None if Console().is_terminal else 200)
    rows = batch.rows
    grid = Table(title=f"{m.name}: {rows.num_rows} mapped row(s) → {compiled.sobject or m.target.entity}"
                       f" (types from {where})", show_lines=False)
    grid.add_column("field", style="bold", no_wrap=True)
    for i in range(rows.num_rows):
        grid.add_column(str(rows.column("_source")[i].as_py()), overflow="fold")
    for name in rows.column_names:
        if name == "_source":
            continue
        values = rows.column(name).to_pylist()
        grid.add_row(name, *["" if v is None else str(v) for v in values])
    out.print(grid)
    if batch.skipped:
        out.print(f"skipped: {batch.skipped} ({', '.join(f'{k}: {v}' for k, v in batch.skipped_by.items())})")
    if len(batch.rejects):
        rej = Table(title=f"{len(batch.rejects)} rejected row(s)")
        for col in ("_source", "_key", "code", "message"):
            rej.add_column(col, overflow="fold")
        for rec in batch.rejects.itertuples(index=False):
            rej.add_row(*["" if pd.isna(v) else str(v) for v in rec])
        out.print(rej)
    else:
        out.print("no rejected rows")


@mapping.command("schema")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
def schema(out_file: str | None) -> None:
    """Print (or write) the JSON Schema of the mapping format, for editor autocompletion."""
    from sfsync.mappers.schema import mapping_json_schema

    text = json.dumps(mapping_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out_file:
        Path(out_file).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out_file}")
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    mapping()
