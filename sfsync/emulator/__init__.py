"""The local Salesforce-compatible org (see docs/emulator.md).

What the rest of sfsync may use (imported lazily, so ``import sfsync.emulator`` stays cheap):

* ``Org`` — the org (records, DML, counters, limits, faults); ``Faults``;
* ``SfApiError``, ``SfError``, ``DmlResult`` — errors and row results;
* ``create_app(org)`` — the WSGI app; ``run_in_thread(org, port=0)`` — HTTPS on loopback;
* ``inprocess_salesforce(org)``, ``inprocess_session(org)``, ``route_requests(org)`` — no-socket use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Org": "sfsync.emulator.org",
    "Faults": "sfsync.emulator.faults",
    "SfApiError": "sfsync.emulator.errors",
    "SfError": "sfsync.emulator.errors",
    "DmlResult": "sfsync.emulator.errors",
    "create_app": "sfsync.emulator.app",
    "run_in_thread": "sfsync.emulator.server",
    "inprocess_salesforce": "sfsync.emulator.testing",
    "inprocess_session": "sfsync.emulator.testing",
    "route_requests": "sfsync.emulator.testing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sfsync.emulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
