"""Every call to Salesforce passes here: budget guard, call counting, re-login, back-off.

Three clients share one login: simple-salesforce's ``Salesforce`` (REST, queries),
plain requests through the same session (Bulk API 2.0, so that sfsync polls on its own
schedule) and salesforce-bulk's ``SalesforceBulk`` (Bulk API 1.0 Serial; it uses the
module-level ``requests`` functions, so its TLS trust comes from ``REQUESTS_CA_BUNDLE``).

Retry rules, decided from the failure alone:

* an expired session (REST 401 ``INVALID_SESSION_ID``, Bulk 1.0 400 ``InvalidSessionId``):
  log in again and retry once;
* HTTP 5xx, connection failures: exponential back-off honouring ``Retry-After``, bounded;
  a read timeout is retried only for idempotent calls (an insert may have happened);
* ``REQUEST_LIMIT_EXCEEDED``: :class:`~sfsync.errors.BudgetExhausted`, no retry;
* any other HTTP error: :class:`ApiError` (terminal), never retried.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from salesforce_bulk import SalesforceBulk
from salesforce_bulk.salesforce_bulk import BulkApiError
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from simple_salesforce.util import exception_handler

from sfsync.errors import BudgetExhausted, ConfigError, SessionExpired, TerminalError, TransientError

from .auth import Authenticator, Token
from .guard import BudgetGuard, CallCounter
from .tls import bulk_requests, route_bulk1

T = TypeVar("T")

#: Bytes per read of a downloaded body (see :meth:`Transport.download`).
BODY_PIECE = 1 << 20


class ApiError(TerminalError):
    """Salesforce refused a request for a reason retrying cannot fix (HTTP 4xx).

    Attributes:
        status: the HTTP status.
        error_code: Salesforce's ``errorCode`` (e.g. ``INVALID_FIELD``), when it gave one.
        content: the decoded response body.
    """

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None, content: Any = None) -> None:
        self.status = status
        self.error_code = error_code
        self.content = content
        super().__init__(message)


@dataclass
class RetryPolicy:
    """Back-off for transient HTTP failures and the polling schedule of bulk jobs.

    Attributes:
        attempts: total attempts of one call on 5xx/connection failures.
        base_delay: first back-off delay; doubles per attempt (with jitter).
        max_delay: cap of one back-off delay (a larger ``Retry-After`` is honoured up to
            ``max_retry_after``).
        first_poll: delay before the first status check of a bulk job (≤ 0.5 s: a
            one-record job should take well under a second end to end).
        poll_factor: growth of the polling interval.
        max_poll: cap of the polling interval.
        job_timeout: give up on a bulk job that is not finished after this many seconds.
        sleep: the sleep function (tests replace it).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    first_poll: float = 0.1
    poll_factor: float = 1.6
    max_poll: float = 3.0
    job_timeout: float = 6 * 3600.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def polls(self) -> Iterator[float]:
        """Delays between status checks of a bulk job: short first, then growing, capped."""
        delay = self.first_poll
        while True:
            yield delay
            delay = min(self.max_poll, delay * self.poll_factor)


@dataclass
class _Failure:
    kind: str  # session | transient | limit | tls | api
    message: str
    retry_after: float | None = None
    unsent: bool = False  # the request certainly did not reach Salesforce
    status: int | None = None
    error_code: str | None = None
    content: Any = None


def _error_code(content: Any) -> str | None:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    if isinstance(content, dict):
        return content.get("errorCode") or content.get("error")
    return None


def _error_message(content: Any) -> str:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", content[0]))
    if isinstance(content, dict):
        return str(content.get("message") or content.get("error_description") or content)
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")[:500]
    return str(content)[:500]


def _connection_failed(exc: requests.ConnectionError) -> _Failure:
    """A failed connection, naming the host tried (scheme://host:port only, never a path or query).

    A refused connection never sent the request, so even an insert may be sent again; refused on
    this machine, most likely the local emulator is not running.
    """
    parts = urlsplit(str(getattr(getattr(exc, "request", None), "url", None) or ""))
    where = f" at {parts.scheme}://{parts.netloc}" if parts.netloc else ""
    refused = "refused" in str(exc).lower()
    hint = (" (connection refused: nothing listens there; is the emulator running? `sfsync emulator serve`)"
            if refused and parts.hostname in ("127.0.0.1", "localhost", "::1") else "")
    return _Failure("transient", f"connection to Salesforce{where} failed: {type(exc).__name__}{hint}", unsent=refused)


