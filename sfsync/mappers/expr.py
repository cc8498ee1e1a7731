"""The formula language: grammar, syntax tree, function catalogue, templates.

Formulas read like Salesforce formulas, so an admin already knows them::

    IF(amount < 0, 'Credit', 'Charge')
    ROUND(SUM(appliedTax[].taxAmount.value), 2)
    category = 'REC' AND NOT ISBLANK(service_id)
    ADDMONTHS(DATEVALUE(statement_date), 1)
    $biller & ':' & statement_id

They are parsed with a lark LALR grammar into a small tree (:class:`Lit`, :class:`Col`,
:class:`Var`, :class:`Call`, :class:`Op`) that :mod:`sfsync.mappers.evaluate` runs over whole
columns. Nothing is ever handed to Python's ``eval``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput

from sfsync.mappers.paths import Path, Segment

GRAMMAR = r"""
?start: expr
?expr: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> not_
    | comparison
?comparison: concat (COMP_OP concat)?
?concat: sum ("&" sum)*
?sum: product (ADD_OP product)*
?product: unary (MUL_OP unary)*
?unary: "-" unary -> neg
    | "+" unary
    | atom
?atom: NUMBER -> number
    | STRING -> string
    | _TRUE -> true
    | _FALSE -> false
    | _NULL -> null
    | NAME "(" [expr ("," expr)*] ")" -> call
    | _AND "(" [expr ("," expr)*] ")" -> and_call
    | _OR "(" [expr ("," expr)*] ")" -> or_call
    | path
    | "$" NAME -> var
    | "(" expr ")"
