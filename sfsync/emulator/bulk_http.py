"""The small HTTP vocabulary the Bulk handlers speak, independent of the router.

Handlers take a :class:`BulkRequest` and return a :class:`BulkResponse`; the adapters at
the bottom translate from and to WSGI, which is what the emulator's router serves. The
body is read lazily with a cap, so an oversized upload is refused without being held in
memory, and chunked bodies (salesforce-bulk streams a generator) read like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import parse_qsl

_READ_BLOCK = 1 << 20


class BodyTooLarge(Exception):
    """The request body is larger than the handler's cap."""


@dataclass
class BulkRequest:
    """One HTTP request, as the Bulk handlers see it.

    Attributes:
        method: Upper-case HTTP method.
        path: The path below the API root (``ingest/750.../batches``, ``job/750...``).
        api_version: The version from the URL (``59.0``).
        headers: Header names lower-cased.
        query: Query-string parameters (last value wins).
        stream: The body, read on demand.
        content_length: The declared length, or None for chunked bodies.
    """

    method: str
    path: str
    api_version: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    stream: IO[bytes] | None = None
    content_length: int | None = None
    _body: bytes | None = None

    def header(self, name: str, default: str = "") -> str:
        """A request header (case-insensitive name)."""
        return self.headers.get(name.lower(), default)

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased (``text/csv``)."""
        return self.header("content-type").split(";", 1)[0].strip().lower()

    def body(self, limit: int | None = None) -> bytes:
        """The whole body; raises :class:`BodyTooLarge` past ``limit`` bytes."""
        if self._body is not None:
            if limit is not None and len(self._body) > limit:
                raise BodyTooLarge
            return self._body
        if limit is not None and self.content_length is not None and self.content_length > limit:
            raise BodyTooLarge
        if self.stream is None:
            self._body = b""
            return self._body
        if self.content_length is not None:
            data = self.stream.read(self.content_length)
        else:
            parts = []
            size = 0
            while True:
                block = self.stream.read(_READ_BLOCK)
                if not block:
                    break
                size += len(block)
                if limit is not None and size > limit:
                    raise BodyTooLarge
                parts.append(block)
            data = b"".join(parts)
        if limit is not None and len(data) > limit:
            raise BodyTooLarge
        self._body = data
        return data


@dataclass
class BulkResponse:
    """One HTTP response: status, headers (exact values), and a body or body pieces."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]


def json_response(status: int, data: Any, content_type: str = "application/json;charset=UTF-8") -> BulkResponse:
    """A JSON response (Bulk 2.0 answers with a charset parameter, Bulk 1.0 without)."""
    payload = b"" if data is None else json.dumps(data).encode("utf-8")
    return BulkResponse(status, [("Content-Type", content_type)], [payload])


def text_response(status: int, text: str, content_type: str) -> BulkResponse:
    """A response with a ready string body."""
    return BulkResponse(status, [("Content-Type", content_type)], [text.encode("utf-8")])


def stream_response(
    status: int, pieces: Iterable[bytes | str], content_type: str, extra: Iterable[tuple[str, str]] = ()
) -> BulkResponse:
    """A lazily produced response (large results go out piece by piece)."""

    def encoded() -> Iterator[bytes]:
        for piece in pieces:
            yield piece.encode("utf-8") if isinstance(piece, str) else piece

    return BulkResponse(status, [("Content-Type", content_type), *extra], encoded())


# --------------------------------------------------------------------- WSGI adapters


def request_from_environ(environ: Mapping[str, Any], path: str, api_version: str) -> BulkRequest:
    """Build a :class:`BulkRequest` from a WSGI environ; ``path`` is below the API root."""
    headers = {
        key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    length = int(length_text) if length_text.isdigit() and not chunked else None
    if length is None and not chunked and environ.get("REQUEST_METHOD") in ("GET", "DELETE", "HEAD"):
        length = 0
    query = dict(parse_qsl(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True))
    return BulkRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=path,
        api_version=api_version,
        headers=headers,
        query=query,
        stream=environ.get("wsgi.input"),
        content_length=length,
    )


_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Server Error",
    503: "Service Unavailable",
}


def to_wsgi(response: BulkResponse, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Send a :class:`BulkResponse` through WSGI's ``start_response``."""
    status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
    start_response(status, list(response.headers))
    return response.body