def _classify(exc: BaseException, retry_after: float | None) -> _Failure | None:
    if isinstance(exc, SalesforceExpiredSession):
        return _Failure("session", "Salesforce session expired (INVALID_SESSION_ID)")
    if isinstance(exc, SalesforceError):
        code = _error_code(exc.content)
        message = f"HTTP {exc.status} from {exc.resource_name or exc.url}: {code or ''} {_error_message(exc.content)}"
        if code == "INVALID_SESSION_ID":
            return _Failure("session", message)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return _Failure("limit", message)
        if exc.status >= 500:
            return _Failure("transient", message, retry_after, status=exc.status)
        return _Failure("api", message, status=exc.status, error_code=code, content=exc.content)
    if isinstance(exc, BulkApiError):
        text = str(exc)
        if "InvalidSessionId" in text:
            return _Failure("session", "Bulk API session expired (InvalidSessionId)")
        if "ExceededQuota" in text or "REQUEST_LIMIT_EXCEEDED" in text:
            return _Failure("limit", text[:500])
        if exc.status_code is not None and exc.status_code >= 500:
            return _Failure("transient", text[:500], status=exc.status_code)
        return _Failure("api", text[:500], status=exc.status_code, content=text)
    if isinstance(exc, requests.exceptions.SSLError):
        return _Failure("tls", f"TLS verification of Salesforce failed ({exc.__class__.__name__}); is salesforce.ca_bundle right?")
    if isinstance(exc, requests.ConnectTimeout):
        return _Failure("transient", "cannot reach Salesforce: ConnectTimeout", unsent=True)
    if isinstance(exc, requests.ConnectionError):
        # Also raised when the connection drops after the request went out.
        return _connection_failed(exc)
    if isinstance(exc, requests.Timeout):
        return _Failure("transient", f"Salesforce did not answer in time: {type(exc).__name__}")
    return None


