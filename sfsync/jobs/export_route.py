"""Which biller a Salesforce record goes to, and which of that biller's mappings takes it.

Routing, first answer wins:

1. the object's ``route_field`` when it names a biller (an admin's explicit choice);
2. the biller that loaded the record's account (the state store's record state knows which
   biller holds ``(biller, "Account", key) → Id``); when several billers share the account,
   the one that loaded the record's statement;
3. the biller that loaded the record's statement;
4. ``export.default_biller``, else the only biller with an export mapping for the object;
5. otherwise the record is rejected: "no biller owns account X".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sfsync.jobs.export_filter import Condition

if TYPE_CHECKING:
    from sfsync.mappers import CompiledMapping
    from sfsync.state import StateStore

STATEMENT = "vlocity_cmt__Statement__c"
#: The ledger's biller for records no biller could be found for (not a valid biller name).
UNROUTED = "(unrouted)"

#: Biller export streams by the entity an export mapping names (files/SQL use the stream
#: names; TMF mappings name the TMF resource).
STREAM_OF_ENTITY = {
    "payments": "payments", "payment": "payments",
    "adjustments": "adjustments", "adjustment": "adjustments", "appliedCustomerBillingRate": "adjustments",
    "payment_methods": "payment_methods", "paymentMethod": "payment_methods",
    "disputes": "disputes", "dispute": "disputes",
}


@dataclass
class Target:
    """One biller's export mapping for an object."""

    biller: str
    compiled: CompiledMapping
    stream: str
    condition: Condition | None
    hash_fields: list[str]

    @property
    def fmt(self) -> str:
        """``csv`` (flat text values) or ``json`` (nested, typed)."""
        return self.compiled.mapping.target.format or "csv"


@dataclass
class Router:
    """Decides the biller of each pulled record of one object.

    Args:
        store: the state store (who loaded which account and statement).
        configured: every configured biller name.
        exporters: the billers able to export this object (with a mapping for it).
        default_biller: ``export.default_biller``.
        account_field, statement_field, route_field: from the object's export settings.
    """

    store: StateStore
    configured: set[str]
    exporters: list[str]
    default_biller: str | None = None
    account_field: str | None = None
    statement_field: str | None = None
    route_field: str | None = None
    _cache: dict[tuple[str | None, ...], tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        """The fields routing reads (added to the pull)."""
        return [f for f in (self.account_field, self.statement_field, self.route_field) if f]

    def route(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str | None]]:
        """Per row: the biller name (None when unroutable) and, when unroutable, why."""
        n = len(frame)
        acc = _column(frame, self.account_field, n)
        stm = _column(frame, self.statement_field, n)
        via = _column(frame, self.route_field, n)
        acc_owners = self.store.owners("Account", {a for a in acc if a}) if self.account_field else {}
        stm_owners = self.store.owners(STATEMENT, {s for s in stm if s}) if self.statement_field else {}
        fallback = self.default_biller or (self.exporters[0] if len(self.exporters) == 1 else None)
        billers = np.empty(n, dtype=object)
        reasons: list[str | None] = [None] * n
        for i in range(n):
            key = (acc[i], stm[i], via[i])
            hit = self._cache.get(key)
            if hit is None:
                hit = self._one(acc[i], stm[i], via[i], acc_owners, stm_owners, fallback)
                self._cache[key] = hit
            billers[i], reasons[i] = hit
        return billers, reasons

    def _one(self, acc: str | None, stm: str | None, via: str | None, acc_owners: dict[str, set[str]],
             stm_owners: dict[str, set[str]], fallback: str | None) -> tuple[str | None, str | None]:
        if via:
            if via in self.configured:
                return via, None
            return None, f"{self.route_field} names {via!r}, which is not a configured biller"
        owners = acc_owners.get(acc or "", set())
        by_statement = stm_owners.get(stm or "", set())
        if len(owners) == 1:
            return next(iter(owners)), None
        if owners:
            both = owners & by_statement
            if len(both) == 1:
                return next(iter(both)), None
            return None, (f"account {acc} is loaded by several billers ({', '.join(sorted(owners))}); "
                          f"set {self.route_field or 'a route_field'} to choose")
        if len(by_statement) == 1:
            return next(iter(by_statement)), None
        if fallback:
            return fallback, None
        return None, f"no biller owns account {acc or '(none)'}"


def _column(frame: pd.DataFrame, name: str | None, n: int) -> list[str | None]:
    if not name or name not in frame.columns:
        return [None] * n
    return [None if v is None else str(v) for v in frame[name].tolist()]


def choose_targets(frame: pd.DataFrame, targets: list[Target]) -> np.ndarray:
    """Per row, the index of the first target whose condition selects it (-1: none does)."""
    out = np.full(len(frame), -1, dtype=np.int64)
    for i, t in enumerate(targets):
        hit = np.ones(len(frame), dtype=bool) if t.condition is None else t.condition.mask(frame)
        out[(out < 0) & hit] = i
    return out
