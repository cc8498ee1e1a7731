"""SOQL text to an immutable syntax tree, with Salesforce's MALFORMED_QUERY errors.

The grammar lives in ``soql.lark``. Parsing is cached by query text (an LRU), because
clients page through the same query and bulk jobs re-run it; the tree is frozen so a
cached tree can be shared safely between threads and orgs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from sfsync.emulator.errors import SfApiError

_PARSE_CACHE_SIZE = 1024


class SoqlError(SfApiError):
    """A query Salesforce would refuse: always HTTP 400 with Salesforce's error code.

    Args:
        code: ``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``, ...
        message: Salesforce's message, usually prefixed with the query line, a caret and
            ``ERROR at Row:r:Column:c`` like Salesforce does.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(400, code, message)


def located(text: str, line: int | None, column: int | None, message: str) -> str:
    """Prefix ``message`` with the query line and a caret, as Salesforce does.

    Args:
        text: The whole query text.
        line: 1-based row of the problem, or None when unknown.
        column: 1-based column of the problem.
        message: The explanation that ends the message.
    """
    if line is None or column is None:
        return message
    lines = text.split("\n")
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"\n{src}\n{' ' * max(column - 1, 0)}^\nERROR at Row:{line}:Column:{column}\n{message}"


# ---------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A field, possibly through parent relationships: ``Account.Owner.Name``."""

    parts: tuple[str, ...]
    line: int
    column: int

    @property
    def text(self) -> str:
        """The path as written."""
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: aggregate (``SUM(x)``, ``COUNT()``) or date function (``CALENDAR_YEAR(x)``)."""

    name: str  # upper-cased
    arg: FieldPath | Call | None
    line: int
    column: int

    @property
    def text(self) -> str:
        """The call as written, with the function name upper-cased."""
        return f"{self.name}({self.arg.text if self.arg is not None else ''})"


Operand = FieldPath | Call


@dataclass(frozen=True, slots=True)
class Literal:
    """A value in a condition.

    ``kind`` is one of ``string``, ``number``, ``date``, ``datetime``, ``null``, ``boolean``
    and ``relative`` (a date literal like ``LAST_N_DAYS:30``; value ``(NAME, n or None)``).
    ``raw`` keeps a string's text between the quotes (LIKE needs its escapes).
    """

    kind: str
    value: Any
    raw: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class SelectItem:
    """One entry of the SELECT list."""

    expr: Operand
    alias: str | None
    alias_line: int = 0
    alias_column: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op value``; op is ``= != < <= > >= like in notin includes excludes``.

    ``value`` is a Literal, a tuple of Literals (IN lists) or a Query (semi-joins).
    """

    left: Operand
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    """All of ``items``."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``items``."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The negation of ``item`` (two-valued, as SOQL's NOT is)."""

    item: Any


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One ORDER BY key; ``nulls_first`` None means Salesforce's default for the direction."""

    expr: Operand
    descending: bool
    nulls_first: bool | None


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed SELECT statement."""

    text: str
    select: tuple[SelectItem, ...]
    sobject: str
    sobject_line: int
    sobject_column: int
    where: Any
    group_by: tuple[Operand, ...]
    having: Any
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


# ---------------------------------------------------------------------------- transformer

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class _BadLiteral(Exception):
    """Raised inside the transformer; turned into MALFORMED_QUERY with the token's position."""

    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


def unescape(raw: str, *, keep_like_escapes: bool = False) -> str:
    """Decode a SOQL string literal's escapes (``\\'``, ``\\n``, ``\\\\``, ``\\%``, ``\\_``, ...).

    Args:
        raw: The text between the quotes.
        keep_like_escapes: Keep ``\\%`` and ``\\_`` escaped (for LIKE patterns).

    Raises:
        ValueError: On an escape SOQL does not know, naming the sequence.
    """
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if nxt.lower() in _ESCAPES and nxt:
            out.append(_ESCAPES[nxt.lower()] if nxt not in ('"', "'", "\\") else nxt)
        elif nxt in ("%", "_"):
            out.append("\\" + nxt if keep_like_escapes else nxt)
        else:
            raise ValueError(f"\\{nxt}")
        i += 2
    return "".join(out)