class Transport:
    """One login shared by the three clients, with the guard and retries around each call.

    Args:
        auth: logs in and in again.
        guard: the API budget guard (shared by the run).
        counter: counts calls by kind.
        policy: back-off and polling.
        timeout: seconds for one HTTP request.
    """

    def __init__(
        self,
        auth: Authenticator,
        guard: BudgetGuard,
        counter: CallCounter,
        policy: RetryPolicy | None = None,
        *,
        timeout: float = 60.0,
        ca_bundle: str | None = None,
    ) -> None:
        self.auth = auth
        self.session = auth.session
        self.guard = guard
        self.counter = counter
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.relogins = 0
        self.retries = 0  # calls sent again after a 5xx or a connection failure
        self._lock = threading.Lock()
        self._local = threading.local()
        self._token: Token = auth.initial_token()
        self._sf: Salesforce | None = None
        self._bulk1: SalesforceBulk | None = None
        self.session.hooks.setdefault("response", []).append(self._remember_retry_after)

    # -- clients ---------------------------------------------------------------------

    @property
    def token(self) -> Token:
        """The current access token."""
        return self._token

    @property
    def sf(self) -> Salesforce:
        """The unmodified simple-salesforce client for the current token."""
        with self._lock:
            if self._sf is None:
                self._sf = Salesforce(
                    instance_url=self._token.instance_url,
                    session_id=self._token.access_token,
                    session=self.session,
                    version=self.auth.api_version,
                    object_pairs_hook=dict,
                )
            return self._sf

    @property
    def bulk1(self) -> SalesforceBulk:
        """The unmodified salesforce-bulk client for the current token."""
        with self._lock:
            if self._bulk1 is None:
                route_bulk1()  # its module-level calls go through our session (see tls.py)
                self._bulk1 = SalesforceBulk(
                    sessionId=self._token.access_token,
                    host=self._token.instance_url,
                    API_version=self.auth.api_version,
                )
            return self._bulk1

    @property
    def data_url(self) -> str:
        """``https://host/services/data/vXX.X/``."""
        return f"{self._token.instance_url}/services/data/v{self.auth.api_version}/"

    def relogin(self, stale: Token) -> None:
        """Log in again unless another thread already replaced ``stale``."""
        with self._lock:
            if self._token is not stale:
                return
            self._token = self.auth.login()
            self.relogins += 1
            self._sf = None
            if self._bulk1 is not None:
                # Keep the instance: it remembers the content type of the jobs it opened.
                self._bulk1.sessionId = self._token.access_token
                self._bulk1.endpoint = f"{self._token.instance_url}/services/async/{self.auth.api_version}"

    # -- calls -----------------------------------------------------------------------

    def _remember_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        value = response.headers.get("Retry-After")
        try:
            self._local.retry_after = float(value) if value else None
        except ValueError:
            self._local.retry_after = None

    def call(self, kind: str, fn: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """Run ``fn(sf)`` (one HTTP call) under the guard and the retry rules."""
        return self._run(kind, lambda: fn(self.sf), idempotent)

    def call_bulk1(self, fn: Callable[[SalesforceBulk], T], *, idempotent: bool = True, guarded: bool = True) -> T:
        """Run ``fn(bulk)`` (one Bulk 1.0 HTTP call) under the guard and the retry rules.

        ``guarded=False`` is for the polls and result downloads of a job already
        submitted: finishing it costs a few calls past the share, while abandoning it
        would leave rows whose outcome nobody records.
        """

        def run() -> T:
            with bulk_requests.using(self.session):
                return fn(self.bulk1)

        return self._run("bulk1", run, idempotent, guarded)

    def request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        idempotent: bool = True,
        guarded: bool = True,
        content_type: str = "application/json",
        accept: str = "application/json",
        **kwargs: Any,
    ) -> requests.Response:
        """One raw HTTP call relative to the data URL (``jobs/ingest``) through the session.

        Responses ≥ 300 raise through simple-salesforce's own exception mapping, so that
        every client's failures are classified the same way. ``guarded``: see
        :meth:`call_bulk1`.
        """

        def run() -> requests.Response:
            token = self._token
            headers = {"Authorization": f"Bearer {token.access_token}", "Content-Type": content_type, "Accept": accept}
            url = path if path.startswith("http") else self.data_url + path.lstrip("/")
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if response.status_code >= 300:
                exception_handler(response, name=path)
            return response

        return self._run(kind, run, idempotent, guarded)

    def download(
        self,
        kind: str,
        path: str,
        *,
        reuse: bool = False,
        guarded: bool = True,
        accept: str = "text/csv",
        **kwargs: Any,
    ) -> tuple[bytes | bytearray, Mapping[str, str]]:
        """GET a large body (a result file, a query page): its bytes and the response headers.

        Like :meth:`request`, with the body read inside the retry rules, but in pieces of
        :data:`BODY_PIECE` rather than requests' 10 KiB (``.content``): a 10 MB result file
        then costs one pass through urllib3's read path per HTTP chunk, not several.

        Args:
            reuse: read into this thread's download buffer and return it (a ``bytearray``),
                valid only until this thread's next ``reuse`` download: parse it before
                then. Its memory is kept from body to body; a fresh 10 MB ``bytes`` per
                body costs the kernel ~2,500 page faults each time.
        """

        def run() -> tuple[bytes | bytearray, Mapping[str, str]]:
            token = self._token
            headers = {"Authorization": f"Bearer {token.access_token}", "Content-Type": "application/json", "Accept": accept}
            url = path if path.startswith("http") else self.data_url + path.lstrip("/")
            response = self.session.request("GET", url, headers=headers, timeout=self.timeout, stream=True, **kwargs)
            try:
                if response.status_code >= 300:
                    exception_handler(response, name=path)
                pieces = response.iter_content(BODY_PIECE)
                body = self._fill(pieces) if reuse else b"".join(pieces)
            finally:
                response.close()  # after a full read, a no-op that keeps the connection pooled
            return body, response.headers

        return self._run(kind, run, True, guarded)

    def _fill(self, pieces: Iterator[bytes]) -> bytearray:
        """This thread's download buffer, overwritten with ``pieces`` (see :meth:`download`)."""
        buf: bytearray | None = getattr(self._local, "body", None)
        try:
            if buf is None:
                raise BufferError
            buf.append(0)  # fails if a view of the previous body is still alive:
            del buf[-1]  # that body is then left alone, and a new buffer is used
        except BufferError:
            buf = self._local.body = bytearray()
        n = 0
        for piece in pieces:
            end = n + len(piece)
            if end <= len(buf):
                buf[n:end] = piece  # same length: a copy, never a reallocation
            else:
                buf[n:] = piece  # grows (within the memory already held, after the first bodies)
            n = end
        del buf[n:]
        return buf

    def _run(self, kind: str, run: Callable[[], T], idempotent: bool, guarded: bool = True) -> T:
        relogged = False
        attempt = 0
        while True:
            if guarded:
                self.guard.check()
            self.guard.spend()
            self.counter.add(kind)
            token = self._token
            self._local.retry_after = None
            try:
                return run()
            except (SalesforceError, BulkApiError, requests.RequestException) as exc:
                failure = _classify(exc, getattr(self._local, "retry_after", None))
                if failure is None:
                    raise
            if failure.kind == "session":
                if relogged or not self.auth.can_relogin:
                    raise SessionExpired(failure.message) from None
                self.relogin(token)
                relogged = True
                continue
            if failure.kind == "tls":
                raise ConfigError(failure.message, key="salesforce.ca_bundle") from None
            if failure.kind == "limit":
                raise BudgetExhausted(f"the org's daily API request limit is exhausted: {failure.message}") from None
            if failure.kind == "transient":
                attempt += 1
                if (idempotent or failure.unsent) and attempt < self.policy.attempts:
                    with self._lock:
                        self.retries += 1
                    self.policy.sleep(self.policy.backoff(attempt, failure.retry_after))
                    continue
                raise TransientError(failure.message, retry_after=failure.retry_after) from None
            raise ApiError(failure.message, status=failure.status, error_code=failure.error_code, content=failure.content) from None

def json_body(payload: Any) -> str:
    """Compact JSON for request bodies (``allow_nan=False``: Salesforce rejects NaN)."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":"))
