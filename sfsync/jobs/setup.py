"""Build what jobs need from the settings: the Salesforce client, the billers, their mappings.

Kept apart from the jobs so that load, refresh and export wire things the same way.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sfsync.config import BillerSettings, Settings
from sfsync.errors import ConfigError, UserError

if TYPE_CHECKING:
    import requests

    from sfsync.billers import Biller
    from sfsync.mappers import Mapping
    from sfsync.salesforce import SalesforceClient
    from sfsync.state import StateStore


def connect_salesforce(settings: Settings, *, session: requests.Session | None = None,
                       refresh_describe: bool = False) -> SalesforceClient:
    """Log in to the org the settings name, with the run's API budget guard."""
    from sfsync.salesforce import BudgetGuard, RetryPolicy, connect

    return connect(cast(Any, settings.salesforce), session=session, guard=BudgetGuard(settings.limits.api_budget_share),
                   policy=RetryPolicy(attempts=settings.limits.max_retries + 1), refresh_describe=refresh_describe)


def select_billers(settings: Settings, names: list[str] | None) -> list[BillerSettings]:
    """The billers a run covers: those named (in config order), else every enabled one."""
    if names:
        for n in names:
            settings.biller(n)  # raises a ConfigError naming the configured billers
        return [b for b in settings.billers if b.name in names]
    chosen = [b for b in settings.billers if b.enabled]
    if not chosen:
        raise ConfigError("no billers configured (add one under 'billers:')", file=str(settings.source or ""))
    return chosen


def make_biller(b: BillerSettings, store: StateStore | None) -> Biller:
    """Instantiate one configured biller."""
    from sfsync.billers import make_biller as _make

    return _make(b.name, b.kind, b.kind_settings(), store)


def mapping_files(b: BillerSettings, settings: Settings, direction: str = "import") -> list[Path]:
    """The mapping files of a biller: its patterns, relative to the working directory or the config's."""
    bases = [Path.cwd()]
    if settings.source is not None:
        bases.append(settings.source.resolve().parent.parent)
        bases.append(settings.source.resolve().parent)
    found: list[Path] = []
    for pattern in b.mappings:
        hits: list[str] = []
        for base in bases:
            p = Path(pattern)
            hits = sorted(glob.glob(str(p if p.is_absolute() else base / p), recursive=True))
            if hits:
                break
        if not hits:
            raise ConfigError(f"no mapping file matches {pattern!r}", file=str(settings.source or ""),
                              key=f"billers[{settings.billers.index(b)}].mappings")
        found.extend(Path(h) for h in hits)
    return list(dict.fromkeys(found))


def load_biller_mappings(b: BillerSettings, settings: Settings, direction: str = "import") -> list[Mapping]:
    """The biller's mappings of one direction (import for load/refresh, export for export)."""
    from sfsync.mappers import load_mappings

    mappings = [m for m in load_mappings(mapping_files(b, settings)) if m.direction == direction]
    if not mappings:
        raise UserError(f"biller {b.name!r} has no {direction} mappings among {', '.join(b.mappings) or '[]'}")
    return mappings


def describe_fn(client: SalesforceClient) -> Any:
    """The describe callable the mapper wants."""
    return client.describe
