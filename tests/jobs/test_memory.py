"""Allocator setup for long loads (process-wide, so each case runs in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


TRIM = """
from sfsync.jobs.memory import tune_memory, give_back_memory, heap_free_bytes
def rss_mb():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20
tune_memory()
blocks = [bytearray(64 * 1024) for _ in range(1600)]  # 100 MB of heap chunks
pin = bytearray(64 * 1024)  # keeps the heap's top in use, as a running load does
del blocks
free, held = heap_free_bytes() >> 20, rss_mb()
give_back_memory(min_free=200 << 20)
kept = rss_mb()
give_back_memory(min_free=50 << 20)
print(free, held - kept, held - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the trim and mallinfo2 are glibc's")
def test_a_streamed_batch_trims_the_heap_only_when_it_holds_more_than_the_threshold_free() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True, check=True)
    free, dropped_below, dropped_above = map(int, out.stdout.split())
    assert free >= 95  # what the freed blocks left in the heap, as glibc reports it
    assert dropped_below < 5  # 100 MB free is under a 200 MB threshold: nothing given back
    assert dropped_above >= 90  # over a 50 MB one: the freed pages go back to the system
