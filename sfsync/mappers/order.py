"""Load order from references: parents before children, a cycle is a mapping error.

A mapping depends on every other mapping whose target object it references — through an
sfsync lookup (``lookup.sobject``) or an external-ID relationship column (``X__r.Field``).
References into the mapping's own object (Account.ParentId) are not edges: they are resolved
in a deferred "after" step (see :meth:`MappedBatch.deferred_updates`).
"""

from __future__ import annotations

import re

from sfsync.errors import MappingError
from sfsync.mappers.describe import DescribeLike, describer
from sfsync.mappers.models import Mapping

_STANDARD = {"account": "Account", "parent": "Account", "contact": "Contact", "case": "Case",
             "asset": "Asset", "owner": "User", "recordtype": "RecordType"}


def _guess_object(relationship: str) -> str:
    """``vlocity_cmt__StatementId__r`` → ``vlocity_cmt__Statement__c``; ``Account`` → ``Account``."""
    rel = relationship[:-3] if relationship.endswith("__r") else relationship
    m = re.match(r"^(?:(\w+?)__)?(\w+?)(Id)?$", rel)
    if not m:
        return relationship
    ns, base = m.group(1), m.group(2)
    if relationship.endswith("__r"):
        return f"{ns}__{base}__c" if ns else f"{base}__c"
    return _STANDARD.get(base.lower(), base)


def references(m: Mapping, describe: DescribeLike = None) -> set[str]:
    """The sObjects a mapping points to (excluding its own)."""
    desc = describer(describe)
    out: set[str] = set()
    for name, spec in m.fields.items():
        if spec.lookup is not None:
            out.add(spec.lookup.sobject)
        elif "." in name:
            target = desc.relationship_target(m.sobject, name) if desc else None
            out.add(target[0] if target else _guess_object(name.split(".")[0]))
    out.discard(m.sobject)
    out.discard("RecordType")
    return out


def plan_order(mappings: list[Mapping], describe: DescribeLike = None) -> list[Mapping]:
    """Order import mappings so every parent object is loaded before its children.

    Exports keep their given order, after the imports. Among mappings free to go, the
    given order is kept (stable), so runs are reproducible.

    Raises:
        MappingError: A reference cycle; the message names the mappings involved.
    """
    imports = [m for m in mappings if m.direction == "import"]
    exports = [m for m in mappings if m.direction != "import"]
    by_object: dict[str, list[int]] = {}
    for i, m in enumerate(imports):
        by_object.setdefault(m.sobject, []).append(i)
    deps: dict[int, set[int]] = {i: set() for i in range(len(imports))}
    for i, m in enumerate(imports):
        for obj in references(m, describe):
            deps[i].update(j for j in by_object.get(obj, []) if j != i)
    done: list[int] = []
    remaining = set(deps)
    while remaining:
        ready = sorted(i for i in remaining if deps[i] <= set(done))
        if not ready:
            cycle = _find_cycle(deps, remaining)
            names = " -> ".join(imports[i].name for i in cycle)
            msg = f"reference cycle between mappings: {names}"
            raise MappingError(msg, [f"{imports[cycle[0]].where('fields')}: fields: {msg}"])
        done.append(ready[0])
        remaining.discard(ready[0])
    return [imports[i] for i in done] + exports


def _find_cycle(deps: dict[int, set[int]], nodes: set[int]) -> list[int]:
    start = min(nodes)
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = min(d for d in deps[node] if d in nodes)
        if node in seen:
            return path[seen[node]:] + [node]
        seen[node] = len(path)
        path.append(node)
