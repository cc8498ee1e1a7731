"""Describe results cached in memory and on disk.

Mapping validation describes every object of every step before anything is sent; a
describe per object per run would cost calls for schemas that change a few times a year.
The disk cache lives under ``describe_cache_dir/<instance host>/<api version>/`` (an
emulator and a sandbox never share entries) and expires after ``max_age`` seconds or on
``--refresh``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: Default age after which a cached describe is fetched again.
DEFAULT_MAX_AGE = 24 * 3600.0

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class DescribeCache:
    """A two-level (memory, disk) cache of describe JSON, keyed by object name.

    Args:
        directory: root of the disk cache, or ``None`` for memory only.
        instance_url: the org's instance; part of the disk path.
        api_version: part of the disk path (describe shapes differ across versions).
        max_age: seconds a disk entry stays valid.
        refresh: ignore entries written before this cache was created.
    """

    def __init__(
        self,
        directory: Path | None,
        instance_url: str,
        api_version: str,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        refresh: bool = False,
    ) -> None:
        host = _SAFE.sub("_", urlparse(instance_url).netloc or instance_url)
        self.directory = Path(directory) / host / api_version if directory else None
        self.max_age = max_age
        # With refresh, anything on disk older than now is stale.
        self._not_before = time.time() if refresh else 0.0
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{_SAFE.sub('_', name)}.json"

    def get(self, name: str, fetch: Callable[[], Any], *, refresh: bool = False) -> Any:
        """The cached value for ``name``, else ``fetch()`` (stored in both levels)."""
        with self._lock:
            if not refresh and name in self._memory:
                return self._memory[name]
        path = self._path(name)
        if not refresh and path is not None:
            value = self._read(path)
            if value is not None:
                with self._lock:
                    self._memory[name] = value
                return value
        value = fetch()
        with self._lock:
            self._memory[name] = value
        if path is not None:
            self._write(path, value)
        return value

    def clear(self) -> None:
        """Forget everything: memory now, disk entries written before now."""
        with self._lock:
            self._memory.clear()
            self._not_before = time.time()

    def _read(self, path: Path) -> Any:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        if mtime < self._not_before or time.time() - mtime > self.max_age:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # a torn or foreign file: fetch again

    def _write(self, path: Path, value: Any) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".describe-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(value, fh)
            os.replace(tmp, path)  # atomic: concurrent runs never read half a file
        except OSError:
            pass  # the cache is an optimisation; a read-only disk must not stop a run
