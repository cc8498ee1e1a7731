"""Use the emulator in-process, with no socket: a ``requests`` transport adapter and helpers.

* :class:`InProcessAdapter` turns a ``requests`` call into a WSGI call of the app.
* :func:`inprocess_session` gives a ``requests.Session`` that sends ``https://<host>/...``
  to the app (pass it to ``simple_salesforce.Salesforce(session=...)``).
* :func:`route_requests` is a context manager that also routes module-level
  ``requests.get/post`` (what salesforce-bulk uses) for that host into the app.
* :func:`inprocess_salesforce` builds an unmodified ``simple_salesforce.Salesforce`` on an org.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

from sfsync.emulator import auth
from sfsync.emulator.app import EmulatorApp, create_app
from sfsync.emulator.org import Org

DEFAULT_HOST = "emulator.sfsync.invalid"


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        return _body_bytes(body.read())
    # A generator (salesforce-bulk streams batches): what a chunked upload would carry.
    return b"".join(_body_bytes(chunk) for chunk in body)


class InProcessAdapter(BaseAdapter):
    """A ``requests`` transport adapter that calls a WSGI app directly.

    Args:
        app: Any WSGI application (usually an :class:`EmulatorApp`).
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        """Run the request through the app and wrap its answer as a ``requests.Response``."""
        url = urlsplit(request.url or "")
        builder = EnvironBuilder(
            method=request.method or "GET",
            path=unquote(url.path or "/"),
            query_string=url.query,
            base_url=f"{url.scheme}://{url.netloc}",
            headers=[(k, v) for k, v in request.headers.items() if k.lower() not in ("content-length", "transfer-encoding")],
            data=_body_bytes(request.body),
        )
        environ = builder.get_environ()
        environ["REMOTE_ADDR"] = "127.0.0.1"
        app_iter, status, headers = run_wsgi_app(self.app, environ, buffered=True)
        content = b"".join(app_iter)
        response = requests.Response()
        response.status_code = int(status.split(" ", 1)[0])
        response.reason = status.split(" ", 1)[1] if " " in status else ""
        response.headers = CaseInsensitiveDict(headers.to_wsgi_list())
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = io.BytesIO(content)
        response._content = content
        response.url = request.url or ""
        response.request = request
        response.connection = self  # type: ignore[assignment]
        return response

    def close(self) -> None:
        """Nothing to release."""


def inprocess_session(target: Org | EmulatorApp, host: str = DEFAULT_HOST) -> requests.Session:
    """A ``requests.Session`` whose ``https://{host}/`` requests go to the app in-process."""
    app = target if isinstance(target, EmulatorApp) else create_app(target)
    session = requests.Session()
    adapter = InProcessAdapter(app)
    session.mount(f"https://{host}/", adapter)
    session.mount(f"http://{host}/", adapter)
    return session


@contextlib.contextmanager
def route_requests(target: Org | EmulatorApp, host: str = DEFAULT_HOST) -> Iterator[EmulatorApp]:
    """Route every ``requests`` call to ``https://{host}/`` (module-level ones too) into the app."""
    app = target if isinstance(target, EmulatorApp) else create_app(target)
    adapter = InProcessAdapter(app)
    original = requests.Session.get_adapter
    prefixes = (f"https://{host}/", f"http://{host}/")

    def get_adapter(self: requests.Session, url: str) -> BaseAdapter:
        if url.lower().startswith(prefixes):
            return adapter
        return original(self, url)

    with mock.patch.object(requests.Session, "get_adapter", get_adapter):
        yield app


def inprocess_salesforce(org: Org, host: str = DEFAULT_HOST, version: str = "59.0", *, expires: bool = True) -> Any:
    """An unmodified ``simple_salesforce.Salesforce`` talking to ``org`` in-process.

    Its session obeys the ``session_expire_after_calls`` fault unless ``expires`` is False.
    """
    from simple_salesforce import Salesforce

    session = inprocess_session(org, host)
    token = auth.new_session(org, source="test", expires=expires)
    return Salesforce(instance_url=f"https://{host}", session_id=token, session=session, version=version)
