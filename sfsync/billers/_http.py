"""HTTP for REST billers: one ``requests.Session``, auth, timeouts, retries with back-off.

Retries cover connection errors, timeouts, 429 and 5xx, honouring ``Retry-After``; a POST is
retried too because every write sfsync makes carries its own idempotency key (the Salesforce
Id as ``correlatorId``). Tokens live in headers only and are never logged nor put in errors.
"""

from __future__ import annotations

import random
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal

import requests
from pydantic import Field, SecretStr

from sfsync.billers.base import KindSettings
from sfsync.errors import TerminalError, TransientError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class BearerAuth(KindSettings):
    """A static bearer token."""

    type: Literal["bearer"]
    token: SecretStr


class OAuth2Auth(KindSettings):
    """OAuth2 client credentials; the token is fetched and refreshed as needed."""

    type: Literal["oauth2"]
    token_url: str
    client_id: str
    client_secret: SecretStr
    scope: str | None = None


class ApiKeyAuth(KindSettings):
    """An API key sent in a header."""

    type: Literal["api_key"]
    header: str = "X-API-Key"
    key: SecretStr


Auth = Annotated[BearerAuth | OAuth2Auth | ApiKeyAuth, Field(discriminator="type")]


class BadResponse(Exception):
    """The server answered something that is not the JSON we asked for (an HTML error page...)."""


def retry_after(resp: requests.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    v = resp.headers.get("Retry-After")
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(v).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class HttpClient:
    """Session + auth + retries for one REST biller."""

    def __init__(self, base_url: str, auth: Any, *, timeout: float, retries: int, backoff: float,
                 max_backoff: float, verify: bool | str = True, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or requests.Session()
        self.session.verify = verify
        self.session.headers["Accept"] = "application/json"
        self._token: str | None = None
        self._token_expiry = 0.0
        self._lock = threading.Lock()
        self.sleep = time.sleep  # tests replace it

    def url(self, path: str) -> str:
        """Absolute URL of an API path."""
        return path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"

    def _auth_headers(self, refresh: bool = False) -> dict[str, str]:
        a = self.auth
        if a is None:
            return {}
        if isinstance(a, BearerAuth):
            return {"Authorization": f"Bearer {a.token.get_secret_value()}"}
        if isinstance(a, ApiKeyAuth):
            return {a.header: a.key.get_secret_value()}
        with self._lock:
            if refresh or self._token is None or time.time() >= self._token_expiry:
                self._fetch_token(a)
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self, a: OAuth2Auth) -> None:
        data = {"grant_type": "client_credentials"}
        if a.scope:
            data["scope"] = a.scope
        try:
            r = self.session.post(a.token_url, data=data, auth=(a.client_id, a.client_secret.get_secret_value()),
                                  timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientError(f"token endpoint {a.token_url} unreachable: {type(exc).__name__}") from None
        if r.status_code >= 500:
            raise TransientError(f"token endpoint {a.token_url}: HTTP {r.status_code}")
        if r.status_code != 200:
            raise TerminalError(f"token endpoint {a.token_url} refused the client credentials: HTTP {r.status_code}")
        body = r.json()
        self._token = body["access_token"]
        self._token_expiry = time.time() + float(body.get("expires_in", 3600)) - 30

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
        """Send with retries; returns any final response below 500 (the caller reads 4xx)."""
        url = self.url(path)
        refreshed = False
        attempt = 0
        while True:
            h = {**self._auth_headers(), **(headers or {})}
            try:
                r = self.session.request(method, url, params=params, json=json, headers=h, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retries:
                    raise TransientError(f"{method} {url}: {type(exc).__name__} after {attempt + 1} attempts") from None
                self.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if r.status_code == 401 and isinstance(self.auth, OAuth2Auth) and not refreshed:
                refreshed = True
                self._auth_headers(refresh=True)
                continue
            if r.status_code in RETRY_STATUS:
                wait = retry_after(r)
                if attempt >= self.retries:
                    raise TransientError(f"{method} {url}: HTTP {r.status_code} after {attempt + 1} attempts",
                                         retry_after=wait)
                self.sleep(self._delay(attempt, wait))
                attempt += 1
                continue
            return r

    def _delay(self, attempt: int, wait: float | None) -> float:
        if wait is not None:
            return min(wait, self.max_backoff)
        return min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + random.random() / 2)

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> tuple[Any, requests.Response]:
        """GET and decode JSON; :class:`BadResponse` names the URL when the body is not JSON."""
        r = self.request("GET", path, params=params)
        if r.status_code >= 400:
            raise BadResponse(f"GET {r.url}: HTTP {r.status_code}: {r.text[:200]!r}")
        return decode(r), r


def decode(r: requests.Response) -> Any:
    """The JSON body, or :class:`BadResponse` naming the URL and what came instead."""
    ctype = r.headers.get("Content-Type", "")
    try:
        if "html" in ctype.lower():
            raise ValueError("HTML")
        return r.json()
    except ValueError:
        snippet = " ".join(r.text[:120].split())
        raise BadResponse(f"{r.request.method} {r.url}: expected JSON, got {ctype or 'no content type'} "
                          f"({snippet!r})") from None
