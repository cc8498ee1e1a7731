"""Trusting a private CA (the emulator's, a corporate proxy's) in both HTTP clients.

Two quirks make ``session.verify = ca`` not enough:

* requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment override a
  session's ``verify`` (many machines set them to the system bundle), so the session gets
  an adapter that always verifies with the configured bundle;
* salesforce-bulk calls module-level ``requests.post/get``: no session, so no configured
  trust, no proxy settings and a new TLS connection (and CA file load) for every call. Its
  module's ``requests`` is replaced by :data:`bulk_requests`, which sends the calls of a
  thread inside :meth:`SessionRouter.using` through that thread's session (keep-alive, the
  session's trust) and every other call to the real module, unchanged.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies


class Session(requests.Session):
    """A requests session that reads the proxy environment once per host, not once per request.

    requests walks the whole process environment (``getproxies``) before every request to
    find ``HTTPS_PROXY``/``NO_PROXY``: about a millisecond of CPU a call, some 0.5 s for a
    million line items sent in Bulk API batches. The environment does not change during a
    run, so the answer is kept per scheme and host; everything else is as requests does it.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """Like :meth:`requests.Session.merge_environment_settings`, the proxy lookup cached."""
        if self.trust_env:
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            parts = urlsplit(str(url))
            env_proxies = _environ_proxies(f"{parts.scheme}://{parts.netloc}/", no_proxy)
            if proxies is not None:
                for k, v in env_proxies.items():
                    proxies.setdefault(k, v)
            if verify is True or verify is None:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
        return {"proxies": merge_setting(proxies, self.proxies), "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


@lru_cache(maxsize=256)
def _environ_proxies(origin: str, no_proxy: str | None) -> dict[str, str]:
    return dict(get_environ_proxies(origin, no_proxy=no_proxy))


class CaBundleAdapter(HTTPAdapter):
    """An HTTPS adapter that verifies with one CA bundle, whatever the environment says."""

    def __init__(self, ca_bundle: str, **kwargs: Any) -> None:
        self.ca_bundle = ca_bundle
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send with ``verify`` forced to the configured bundle."""
        kwargs["verify"] = self.ca_bundle
        return super().send(request, *args, **kwargs)


def trust(session: requests.Session, ca_bundle: str) -> None:
    """Make ``session`` verify HTTPS with ``ca_bundle`` (longer mounts, e.g. in-process, win)."""
    session.verify = ca_bundle
    session.mount("https://", CaBundleAdapter(ca_bundle))


class SessionRouter:
    """Stands in for the ``requests`` module inside a library that only calls ``requests.get/post``.

    Inside ``with router.using(session):`` this thread's calls go through ``session``; outside
    it (or in other threads) they go to the real module, looked up at call time (so test
    doubles that patch ``requests.post`` still apply).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(requests, name)  # exceptions, codes, ... as the module has them

    def _target(self) -> Any:
        return getattr(self._local, "session", None) or requests

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """``requests.get`` through the thread's session."""
        return self._target().get(url, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        """``requests.post`` through the thread's session."""
        return self._target().post(url, data=data, json=json, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> requests.Response:
        """``requests.put`` through the thread's session."""
        return self._target().put(url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        """``requests.delete`` through the thread's session."""
        return self._target().delete(url, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``requests.request`` through the thread's session."""
        return self._target().request(method, url, **kwargs)

    @contextmanager
    def using(self, session: requests.Session) -> Iterator[None]:
        """Route this thread's calls through ``session`` for the duration (re-entrant)."""
        before = getattr(self._local, "session", None)
        self._local.session = session
        try:
            yield
        finally:
            self._local.session = before


bulk_requests = SessionRouter()


def route_bulk1() -> None:
    """Point salesforce-bulk's module-level ``requests`` at :data:`bulk_requests` (idempotent)."""
    import salesforce_bulk.salesforce_bulk as module

    module.requests = bulk_requests