@v_args(inline=True)
class _ToTree(Transformer[Token, Query]):
    """Build the frozen tree; keeps positions for error messages."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def start(self, query: Query) -> Query:
        return query

    def query(self, *clauses: Any) -> Query:
        parts: dict[str, Any] = {}
        for kind, value in clauses:
            parts[kind] = value
        sobject_token: Token = parts["from"]
        return Query(
            text=self._text,
            select=parts["select"],
            sobject=str(sobject_token),
            sobject_line=sobject_token.line or 1,
            sobject_column=sobject_token.column or 1,
            where=parts.get("where"),
            group_by=parts.get("group", ()),
            having=parts.get("having"),
            order_by=parts.get("order", ()),
            limit=parts.get("limit"),
            offset=parts.get("offset"),
        )

    def select_clause(self, _kw: Token, *items: SelectItem) -> tuple[str, tuple[SelectItem, ...]]:
        return ("select", items)

    def select_field(self, path: FieldPath, alias: Token | None = None) -> SelectItem:
        return self._item(path, alias)

    def select_call(self, call: Call, alias: Token | None = None) -> SelectItem:
        return self._item(call, alias)

    @staticmethod
    def _item(expr: Operand, alias: Token | None) -> SelectItem:
        if alias is None:
            return SelectItem(expr, None)
        return SelectItem(expr, str(alias), alias.line or 1, alias.column or 1)

    def alias(self, token: Token) -> Token:
        return token

    def call(self, name: Token, arg: Operand | None) -> Call:
        return Call(str(name).upper(), arg, name.line or 1, name.column or 1)

    def field_path(self, *tokens: Token) -> FieldPath:
        return FieldPath(tuple(str(t) for t in tokens), tokens[0].line or 1, tokens[0].column or 1)

    def from_clause(self, _kw: Token, name: Token) -> tuple[str, Token]:
        return ("from", name)

    def where_clause(self, _kw: Token, cond: Any) -> tuple[str, Any]:
        return ("where", cond)

    def having_clause(self, _kw: Token, cond: Any) -> tuple[str, Any]:
        return ("having", cond)

    def conjunction(self, *items: Any) -> And:
        return And(tuple(i for i in items if not isinstance(i, Token)))

    def disjunction(self, *items: Any) -> Or:
        return Or(tuple(i for i in items if not isinstance(i, Token)))

    def negation(self, _kw: Token, item: Any) -> Not:
        return Not(item)

    def compare(self, left: Operand, op: Token, value: Literal) -> Compare:
        norm = "!=" if str(op) == "<>" else str(op)
        return Compare(left, norm, value)

    def like(self, left: Operand, _kw: Token, value: Literal) -> Compare:
        return Compare(left, "like", value)

    def in_list(self, left: Operand, _kw: Token, values: tuple[Literal, ...]) -> Compare:
        return Compare(left, "in", values)

    def not_in_list(self, left: Operand, _n: Token, _i: Token, values: tuple[Literal, ...]) -> Compare:
        return Compare(left, "notin", values)

    def in_query(self, left: Operand, _kw: Token, sub: Query) -> Compare:
        return Compare(left, "in", sub)

    def not_in_query(self, left: Operand, _n: Token, _i: Token, sub: Query) -> Compare:
        return Compare(left, "notin", sub)

    def includes(self, left: Operand, _kw: Token, values: tuple[Literal, ...]) -> Compare:
        return Compare(left, "includes", values)

    def excludes(self, left: Operand, _kw: Token, values: tuple[Literal, ...]) -> Compare:
        return Compare(left, "excludes", values)

    def value_list(self, *values: Literal) -> tuple[Literal, ...]:
        return values

    def string(self, tok: Token) -> Literal:
        raw = str(tok)[1:-1]
        try:
            value = unescape(raw)
        except ValueError as exc:
            raise _BadLiteral(
                tok, f"Invalid string literal '{raw}'. Illegal character sequence '{exc}' in string literal."
            ) from None
        return Literal("string", value, raw, tok.line or 1, tok.column or 1)

    def number(self, tok: Token) -> Literal:
        text = str(tok)
        value: int | float = int(text) if text.lstrip("+-").isdigit() else float(text)
        return Literal("number", value, text, tok.line or 1, tok.column or 1)

    def datetime(self, tok: Token) -> Literal:
        return Literal("datetime", str(tok), str(tok), tok.line or 1, tok.column or 1)

    def date(self, tok: Token) -> Literal:
        return Literal("date", str(tok), str(tok), tok.line or 1, tok.column or 1)

    def null(self, tok: Token) -> Literal:
        return Literal("null", None, str(tok), tok.line or 1, tok.column or 1)

    def true(self, tok: Token) -> Literal:
        return Literal("boolean", True, str(tok), tok.line or 1, tok.column or 1)

    def false(self, tok: Token) -> Literal:
        return Literal("boolean", False, str(tok), tok.line or 1, tok.column or 1)

    def date_literal(self, name: Token, n: Token | None = None) -> Literal:
        count: int | None = None
        if n is not None:
            if not str(n).lstrip("+").isdigit():
                raise _BadLiteral(n, f"unexpected token: '{n}'")
            count = int(str(n))
        raw = f"{name}:{n}" if n is not None else str(name)
        return Literal("relative", (str(name).upper(), count), raw, name.line or 1, name.column or 1)

    def group_clause(self, _g: Token, _b: Token, *items: Operand) -> tuple[str, tuple[Operand, ...]]:
        return ("group", items)

    def order_clause(self, _o: Token, _b: Token, *items: OrderItem) -> tuple[str, tuple[OrderItem, ...]]:
        return ("order", items)

    def order_item(self, expr: Operand, *mods: tuple[str, bool]) -> OrderItem:
        flags = dict(mods)
        return OrderItem(expr, flags.get("desc", False), flags.get("nulls_first"))

    def direction(self, tok: Token) -> tuple[str, bool]:
        return ("desc", str(tok).upper() == "DESC")

    def nulls(self, _kw: Token, which: Token) -> tuple[str, bool]:
        return ("nulls_first", str(which).upper() == "FIRST")

    def limit_clause(self, _kw: Token, n: Token) -> tuple[str, int]:
        return ("limit", self._count(n))

    def offset_clause(self, _kw: Token, n: Token) -> tuple[str, int]:
        return ("offset", self._count(n))

    @staticmethod
    def _count(tok: Token) -> int:
        # LIMIT and OFFSET take a plain non-negative integer, nothing else.
        if not str(tok).isdigit():
            raise _BadLiteral(tok, f"unexpected token: '{tok}'")
        return int(str(tok))


# ---------------------------------------------------------------------------- entry points

_GRAMMAR = Path(__file__).with_name("soql.lark").read_text(encoding="utf-8")
_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True)


def _malformed(text: str, exc: UnexpectedInput) -> SoqlError:
    """Translate a lark error into Salesforce's MALFORMED_QUERY message."""
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    if isinstance(exc, UnexpectedToken):
        tok = _misread_alias(exc) or exc.token
        line, column = tok.line, tok.column
        what = "<EOF>" if tok.type == "$END" else str(tok)
        if tok.type == "$END":
            line, column = _end_position(text)
    elif isinstance(exc, UnexpectedCharacters):
        # Show the word that could not be read, not just its first character.
        pos = exc.pos_in_stream or 0
        end = pos
        while end < len(text) and not text[end].isspace() and end - pos < 40:
            end += 1
        what = text[pos:end] or text[pos : pos + 1]
    elif isinstance(exc, UnexpectedEOF):
        what = "<EOF>"
        line, column = _end_position(text)
    else:
        what = "<EOF>"
    if not isinstance(line, int) or line < 1:
        line, column = _end_position(text)
    return SoqlError("MALFORMED_QUERY", located(text, line, column, f"unexpected token: '{what}'"))


