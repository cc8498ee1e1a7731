"""The emulator's SOQL engine: what the REST query endpoints and bulk query jobs call.

Split along its seams: ``soql.lark`` + :mod:`.soql_parse` (text to tree, cached),
:mod:`.soql_values` (types, literals, date literals, output forms),
:mod:`.soql_compile` (schema resolution, conditions to closures) and
:mod:`.soql_exec` (filter, sort, slice, project, aggregate).
"""

from __future__ import annotations

from typing import Any

from sfsync.emulator.soql_exec import QueryResult, flat_row, run
from sfsync.emulator.soql_parse import Query, SoqlError, parse

__all__ = ["QueryResult", "SoqlError", "execute", "flat_row", "parse"]


def execute(org: Any, soql: str, *, include_deleted: bool = False) -> QueryResult:
    """Run a SOQL query against an org, as ``query`` (or ``queryAll``) would.

    Args:
        org: The org: ``schema.describe(name)``, ``records(name, include_deleted=)``,
            ``by_id(id)``; optionally ``find_by(name, field, value)`` and ``now()``.
        soql: The query text.
        include_deleted: True for ``queryAll``: soft-deleted rows are included.

    Returns:
        The records (REST shape, all of them: paging is the caller's business), the
        total size, the object's canonical name and the selected field paths.

    Raises:
        SoqlError: (an ``SfApiError`` with status 400) ``MALFORMED_QUERY``,
            ``INVALID_FIELD``, ``INVALID_TYPE``, ``INVALID_QUERY_FILTER_OPERATOR`` or
            ``NUMBER_OUTSIDE_VALID_RANGE``, with Salesforce's messages.
    """
    query: Query = parse(soql)
    return run(org, query, include_deleted)
