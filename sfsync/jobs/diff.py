"""Send only what changed: hash each mapped row, compare with what was last sent.

The hash covers the payload's column names and values (not ``_source`` or other bookkeeping
columns), so a changed mapping — a field added or renamed — changes every hash and resends.
Hashes are 64-bit (pandas' vectorized row hashing) and stored signed in the state store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sfsync.state import RecordState


def payload_hash(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One signed 64-bit hash per row of ``frame[columns]`` (columns in the order given, named)."""
    if not len(frame):
        return np.zeros(0, dtype=np.int64)
    cols = sorted(columns)
    # Hash strings as they would be sent: nulls and empty strings both mean "no value".
    values = frame[cols].astype("string").fillna("")
    row = pd.util.hash_pandas_object(values, index=False, categorize=False).to_numpy(dtype=np.uint64)
    salt = np.uint64(int.from_bytes(hashlib.blake2b("\x1f".join(cols).encode(), digest_size=8).digest(), "big"))
    return (row ^ salt).view(np.int64)


@dataclass
class Diff:
    """Which rows of a batch to send, and what the store knew of them."""

    new: np.ndarray  # bool mask: never sent (or state lost)
    changed: np.ndarray  # bool mask: sent before with another payload
    unchanged: np.ndarray  # bool mask: identical to what Salesforce has from us
    known_ids: pd.Series  # Salesforce Id per row when the store knows it (else <NA>)

    @property
    def send(self) -> np.ndarray:
        """Rows to send."""
        return self.new | self.changed


def diff(keys: pd.Series, hashes: np.ndarray, states: dict[str, RecordState], *, full: bool = False) -> Diff:
    """Compare a batch's hashes with stored states.

    Args:
        keys: the match key of every row.
        hashes: :func:`payload_hash` of every row.
        states: the store's states for (some of) those keys.
        full: resend everything (unchanged rows count as changed).
    """
    # Through an int64 index (not a dict of Python ints): 64-bit hashes must not pass via float.
    stored = pd.DataFrame({"hash": np.fromiter((s.hash for s in states.values()), np.int64, len(states)),
                           "sf_id": [s.sf_id for s in states.values()]},
                          index=pd.Index(list(states.keys()), dtype=object))
    pos = stored.index.get_indexer(keys.astype(object))
    present = pos >= 0
    stored_hash = np.where(present, stored["hash"].to_numpy()[np.where(present, pos, 0)] if len(stored) else 0, 0)
    same = present & (stored_hash == hashes)
    known_ids = pd.Series(np.where(present, stored["sf_id"].to_numpy(dtype=object)[np.where(present, pos, 0)]
                                   if len(stored) else None, None), index=keys.index, dtype=object)
    if full:
        return Diff(~present, present, np.zeros(len(keys), dtype=bool), known_ids)
    return Diff(~present, present & ~same, same, known_ids)