path: segment ("." segment)*
segment: (NAME | QNAME) index?
index: "[" (INT | NAME "=" (NAME | STRING | NUMBER))? "]"
_OR.2: /OR\b/i | "||"
_AND.2: /AND\b/i | "&&"
_NOT.2: /NOT\b/i | "!"
_TRUE.2: /TRUE\b/i
_FALSE.2: /FALSE\b/i
_NULL.2: /NULL\b/i
COMP_OP: "==" | "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/"
NAME: /[A-Za-z_@][A-Za-z0-9_]*/
QNAME: /`[^`]+`/
STRING: /'(\\.|[^'\\])*'/ | /"(\\.|[^"\\])*"/
NUMBER: /\d+(\.\d+)?|\.\d+/
INT: /\d+/
%import common.WS
%ignore WS
"""

# name -> (minimum arguments, maximum arguments or None for "any number").
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "IF": (3, 3), "CASE": (3, None), "AND": (1, None), "OR": (1, None), "NOT": (1, 1),
    "ISBLANK": (1, 1), "ISNULL": (1, 1), "COALESCE": (1, None), "BLANKVALUE": (2, 2), "NULLVALUE": (2, 2),
    "CONCAT": (1, None), "UPPER": (1, 1), "LOWER": (1, 1), "TRIM": (1, 1), "LEN": (1, 1),
    "LEFT": (2, 2), "RIGHT": (2, 2), "MID": (3, 3), "SUBSTITUTE": (3, 3), "CONTAINS": (2, 2),
    "BEGINS": (2, 2), "LPAD": (2, 3), "RPAD": (2, 3), "TEXT": (1, 1), "VALUE": (1, 1),
    "ROUND": (1, 2), "ABS": (1, 1), "MIN": (1, None), "MAX": (1, None), "FLOOR": (1, 1),
    "CEILING": (1, 1), "MOD": (2, 2),
    "DATE": (3, 3), "DATEVALUE": (1, 1), "DATETIMEVALUE": (1, 1), "TODAY": (0, 0), "NOW": (0, 0),
    "ADDDAYS": (2, 2), "ADDMONTHS": (2, 2), "YEAR": (1, 1), "MONTH": (1, 1), "DAY": (1, 1),
    "SUM": (1, 1), "COUNT": (1, 1), "FIRST": (1, 1), "JOIN": (1, 2), "LISTMIN": (1, 1), "LISTMAX": (1, 1),
    "BILLER": (0, 0),
}

VARIABLES = frozenset({"biller", "today", "trim_date"})


class ExprError(ValueError):
    """A formula that cannot be parsed or uses an unknown function/variable."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.column = column
        super().__init__(message)


@dataclass(frozen=True)
class Lit:
    """A literal: str, Decimal, bool or None."""

    value: Any


@dataclass(frozen=True)
class Col:
    """A source column or nested path."""

    path: Path


@dataclass(frozen=True)
class Var:
    """A context variable: ``$biller``, ``$today``, ``$trim_date``."""

    name: str


@dataclass(frozen=True)
class Call:
    """A function call, name upper-cased."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Op:
    """An operator: + - * / & = != < <= > >= and or not neg."""

    op: str
    args: tuple[Node, ...]


Node = Lit | Col | Var | Call | Op


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", start=["start", "path"], propagate_positions=True)


def _unquote(text: str) -> str:
    body = text[1:-1]
    # Backslash escapes as in Salesforce formulas: \' \" \\ \n \t.
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _to_path(tree: Tree) -> Path:
    segs = []
    for seg in tree.children:
        assert isinstance(seg, Tree)
        name_tok: Any = seg.children[0]
        name = name_tok[1:-1] if name_tok.type == "QNAME" else str(name_tok)
        index, each, where = None, False, None
        if len(seg.children) > 1:
            idx: list[Any] = seg.children[1].children
            if len(idx) == 2:
                # [name=value]: keep the list elements whose member equals the value.
                raw = str(idx[1])
                value = _unquote(raw) if idx[1].type == "STRING" else raw
                where, each = (str(idx[0]), value), True
            elif idx and idx[0] is not None:
                index = int(idx[0])
            else:
                each = True
        segs.append(Segment(name, index, each, where))
    return Path(tuple(segs), ".".join(str(s) for s in segs))


def _build(t: Tree | Token) -> Node:
    if isinstance(t, Token):
        raise ExprError(f"unexpected {t!s}")
    kind = t.data
    ch = t.children
    if kind == "number":
        return Lit(Decimal(str(ch[0])))
    if kind == "string":
        return Lit(_unquote(str(ch[0])))
    if kind in ("true", "false"):
        return Lit(kind == "true")
    if kind == "null":
        return Lit(None)
    if kind == "path":
        return Col(_to_path(t))
    if kind == "var":
        name = str(ch[0]).lower()
        if name not in VARIABLES:
            raise ExprError(f"unknown variable ${ch[0]} (known: {', '.join('$' + v for v in sorted(VARIABLES))})")
        return Var(name)
    if kind in ("call", "and_call", "or_call"):
        if kind == "call":
            name, args = str(ch[0]).upper(), ch[1:]
        else:
            name, args = ("AND" if kind == "and_call" else "OR"), ch
        args = [a for a in args if a is not None]
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name}()", getattr(ch[0], "column", None))
        lo, hi = FUNCTIONS[name]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"
            raise ExprError(f"{name}() takes {want} argument(s), got {len(args)}")
        return Call(name, tuple(_build(a) for a in args))
    if kind == "not_":
        return Op("not", (_build(ch[0]),))
    if kind == "neg":
        return Op("neg", (_build(ch[0]),))
    if kind == "unary":
        return _build(ch[0])
    if kind in ("or_expr", "and_expr"):
        return Op("or" if kind == "or_expr" else "and", tuple(_build(c) for c in ch))
    if kind == "concat":
        return Op("&", tuple(_build(c) for c in ch))
    if kind == "comparison":
        op = {"==": "=", "<>": "!="}.get(str(ch[1]), str(ch[1]))
        return Op(op, (_build(ch[0]), _build(ch[2])))
    if kind in ("sum", "product"):
        node = _build(ch[0])
        for i in range(1, len(ch), 2):
            node = Op(str(ch[i]), (node, _build(ch[i + 1])))
        return node
    raise ExprError(f"unsupported construct {kind}")


def parse(text: str) -> Node:
    """Parse a formula.

    Raises:
        ExprError: Syntax error (with the column), unknown function, wrong argument count.
    """
    try:
        tree = _parser().parse(text, start="start")
    except UnexpectedInput as exc:
        col = getattr(exc, "column", None)
        pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(text) - 1
        what = f"unexpected character {text[pos]!r}" if isinstance(exc, UnexpectedCharacters) else "syntax error"
        if not isinstance(exc, UnexpectedCharacters) and getattr(exc, "token", None) is not None:
            tok = exc.token  # type: ignore[attr-defined]
            what = "unexpected end of formula" if tok.type == "$END" else f"unexpected {str(tok)!r}"
        raise ExprError(f"{what} at column {col}", col) from None
    except LarkError as exc:
        raise ExprError(str(exc)) from None
    if isinstance(tree, Token):
        raise ExprError(f"unexpected {tree!s}")
    return _build(tree)


@lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Parse a source path such as ``appliedTax[].taxAmount.value``.

    Raises:
        ExprError: The text is not a path.
    """
    try:
        tree = _parser().parse(text.strip(), start="path")
    except LarkError:
        raise ExprError(f"not a column or path: {text!r}") from None
    return _to_path(tree)


def columns(node: Node) -> list[Path]:
    """Every source path a formula reads, in order of appearance."""
    out: list[Path] = []

    def walk(n: Node) -> None:
        if isinstance(n, Col):
            out.append(n.path)
        elif isinstance(n, Call | Op):
            for a in n.args:
                walk(a)

    walk(node)
    return out


# {{ and }} are literal braces; {name} / {path} / {$biller} are placeholders.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def parse_template(text: str) -> list[str | Path | Var]:
    """Split a template into literal strings, paths and variables.

    ``{biller}`` is the biller's name (so is ``{$biller}``); any other placeholder is a
    source path.

    Raises:
        ExprError: An empty or malformed placeholder, or a stray brace.
    """
    parts: list[str | Path | Var] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        literal = text[pos : m.start()]
        if "{" in literal or "}" in literal:
            raise ExprError(f"unbalanced brace in template {text!r}")
        if literal:
            parts.append(literal)
        pos = m.end()
        if m.group(0) in ("{{", "}}"):
            parts.append(m.group(0)[0])
            continue
        name = m.group(1).strip()
        if not name:
            raise ExprError(f"empty placeholder {{}} in template {text!r}")
        if name.lstrip("$").lower() in VARIABLES:
            parts.append(Var(name.lstrip("$").lower()))
        else:
            parts.append(parse_path(name))
    tail = text[pos:]
    if "{" in tail or "}" in tail:
        raise ExprError(f"unbalanced brace in template {text!r}")
    if tail:
        parts.append(tail)
    return parts


def uses_biller(node: Node | list[str | Path | Var]) -> bool:
    """True when a formula or template mentions the biller (``$biller``, ``BILLER()``, ``{biller}``)."""
    if isinstance(node, list):
        return any(isinstance(p, Var) and p.name == "biller" for p in node)
    if isinstance(node, Var):
        return node.name == "biller"
    if isinstance(node, Call):
        return node.name == "BILLER" or any(uses_biller(a) for a in node.args)
    if isinstance(node, Op):
        return any(uses_biller(a) for a in node.args)
    return False
