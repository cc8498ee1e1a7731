"""Trusting a private CA (the emulator's, a corporate proxy's) in both HTTP clients.

Two quirks make ``session.verify = ca`` not enough:

* requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the environment override a
  session's ``verify`` (many machines set them to the system bundle), so the session gets
  an adapter that always verifies with the configured bundle;
* salesforce-bulk uses module-level ``requests.post/get``, whose only trust setting is
  that same environment variable. During its calls the variable points at a bundle made
  of the previous trust store *plus* the configured CA, so that any other thread talking
  to another host meanwhile still trusts what it trusted before.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

_ENV = "REQUESTS_CA_BUNDLE"
_lock = threading.Lock()
_users = 0
_saved: str | None = None
_combined: dict[str, str] = {}


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


def combined_bundle(ca_bundle: str) -> str:
    """A PEM file with the current trust store followed by ``ca_bundle`` (made once)."""
    with _lock:
        if ca_bundle in _combined:
            return _combined[ca_bundle]
        base = os.environ.get(_ENV) or os.environ.get("CURL_CA_BUNDLE")
        if not base:
            import certifi  # requests' own default store

            base = certifi.where()
        parts = []
        for path in (base, ca_bundle):
            try:
                parts.append(Path(path).read_bytes().rstrip(b"\n") + b"\n")
            except OSError:
                continue  # an unreadable base store: trust the configured CA alone
        fd, name = tempfile.mkstemp(prefix="sfsync-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(parts))
        _combined[ca_bundle] = name
        return name


@contextmanager
def module_requests_trust(ca_bundle: str | None) -> Iterator[None]:
    """Let module-level ``requests`` calls trust ``ca_bundle`` for the duration (re-entrant)."""
    global _users, _saved
    if not ca_bundle:
        yield
        return
    bundle = combined_bundle(ca_bundle)
    with _lock:
        if _users == 0:
            _saved = os.environ.get(_ENV)
            os.environ[_ENV] = bundle
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                if _saved is None:
                    os.environ.pop(_ENV, None)
                else:
                    os.environ[_ENV] = _saved
