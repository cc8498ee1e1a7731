"""The emulator's WSGI application and its router.

How an API area plugs in
------------------------
A module exports ``ROUTES``: a list of :class:`Route` (or plain tuples
``(methods, pattern, handler, auth, kind)``). :class:`EmulatorApp` imports
``sfsync.emulator.bulk1`` and ``sfsync.emulator.bulk2`` at start and mounts their ``ROUTES``
when they have them (modules that are missing are skipped)::

    from sfsync.emulator.app import Route

    def create_job(request, org, version):      # werkzeug Request, Org, regex groups
        ...
        return Response(xml, status=201, content_type="application/xml")   # any WSGI app

    ROUTES = [
        Route("POST", r"/services/async/(?P<version>\\d+\\.\\d)/job", create_job, auth="bulk1", kind=None),
    ]

* ``pattern`` is a regex matched against the whole path (``re.fullmatch``); named groups
  become keyword arguments.
* ``methods``: ``"GET"``, ``"GET,POST"`` or ``"*"``.
* ``auth``: ``"rest"`` (``Authorization: Bearer``; 401 JSON on failure), ``"bulk1"``
  (``X-SFDC-Session`` or Bearer; 400 ``InvalidSessionId`` in XML or JSON), or None (open).
  Authenticated routes also go through the fault schedule (503 bursts, session expiry)
  and spend one DailyApiRequests (403 REQUEST_LIMIT_EXCEEDED when out).
* ``kind``: the counter the router bumps per call (``"rest"``); None when the module
  counts its own calls (the Bulk modules do, with ``org.counters``).
* The handler returns any WSGI application — a ``werkzeug.wrappers.Response`` is one.
  Raising :class:`SfApiError` gives a REST-shaped error; anything else is logged and
  answered as a 500 UNKNOWN_EXCEPTION without a traceback.
* ``request.environ["sfsync.session"]`` holds the session dict of an authenticated call,
  and ``request.environ["sfsync.app"]`` the app (e.g. for its query cursor store).

Helpers for handlers live in :mod:`sfsync.emulator.http` (``json_response``,
``rest_error``, ``bulk1_error``, ``invalid_session``, ``read_json``).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from sfsync.emulator import auth
from sfsync.emulator.errors import SfApiError
from sfsync.emulator.http import bulk1_error, from_api_error, invalid_session, rest_error, wants_json_bulk1
from sfsync.emulator.org import Org

log = logging.getLogger(__name__)

Handler = Callable[..., Callable[..., Iterable[bytes]]]
PLUGIN_MODULES = ("sfsync.emulator.bulk1", "sfsync.emulator.bulk2")


@dataclass
class Route:
    """One route: methods, a full-path regex, a handler, the auth mode and the call kind."""

    methods: str
    pattern: str
    handler: Handler
    auth: str | None = "rest"
    kind: str | None = "rest"
    regex: re.Pattern[str] = field(init=False)
    method_set: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = re.compile(self.pattern)
        self.method_set = frozenset(m.strip().upper() for m in self.methods.split(","))


def _as_route(item: Route | tuple[Any, ...]) -> Route:
    return item if isinstance(item, Route) else Route(*item)


class EmulatorApp:
    """The WSGI app serving one :class:`Org`.

    Args:
        org: The org to serve.
        plugins: Import the Bulk modules' ``ROUTES`` (turn off for isolated tests).
    """

    def __init__(self, org: Org, *, plugins: bool = True) -> None:
        from sfsync.emulator import admin, rest

        self.org = org
        self.routes: list[Route] = []
        self.cursors = rest.QueryCursors()
        if plugins:
            for name in PLUGIN_MODULES:
                try:
                    module = importlib.import_module(name)
                except ImportError as exc:
                    if exc.name != name:
                        raise
                    continue
                self.add_routes(getattr(module, "ROUTES", []))
        self.add_routes(auth.ROUTES)
        self.add_routes(admin.ROUTES)
        self.add_routes(rest.ROUTES)

    def add_routes(self, routes: Iterable[Route | tuple[Any, ...]]) -> None:
        """Mount more routes (matched in the order added)."""
        self.routes.extend(_as_route(r) for r in routes)

    def route(self, methods: str, pattern: str, *, auth: str | None = "rest",
              kind: str | None = "rest") -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_routes` for one handler."""
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(methods, pattern, handler, auth, kind))
            return handler

        return register

    # -- WSGI ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        environ["sfsync.app"] = self
        add_limit_header = False
        try:
            response, add_limit_header = self._dispatch(request)
        except SfApiError as exc:
            response = from_api_error(exc)
        except Exception:  # the catch-all: never a traceback to the client
            log.exception("emulator: unhandled error on %s %s", request.method, request.path)
            response = rest_error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                                                            "ErrorId if you contact support: emulator")
        if add_limit_header:
            usage = self.org.api_usage()

            def start_with_usage(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                headers = [h for h in headers if h[0].lower() != "sforce-limit-info"]
                headers.append(("Sforce-Limit-Info", usage))
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            return response(environ, start_with_usage)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> tuple[Callable[..., Iterable[bytes]], bool]:
        path = request.path
        allowed: set[str] = set()
        for route in self.routes:
            match = route.regex.fullmatch(path)
            if match is None:
                continue
            if "*" not in route.method_set and request.method not in route.method_set:
                if not (request.method == "HEAD" and "GET" in route.method_set):
                    allowed |= route.method_set
                    continue
            if route.auth is not None:
                refused = self._authorize(request, route)
                if refused is not None:
                    return refused, route.auth == "rest"
            return route.handler(request, self.org, **match.groupdict()), route.auth == "rest"
        if allowed:
            return rest_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are "
                                                         f"{','.join(sorted(allowed))}"), False
        return rest_error(404, "NOT_FOUND", "The requested resource does not exist"), False

    def _authorize(self, request: Request, route: Route) -> Response | None:
        """Faults, session check and budget for an authenticated call; a response refuses it."""
        org, mode = self.org, route.auth or "rest"
        with org.lock:
            org.counters["http_calls"] += 1
            call_number = org.counters["http_calls"]
        if org.faults.http_503(call_number):
            org.counters["http_503"] += 1
            if mode == "bulk1":
                return bulk1_error(503, "ServerUnavailable", "Server temporarily unavailable",
                                   as_json=wants_json_bulk1(request))
            return rest_error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
        token = auth.token_from(request, mode)
        session = auth.check_session(org, token) if token else None
        if session is None:
            return invalid_session(mode, request)
        request.environ["sfsync.session"] = session
        try:
            org.record_call(route.kind)
        except SfApiError as exc:
            if mode == "bulk1":
                return bulk1_error(exc.status, "ExceededQuota", exc.message, as_json=wants_json_bulk1(request))
            return from_api_error(exc)
        return None


def create_app(org: Org, *, plugins: bool = True) -> EmulatorApp:
    """Build the WSGI app for ``org`` (the Bulk modules mount themselves when present)."""
    return EmulatorApp(org, plugins=plugins)


def not_found_response() -> Response:
    """Salesforce's 404 for an unknown resource."""
    return rest_error(404, "NOT_FOUND", "The requested resource does not exist")
