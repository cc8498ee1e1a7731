"""HTTP helpers shared by every API area: Salesforce-shaped responses and errors.

REST errors are JSON arrays ``[{"message","errorCode"[,"fields"]}]``; Bulk 1.0 errors are
``<error><exceptionCode/><exceptionMessage/></error>`` (XML) or the JSON object with the
same two keys, answered in the dialect the client spoke.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from sfsync.emulator.errors import SfApiError

JSON_TYPE = "application/json;charset=UTF-8"
BULK1_NS = "http://www.force.com/2009/06/asyncapi/dataload"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with Salesforce's content type."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return Response(body, status=status, headers=headers, content_type=JSON_TYPE)


def rest_error(status: int, code: str, message: str, fields: list[str] | None = None) -> Response:
    """A REST error response: ``[{"message", "errorCode"(, "fields")}]``."""
    return json_response(SfApiError(status, code, message, fields).to_rest(), status)


def from_api_error(exc: SfApiError) -> Response:
    """Render an :class:`SfApiError` as a REST error response."""
    return json_response(exc.to_rest(), exc.status)


def wants_json_bulk1(request: Request) -> bool:
    """Whether a Bulk 1.0 request speaks the JSON dialect (simple-salesforce) rather than XML."""
    ctype = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    accept = (request.headers.get("Accept") or "").lower()
    return ctype == "application/json" or "application/json" in accept or request.path.endswith(".json")


def bulk1_error(status: int, code: str, message: str, *, as_json: bool) -> Response:
    """A Bulk 1.0 error in the client's dialect (exact Content-Type, no charset: salesforce-bulk compares it)."""
    if as_json:
        body = json.dumps({"exceptionCode": code, "exceptionMessage": message})
        return Response(body, status=status, content_type="application/json")
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><error\n   xmlns="{BULK1_NS}">\n'
           f" <exceptionCode>{escape(code)}</exceptionCode>\n <exceptionMessage>{escape(message)}</exceptionMessage>\n"
           "</error>")
    return Response(xml, status=status, content_type="application/xml")


def invalid_session(kind: str, request: Request) -> Response:
    """The INVALID_SESSION_ID answer of an API area.

    Args:
        kind: ``"rest"`` (401 JSON array) or ``"bulk1"`` (400 ``InvalidSessionId``).
        request: The request (Bulk 1.0 picks XML or JSON from it).
    """
    if kind == "bulk1":
        return bulk1_error(400, "InvalidSessionId", "Invalid session id", as_json=wants_json_bulk1(request))
    return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid")


def read_json(request: Request, limit: int = 50 * 1024 * 1024) -> Any:
    """Parse a JSON request body; SfApiError 400 JSON_PARSER_ERROR when it is not JSON."""
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise SfApiError(413, "REQUEST_ENTITY_TOO_LARGE", "Request body too large")
    if not raw.strip():
        raise SfApiError(400, "JSON_PARSER_ERROR", "The request body is empty")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SfApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
