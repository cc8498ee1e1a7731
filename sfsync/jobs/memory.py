"""Keeping a long load's resident memory at one batch's worth: allocator settings and trims.

A load allocates and frees a batch's buffers over and over. Left alone, glibc gives each
thread its own heap arena and keeps what was freed in each, and raises its mmap threshold after
the first large free, so big buffers come from heaps that fragment. pyarrow's own allocators
(jemalloc, mimalloc) keep extents of what was freed as well: a load of a million line items
peaked 20-45 MB higher through them than through glibc set up as below. So Arrow allocates
from the system allocator; buffers from 2 MiB up are mapped and unmapped as they come and go,
smaller ones come from the heap, which is trimmed after each batch.

The threshold is a trade: every freshly mapped page costs a page fault (~2 µs of system time
per 4 KiB) when first touched. At 256 KiB a load of a million line items took 540,000 faults;
at 2 MiB (most of a 50,000-row batch's column buffers reuse heap memory) 410,000, for the same
peak; from 4 MiB up the heap fragments and the peak grows (+35 MB at 4 MiB).
"""

from __future__ import annotations

import ctypes
import os
import resource

import pyarrow as pa

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 2 << 20  # buffers from 2 MiB up are mapped, and unmapped when freed
ARENA_MAX = 2

_TUNED = False


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None  # not glibc: its defaults stand


_LIBC = _libc()


def tune_memory() -> None:
    """Set the allocators up for a long load (process-wide, once; call before threads start).

    * glibc: at most :data:`ARENA_MAX` heap arenas, and a fixed mmap threshold
      (:data:`MMAP_THRESHOLD`) so freed batch buffers go back to the system at once
      (``SFSYNC_MALLOC=default`` keeps glibc's defaults);
    * Arrow: the system allocator (``SFSYNC_ARROW_POOL=jemalloc`` for jemalloc with no decay,
      ``default`` for pyarrow's own choice).
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if _LIBC is not None and os.environ.get("SFSYNC_MALLOC", "tuned") == "tuned":
        _LIBC.mallopt(_M_ARENA_MAX, ARENA_MAX)
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    pool = os.environ.get("SFSYNC_ARROW_POOL", "system")
    if pool == "system":
        pa.set_memory_pool(pa.system_memory_pool())
    elif pool == "jemalloc":
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(int(os.environ.get("SFSYNC_ARROW_DECAY_MS", "0")))
        except pa.ArrowException:
            pass  # a pyarrow build without jemalloc: keep its default pool


def give_back_memory() -> None:
    """Return the heap a finished batch freed to the system (glibc keeps it otherwise)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def peak_rss_mb() -> int:
    """This process's peak resident size (VmHWM; ``ru_maxrss`` would report a parent's before exec)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) // 1024 for x in fh if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


