"""Salesforce record Ids: 15-character case-sensitive form plus the 3-character case-safe suffix.

An Id is ``key prefix (3) + instance (2) + reserved (1) + counter (9, base 62)``; the
18-character form appends one character per 5-character chunk that encodes which of
those five characters are upper-case letters, so the Id survives case-insensitive systems.
"""

from __future__ import annotations

import re

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_INSTANCE = "8d"  # a made-up pod; real orgs carry their instance here
_ID_RE = re.compile(r"^[0-9A-Za-z]{15}(?:[A-Z0-5]{3})?$")


def checksum(id15: str) -> str:
    """Return the 3-character case-safe suffix for a 15-character Id."""
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = 0
        for pos, ch in enumerate(chunk):
            if "A" <= ch <= "Z":
                bits |= 1 << pos
        out.append(_SUFFIX[bits])
    return "".join(out)


def _slow_id(prefix: str, counter: int) -> str:
    digits = []
    n = counter
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    id15 = prefix + _INSTANCE + "0" + "".join(reversed(digits))
    return id15 + checksum(id15)


# Ids are minted a million at a time in bulk loads, so the work is split: the last two
# base-62 digits come from a table, everything else is computed once per 3,844 Ids.
_LOW = [(_BASE62[a] + _BASE62[b], (("A" <= _BASE62[a] <= "Z") << 3) | (("A" <= _BASE62[b] <= "Z") << 4))
        for a in range(62) for b in range(62)]
_HIGH: dict[tuple[str, int], tuple[str, str, int]] = {}


def make_id(prefix: str, counter: int) -> str:
    """Build the 18-character Id for the ``counter``-th record of an org.

    Args:
        prefix: The object's 3-character key prefix.
        counter: A positive integer unique within the org (below 62**9).
    """
    high, low = divmod(counter, 3844)
    cached = _HIGH.get((prefix, high))
    if cached is None:
        full = _slow_id(prefix, high * 3844)
        # head: first 13 chars; suffix chars 1-2 are fixed; chunk 3 bits of chars 10-12.
        bits = sum(1 << i for i, ch in enumerate(full[10:13]) if "A" <= ch <= "Z")
        cached = (full[:13], full[15:17], bits)
        if len(_HIGH) > 4096:
            _HIGH.clear()
        _HIGH[(prefix, high)] = cached
    head, suffix12, bits = cached
    tail, low_bits = _LOW[low]
    return head + tail + suffix12 + _SUFFIX[bits | low_bits]


def normalize_id(value: str) -> str | None:
    """Return the 18-character form of a 15- or 18-character Id, or None if malformed.

    An 18-character Id is accepted whatever the case of its suffix (as Salesforce does),
    and its suffix is recomputed from the case-sensitive first 15 characters.
    """
    if len(value) == 18:
        if not _ID_RE.match(value[:15]):
            return None
        head = value[:15]
        if value[15:].upper() != checksum(head):
            return None
        return head + checksum(head)
    if len(value) == 15 and _ID_RE.match(value):
        return value + checksum(value)
    return None
