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

from werkzeug.wrappers import Request, Response

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


# ------------------------------------------------------------------- router adapter


def mount(handle: Callable[[Any, BulkRequest], BulkResponse]) -> Callable[..., Response]:
    """Wrap ``handle(org, BulkRequest)`` as a router handler (werkzeug request in, WSGI app out).

    The router's pattern must capture ``version`` and ``path`` (the part below the API root).
    """

    def handler(request: Request, org: Any, version: str, path: str) -> Response:
        req = BulkRequest(
            method=request.method.upper(),
            path=path,
            api_version=version,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.args.items()),
            stream=request.stream,
            content_length=request.content_length,
        )
        resp = handle(org, req)
        # Headers are passed as given: werkzeug would otherwise add "; charset=utf-8"
        # to text/csv, which salesforce-bulk's exact comparison refuses.
        return Response(resp.body, status=resp.status, headers=resp.headers)

    return handler
