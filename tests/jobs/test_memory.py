"""Allocator setup for long loads (process-wide, so each case runs in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys

SNIPPET = ("import pyarrow as pa; from sfsync.jobs.memory import tune_memory, give_back_memory, peak_rss_mb; "
           "before = pa.default_memory_pool().backend_name; tune_memory(); give_back_memory(); "
           "print(before, pa.default_memory_pool().backend_name, peak_rss_mb() > 0)")


def run(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SNIPPET], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_loads_allocate_arrow_buffers_through_the_system_allocator_unless_told_not_to() -> None:
    import pyarrow as pa

    before, after, rss = run()
    assert after == "system" and rss == "True"
    before, after, _ = run(SFSYNC_ARROW_POOL="default", SFSYNC_MALLOC="default")
    assert after == before
    if hasattr(pa, "jemalloc_memory_pool"):
        assert run(SFSYNC_ARROW_POOL="jemalloc")[1] == "jemalloc"
