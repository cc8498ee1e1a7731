"""Billers: where billing data comes from and where exports go.

Public surface: the protocol (:mod:`sfsync.billers.base`), the registry
:data:`BILLER_KINDS` (kind → class; adding a kind = adding one module and one line here),
:func:`make_biller`, and the sample-data generator.
"""

from __future__ import annotations

from typing import Any

from sfsync.billers.base import (
    EXPORT_STREAMS,
    REJECT_SCHEMA,
    SOURCE,
    Batch,
    Biller,
    EntitySpec,
    ExportResult,
    SupportsAccountFetch,
    SupportsExport,
)
from sfsync.billers.files import FileBiller, FileBillerSettings
from sfsync.billers.layout import ACCOUNT_ENTITIES, FILES_ENTITIES, TMF_ACCOUNT_ENTITIES, TMF_ENTITIES
from sfsync.billers.sql import SqlBiller, SqlBillerSettings
from sfsync.billers.tmf678 import TmfBiller, TmfBillerSettings

BILLER_KINDS: dict[str, type[Biller]] = {
    FileBiller.kind: FileBiller,
    SqlBiller.kind: SqlBiller,
    TmfBiller.kind: TmfBiller,
}


def make_biller(name: str, kind: str, values: dict[str, Any], store: Any = None) -> Biller:
    """Build a biller of ``kind`` from its raw config keys (validated by the kind's settings model)."""
    from sfsync.errors import ConfigError

    cls = BILLER_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"unknown biller kind {kind!r}; expected one of {', '.join(sorted(BILLER_KINDS))}")
    return cls.from_config(name, values, store)


__all__ = [
    "ACCOUNT_ENTITIES", "BILLER_KINDS", "EXPORT_STREAMS", "FILES_ENTITIES", "REJECT_SCHEMA", "SOURCE",
    "TMF_ACCOUNT_ENTITIES", "TMF_ENTITIES", "Batch", "Biller", "EntitySpec", "ExportResult", "FileBiller",
    "FileBillerSettings", "SqlBiller", "SqlBillerSettings", "SupportsAccountFetch", "SupportsExport", "TmfBiller", "TmfBillerSettings", "make_biller",
]
