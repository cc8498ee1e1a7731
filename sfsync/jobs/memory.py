"""Keeping a long load's resident memory at one batch's worth: allocator settings and trims.

A load allocates and frees a batch's buffers over and over. Left alone, glibc gives each
thread its own heap arena and keeps what was freed in each, and raises its mmap threshold after
the first large free, so big buffers come from heaps that fragment. pyarrow's own allocators
(jemalloc, mimalloc) keep extents of what was freed as well: a load of a million line items
peaked 20-45 MB higher through them than through glibc set up as below. So Arrow allocates
from the system allocator; buffers from 2 MiB up are mapped and unmapped as they come and go,
smaller ones come from the heap, which is trimmed after each batch: always after a batch that
waited in the send window, and after a streamed batch only when the heap holds more than
:data:`STREAM_TRIM_FREE` free (the next streamed batch reuses most of it; trimming each time
cost a tenth of the line-item step's CPU in page faults for the same peak).

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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None  # not glibc: its defaults stand
    if hasattr(libc, "mallinfo2"):  # glibc 2.33+
        libc.mallinfo2.restype = _MallInfo2
    return libc


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


#: Free heap above which a streamed batch's end trims (see :func:`give_back_memory`).
STREAM_TRIM_FREE = 48 << 20


def give_back_memory(min_free: int = 0) -> None:
    """Return the heap a finished batch freed to the system (glibc keeps it otherwise).

    Args:
        min_free: trim only when the heaps hold more than this many free bytes (reading that
            costs ~60 µs; a trim, in the page faults that touch the memory again, milliseconds).
    """
    if _LIBC is None:
        return
    if min_free and heap_free_bytes() <= min_free:
        return
    _LIBC.malloc_trim(0)


def heap_free_bytes() -> int:
    """Bytes glibc holds free in its heaps (``mallinfo2().fordblks``; 0 where unknown)."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return 0
    return int(_LIBC.mallinfo2().fordblks)


def peak_rss_mb() -> int:
    """This process's peak resident size (VmHWM; ``ru_maxrss`` would report a parent's before exec)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) // 1024 for x in fh if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

