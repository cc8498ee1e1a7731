"""A 64-bit hash of every string in an Arrow array, in numpy: no Python object per row.

Billers use it to spot duplicate keys within a file, the state store to file record states by
key. Hashing a million keys costs ~40 ms (XXH3 called once per key from Python: ~250 ms).

Each string up to :data:`LONG_BYTES` is read as little-endian 64-bit words (zero-padded),
folded with a multiply–xorshift step, then mixed with its byte length; longer ones get XXH3-64. A string's hash depends only on its
bytes, never on the other strings of the batch. Not cryptographic: callers must treat two
keys with one hash as possible (rare: about n²/2⁶⁵ for n keys).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


#: Values longer than this are hashed one by one with XXH3: padding every value of a column to
#: its longest would make one 1 KB value cost as much as a thousand short ones.
LONG_BYTES = 64


def hash_strings(values: pa.Array | pa.ChunkedArray, seed: int = 0) -> np.ndarray:
    """uint64 hash of each value's UTF-8 bytes (null hashes like the empty string)."""
    s = pc.fill_null(values.cast(pa.string()) if values.type != pa.string() else values, "")
    if isinstance(s, pa.ChunkedArray):
        s = s.combine_chunks()
    n = len(s)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    lengths = pc.binary_length(s).to_numpy(zero_copy_only=False).astype(np.int64)
    long = lengths > LONG_BYTES
    if not long.any():
        return _hash_short(s, lengths, seed)
    out = np.empty(n, dtype=np.uint64)
    short = ~long
    if short.any():
        out[short] = _hash_short(s.filter(pa.array(short)), lengths[short], seed)
    h = xxhash.xxh3_64_intdigest
    values = s.filter(pa.array(long)).cast(pa.binary()).to_pylist()
    out[long] = np.fromiter((h(v, seed) for v in values), dtype=np.uint64, count=len(values))
    return out


def _hash_short(s: pa.Array, lengths: np.ndarray, seed: int) -> np.ndarray:
    n = len(s)
    width = max(8, (int(lengths.max()) + 7) // 8 * 8)
    words = _words(s, lengths, width)
    nwords = (lengths + 7) // 8
    uniform = int(nwords.min()) == int(nwords.max())
    acc = np.full(n, np.uint64(seed) ^ _M3, dtype=np.uint64)
    mixed = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(nwords.max())):
            np.bitwise_xor(acc, words[:, j], out=mixed)
            mixed *= _M1
            mixed ^= mixed >> np.uint64(29)
            if uniform:
                acc, mixed = mixed, acc
            else:  # shorter strings have no word j: they keep their hash so far
                np.copyto(acc, mixed, where=j < nwords)
        acc ^= lengths.astype(np.uint64)
        acc *= _M2
        acc ^= acc >> np.uint64(32)
        acc *= _M3
        acc ^= acc >> np.uint64(29)
    return acc


def combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One hash from two per-row hashes (order matters): for keys of several columns."""
    with np.errstate(over="ignore"):
        acc = (a * _M1) ^ b
        acc *= _M2
        acc ^= acc >> np.uint64(31)
    return acc


def _words(s: pa.Array, lengths: np.ndarray, width: int) -> np.ndarray:
    """The strings as an (n, width/8) uint64 matrix, each zero-padded on the right.

    Read straight from the Arrow data buffer: word ``j`` of every string is one gather of 8-byte
    windows at ``offset + 8j``, the bytes past a string's end masked off. No padded copy of the
    strings is made, whatever their lengths or characters.
    """
    n = len(s)
    # Padded with zero bytes to one width (ascii_rpad counts bytes), every string is one row of
    # an (n, width/8) matrix already: one Arrow kernel instead of a gather per word.
    padded = pc.ascii_rpad(s, width, "\0")
    buf = padded.buffers()[2]
    if padded.offset == 0 and buf is not None and buf.size >= n * width:
        return np.frombuffer(buf, dtype=np.uint64, count=n * width // 8).reshape(n, width // 8)
    offsets = np.frombuffer(s.buffers()[1], dtype=np.int32, count=n + 1, offset=s.offset * 4).astype(np.int64)
    buf = s.buffers()[2]
    data = np.zeros(8 if buf is None else buf.size + 8, dtype=np.uint8)
    if buf is not None:
        data[:buf.size] = np.frombuffer(buf, dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(data, 8)
    last = len(windows) - 1
    out = np.empty((width // 8, n), dtype=np.uint64)
    for j in range(width // 8):
        # A string shorter than 8j bytes reads some window in range; its mask below zeroes it.
        at = np.minimum(offsets[:-1] + 8 * j, last)
        word = np.ascontiguousarray(windows[at]).view(np.uint64).reshape(n)
        bits = np.clip(lengths - 8 * j, 0, 8) * 8
        partial = bits < 64
        if partial.any():
            word = word.copy()
            word[partial] &= (np.uint64(1) << bits[partial].astype(np.uint64)) - np.uint64(1)
        out[j] = word
    return out.T


class Digest:
    """A checksum of bytes as they stream past, for the file manifest: XXH3-128 (~20× sha256's speed).

    Not for security: it tells a re-delivered file from a changed one.
    """

    PREFIX = "xxh3-128:"

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes."""
        self._h.update(data)

    def hexdigest(self) -> str:
        """``xxh3-128:`` and 32 hex digits."""
        return self.PREFIX + self._h.hexdigest()
