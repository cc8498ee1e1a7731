"""Describe access for the mapper: one object that answers "what is field X of object Y".

Callers hand the mapper whatever they have — a function (the Salesforce client's cached
``describe``, the emulator's ``Org().describe``), a dict of describe bodies (tests), or a
directory of cached describe files (``.sfsync/describe/<Obj>.json``, for offline validate and
preview) — and :func:`describer` wraps it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sfsync.mappers.coerce import FieldType

DescribeFn = Callable[[str], dict[str, Any]]

DEFAULT_CACHE_DIR = Path(".sfsync/describe")


class Describer:
    """Caches describe bodies and indexes their fields by name."""

    def __init__(self, fetch: DescribeFn) -> None:
        self._fetch = fetch
        self._bodies: dict[str, dict[str, Any] | None] = {}
        self._fields: dict[str, dict[str, dict[str, Any]]] = {}

    def describe(self, sobject: str) -> dict[str, Any] | None:
        """The describe body, or None when the object is unknown to the org."""
        if sobject not in self._bodies:
            try:
                body = self._fetch(sobject)
            except (KeyError, FileNotFoundError, LookupError):
                body = None
            except Exception as exc:  # noqa: BLE001 — any "no such object" answer from a client
                if "NOT_FOUND" in str(exc) or "not found" in str(exc).lower() or "unknown" in str(exc).lower():
                    body = None
                else:
                    raise
            self._bodies[sobject] = body
            if body:
                self._fields[sobject] = {f["name"]: f for f in body.get("fields", [])}
                # Field names are case-insensitive in Salesforce; index the lower-case too.
                self._fields[sobject].update({f["name"].lower(): f for f in body.get("fields", [])})
        return self._bodies[sobject]

    def field(self, sobject: str, name: str) -> dict[str, Any] | None:
        """One field's describe entry (case-insensitive), or None."""
        if self.describe(sobject) is None:
            return None
        fields = self._fields.get(sobject, {})
        return fields.get(name) or fields.get(name.lower())

    def field_type(self, sobject: str, name: str) -> FieldType | None:
        """The :class:`FieldType` of a field, following ``Rel__r.Field`` one hop."""
        if "." in name:
            target = self.relationship_target(sobject, name)
            if target is None:
                return None
            obj, fname = target
            f = self.field(obj, fname)
            return FieldType.from_describe({**f, "name": name}) if f else None
        f = self.field(sobject, name)
        return FieldType.from_describe(f) if f else None

    def relationship_target(self, sobject: str, path: str) -> tuple[str, str] | None:
        """For ``vlocity_cmt__StatementId__r.vlocity_cmt__ExternalID__c``: (parent sObject, field)."""
        rel, _, fname = path.partition(".")
        for f in self._fields_of(sobject):
            if (f.get("relationshipName") or "").lower() == rel.lower() and f.get("referenceTo"):
                return f["referenceTo"][0], fname
        return None

    def reference_field(self, sobject: str, path: str) -> dict[str, Any] | None:
        """The reference field behind a relationship name (``X__r`` → ``X__c``)."""
        rel = path.partition(".")[0]
        for f in self._fields_of(sobject):
            if (f.get("relationshipName") or "").lower() == rel.lower():
                return f
        return None

    def _fields_of(self, sobject: str) -> list[dict[str, Any]]:
        body = self.describe(sobject)
        return list(body.get("fields", [])) if body else []

    def fields(self, sobject: str) -> list[dict[str, Any]]:
        """All field entries of an object (empty when unknown)."""
        return self._fields_of(sobject)

    def record_types(self, sobject: str) -> dict[str, str]:
        """DeveloperName → record type Id (active ones, master excluded)."""
        body = self.describe(sobject) or {}
        return {
            r["developerName"]: r["recordTypeId"]
            for r in body.get("recordTypeInfos", [])
            if r.get("active", True) and not r.get("master") and r.get("developerName")
        }


DescribeLike = DescribeFn | Mapping[str, dict[str, Any]] | Describer | None


def from_cache_dir(directory: str | Path) -> DescribeFn:
    """A describe function reading ``<dir>/<Obj>.json`` files (written by a previous run or by hand).

    Also finds files in the Salesforce client's cache layout (``<dir>/<host>/<version>/<Obj>.json``).
    """
    root = Path(directory)

    def fetch(sobject: str) -> dict[str, Any]:
        direct = root / f"{sobject}.json"
        if direct.exists():
            return json.loads(direct.read_text(encoding="utf-8"))
        for candidate in sorted(root.glob(f"*/*/{sobject}.json")):
            return json.loads(candidate.read_text(encoding="utf-8"))
        raise FileNotFoundError(str(direct))

    return fetch


def describer(source: DescribeLike) -> Describer | None:
    """Wrap a describe function, a dict of bodies or a :class:`Describer` (None stays None)."""
    if source is None or isinstance(source, Describer):
        return source
    if isinstance(source, Mapping):
        bodies = dict(source)
        return Describer(lambda name: bodies[name])
    return Describer(source)


def write_cache(directory: str | Path, bodies: Mapping[str, dict[str, Any]]) -> None:
    """Write describe bodies as ``<dir>/<Obj>.json`` (so validate/preview can run offline)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for name, body in bodies.items():
        (root / f"{name}.json").write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
