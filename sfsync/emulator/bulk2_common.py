"""Pieces the Bulk 2.0 ingest and query handlers share: REST-style errors, JSON bodies,
CSV dialect options, job listing fields."""

from __future__ import annotations

import json
from typing import Any

from sfsync.emulator.bulk_csv import DELIMITERS, LINE_ENDINGS
from sfsync.emulator.bulk_http import BulkRequest, BulkResponse, json_response

#: The user that owns jobs when the org does not say who is calling.
DEFAULT_USER_ID = "0058d0000000001AAA"


def api_error(status: int, code: str, message: str) -> BulkResponse:
    """Bulk 2.0 errors use REST's body: an array of ``{"errorCode", "message"}``."""
    return json_response(status, [{"errorCode": code, "message": message}])


def job_not_found() -> BulkResponse:
    """What Salesforce answers for an unknown (or deleted) job id."""
    return api_error(404, "NOT_FOUND", "The requested resource does not exist")


def parse_json_body(req: BulkRequest) -> dict[str, Any] | BulkResponse:
    """The request's JSON object, or the error response Salesforce gives instead."""
    media = req.media_type
    if media and media != "application/json":
        return api_error(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type header specified in HTTP request is not supported: {media}"
        )
    raw = req.body(1 << 20)
    try:
        payload = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except UnicodeDecodeError:
        return api_error(400, "JSON_PARSER_ERROR", "Invalid UTF-8 in the request body")
    except json.JSONDecodeError as exc:
        return api_error(
            400, "JSON_PARSER_ERROR", f"{exc.msg} at [line:{exc.lineno}, column:{exc.colno}]"
        )
    if not isinstance(payload, dict):
        return api_error(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return payload


def read_dialect(payload: dict[str, Any]) -> tuple[str, str] | BulkResponse:
    """``(columnDelimiter, lineEnding)`` of a create request, checked against the allowed names."""
    delimiter = payload.get("columnDelimiter") or "COMMA"
    line_ending = payload.get("lineEnding") or "LF"
    if delimiter not in DELIMITERS:
        return api_error(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize value of type ColumnDelimiterEnum from String \"{delimiter}\": value not one of "
            f"declared Enum instance names: [{', '.join(DELIMITERS)}]",
        )
    if line_ending not in LINE_ENDINGS:
        return api_error(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize value of type LineEndingEnum from String \"{line_ending}\": value not one of "
            f"declared Enum instance names: [{', '.join(LINE_ENDINGS)}]",
        )
    return str(delimiter), str(line_ending)


def user_id(org: Any) -> str | None:
    """The id of the org's API user, when the org exposes one."""
    value = getattr(org, "admin_user_id", None)
    return value if isinstance(value, str) else None


def list_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The subset of a job's info that ``GET jobs/ingest`` (and ``jobs/query``) lists."""
    keys = (
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "state",
        "externalIdFieldName",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "jobType",
        "lineEnding",
        "columnDelimiter",
    )
    return {k: info[k] for k in keys if k in info}
