"""Evaluate simple SOQL conditions on pulled records, so one query per object serves every mapping.

Payments and adjustments come from the same object with different ``source.where``
(``vlocity_cmt__Type__c = 'Customer Payment'`` vs ``IN ('CSR Adjustment', ...)``). Rather
than one query per mapping (an API call each, every run), the export pulls an object once
with the mappings' conditions OR-ed, then asks each condition here which rows are its own.

Supported: ``AND``/``OR``/``NOT``, parentheses, ``= != <> < <= > >=``, ``[NOT] IN (...)``,
``LIKE``, string/number/boolean/``null`` literals, date and datetime literals (compared as
ISO text), relationship paths (``RecordType.DeveloperName``). Comparisons follow SOQL, not
SQL: ``=`` on text ignores case, and ``!=`` / ``NOT IN`` match nulls. Anything else (date
functions, ``INCLUDES``, semi-joins) raises :class:`FilterUnsupported`; the caller then gives
that mapping a query of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?)(?![\w:])
    | (?P<num>-?\d+(?:\.\d+)?)(?![\w:])
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][\w.]*)
    )""", re.X)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "NULL", "TRUE", "FALSE"}


class FilterUnsupported(ValueError):
    """The condition uses SOQL this evaluator does not cover."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterUnsupported(f"cannot read {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append(_Tok(kind, value))
        pos = m.end()
    return out


class Condition:
    """A parsed SOQL condition.

    Args:
        text: the condition (what follows ``WHERE``).

    Raises:
        FilterUnsupported: the condition uses SOQL outside the supported subset.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._toks = _tokens(text)
        self._i = 0
        self.fields: set[str] = set()
        self._tree = self._or()
        if self._i != len(self._toks):
            raise FilterUnsupported(f"unexpected {self._toks[self._i].text!r} in {text!r}")

    # -- parsing (recursive descent) --------------------------------------------------------
    def _peek(self) -> _Tok | None:
        return self._toks[self._i] if self._i < len(self._toks) else None

    def _take(self, kind: str | None = None, text: str | None = None) -> _Tok:
        t = self._peek()
        if t is None or (kind and t.kind != kind) or (text and t.text != text):
            raise FilterUnsupported(f"expected {text or kind} in {self.text!r}")
        self._i += 1
        return t

    def _accept(self, kind: str, text: str | None = None) -> bool:
        t = self._peek()
        if t is not None and t.kind == kind and (text is None or t.text == text):
            self._i += 1
            return True
        return False

    def _or(self) -> tuple[Any, ...]:
        node = self._and()
        while self._accept("kw", "OR"):
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple[Any, ...]:
        node = self._not()
        while self._accept("kw", "AND"):
            node = ("and", node, self._not())
        return node

    def _not(self) -> tuple[Any, ...]:
        if self._accept("kw", "NOT"):
            return ("not", self._not())
        if self._accept("punct", "("):
            node = self._or()
            self._take("punct", ")")
            return node
        return self._comparison()

    def _comparison(self) -> tuple[Any, ...]:
        field = self._take("word").text
        self.fields.add(field)
        if self._accept("kw", "NOT"):
            self._take("kw", "IN")
            return ("not", ("in", field, self._list()))
        if self._accept("kw", "IN"):
            return ("in", field, self._list())
        if self._accept("kw", "LIKE"):
            return ("like", field, self._literal())
        op = self._take("op").text
        return ("cmp", field, "!=" if op == "<>" else op, self._literal())

    def _list(self) -> list[Any]:
        self._take("punct", "(")
        values = [self._literal()]
        while self._accept("punct", ","):
            values.append(self._literal())
        self._take("punct", ")")
        return values

    def _literal(self) -> Any:
        t = self._take()
        if t.kind == "str":
            return re.sub(r"\\(.)", r"\1", t.text[1:-1])
        if t.kind == "num":
            return float(t.text)
        if t.kind == "dt":
            return ("dt", t.text)
        if t.kind == "kw" and t.text in ("NULL", "TRUE", "FALSE"):
            return {"NULL": None, "TRUE": True, "FALSE": False}[t.text]
        raise FilterUnsupported(f"unsupported value {t.text!r} in {self.text!r}")

    # -- evaluation -------------------------------------------------------------------------
    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows of ``frame`` (string values, nulls as missing) the condition selects."""
        lower = {c.lower(): c for c in frame.columns}
        return np.asarray(self._eval(self._tree, frame, lower), dtype=bool)

    def _col(self, frame: pd.DataFrame, lower: dict[str, str], field: str) -> pd.Series:
        name = lower.get(field.lower())
        if name is None:
            return pd.Series([None] * len(frame), index=frame.index, dtype=object)
        return frame[name].astype(object).where(frame[name].notna(), None)

    def _eval(self, node: tuple[Any, ...], frame: pd.DataFrame, lower: dict[str, str]) -> np.ndarray:
        op = node[0]
        if op == "or":
            return self._eval(node[1], frame, lower) | self._eval(node[2], frame, lower)
        if op == "and":
            return self._eval(node[1], frame, lower) & self._eval(node[2], frame, lower)
        if op == "not":
            return ~self._eval(node[1], frame, lower)
        col = self._col(frame, lower, node[1])
        isnull = col.isna().to_numpy()
        if op == "in":
            wanted = {_norm(v) for v in node[2]}
            return np.array([(v is None and None in wanted) or (v is not None and _norm(v) in wanted)
                             for v in col], dtype=bool)
        if op == "like":
            pattern = re.escape(str(node[2])).replace("%", ".*").replace("_", ".")
            rx = re.compile(f"^{pattern}$", re.I | re.S)
            return np.array([v is not None and bool(rx.match(str(v))) for v in col], dtype=bool)
        return _compare(col, isnull, node[2], node[3])


def _norm(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return value
    if isinstance(value, tuple):
        return value[1]
    text = str(value).casefold()
    try:
        return float(text)
    except ValueError:
        return text


def _compare(col: pd.Series, isnull: np.ndarray, op: str, literal: Any) -> np.ndarray:
    if literal is None:
        if op == "=":
            return isnull
        if op == "!=":
            return ~isnull
        raise FilterUnsupported(f"{op} null")
    if isinstance(literal, float):
        left = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        right: Any = literal
    elif isinstance(literal, bool):
        left = col.map(lambda v: None if v is None else str(v).lower()).to_numpy(dtype=object)
        right = "true" if literal else "false"
    elif isinstance(literal, tuple):  # date/datetime: ISO text compares in time order
        left = col.map(lambda v: None if v is None else str(v)).to_numpy(dtype=object)
        right = literal[1]
    else:
        left = col.map(lambda v: None if v is None else str(v).casefold()).to_numpy(dtype=object)
        right = str(literal).casefold()
    valid = ~isnull & (~np.isnan(left) if left.dtype == float else True)
    out = np.zeros(len(col), dtype=bool)
    idx = np.flatnonzero(valid)
    vals = left[idx]
    if op == "=":
        out[idx] = vals == right
    elif op == "!=":
        out[idx] = vals != right
        out[isnull] = True  # SOQL: a null is "not equal" to any value
    elif op == "<":
        out[idx] = vals < right
    elif op == "<=":
        out[idx] = vals <= right
    elif op == ">":
        out[idx] = vals > right
    elif op == ">=":
        out[idx] = vals >= right
    return out