def _misread_alias(exc: UnexpectedToken) -> Token | None:
    """The word taken as a SELECT alias just before the error, if that is what happened.

    ``SELECT Id FORM Account`` reads FORM as an alias of Id and then stumbles on
    Account; the typo is FORM, which is what Salesforce (and the user) would name.
    """
    parser = exc.interactive_parser
    stack = getattr(getattr(parser, "parser_state", None), "value_stack", None) or []
    if len(stack) >= 2 and isinstance(stack[-1], Token) and stack[-1].type == "IDENT":
        below = stack[-2]
        if getattr(below, "data", None) in ("field_path", "call"):
            return stack[-1]
    return None


def _end_position(text: str) -> tuple[int, int]:
    """Row and column just past the end of ``text``."""
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def parse(text: str) -> Query:
    """Parse SOQL text into a :class:`Query` (cached by text).

    Args:
        text: The query as the client sent it.

    Raises:
        SoqlError: ``MALFORMED_QUERY`` with the unexpected token and its position.
    """
    if not isinstance(text, str) or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: '<EOF>'")
    try:
        tree = _PARSER.parse(text)
        return _ToTree(text).transform(tree)
    except UnexpectedInput as exc:
        raise _malformed(text, exc) from None
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, _BadLiteral):
            raise SoqlError(
                "MALFORMED_QUERY", located(text, inner.token.line, inner.token.column, inner.message)
            ) from None
        raise
