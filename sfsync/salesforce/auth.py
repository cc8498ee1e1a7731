"""Logging in to Salesforce from sfsync's settings.

simple-salesforce's login helpers only talk to ``https://{domain}.salesforce.com``; sfsync
must reach production, sandboxes, My Domain hosts and the local emulator alike, so it posts
to ``{login_url}/services/oauth2/token`` itself (or to the SOAP partner endpoint when no
connected app is configured) and hands the resulting token to the unmodified client.

Secrets stay :class:`pydantic.SecretStr` until the moment they go into a request body and
never appear in an exception message or a log line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from xml.etree import ElementTree

import requests

from sfsync.errors import ConfigError, TransientError, UserError


class LoginFailed(UserError):
    """Salesforce refused the credentials (wrong password, token, key or connected app)."""


class SettingsLike(Protocol):
    """The attributes of ``sfsync.config.SalesforceSettings`` this package reads."""

    emulator: Path | None
    login_url: str
    instance_url: str | None
    auth: str
    username: str | None
    password: Any
    security_token: Any
    client_id: str | None
    client_secret: Any
    private_key_file: Path | None
    session_id: Any
    api_version: str
    ca_bundle: Path | None
    timeout: float
    describe_cache_dir: Path


@dataclass(frozen=True)
class Token:
    """An access token and the instance it is valid for."""

    access_token: str
    instance_url: str

    def __repr__(self) -> str:  # never print the token itself
        return f"Token(instance_url={self.instance_url!r})"


@dataclass(frozen=True)
class Credentials:
    """Everything a login needs, resolved from settings (or an emulator's connection.json).

    Secret fields hold plain strings here, so instances are kept private to
    :class:`Authenticator` and their ``repr`` hides them.
    """

    method: str
    login_url: str
    instance_url: str | None = None
    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    private_key_file: Path | None = None
    session_id: str | None = None
    api_version: str = "59.0"
    ca_bundle: Path | None = None
    timeout: float = 60.0

    def __repr__(self) -> str:
        return f"Credentials(method={self.method!r}, login_url={self.login_url!r}, username={self.username!r})"


def _secret(value: Any) -> str | None:
    """The plain value of a ``SecretStr`` (or a plain string), at the point of use."""
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else str(value)


def credentials_from_settings(settings: SettingsLike) -> Credentials:
    """Resolve how to log in from ``SalesforceSettings``.

    With ``emulator: DIR`` set, ``DIR/connection.json`` supplies the URLs, credentials and
    CA bundle, and its ready ``access_token`` is used first (re-login uses the password).

    Raises:
        ConfigError: the settings lack what the chosen ``auth`` method needs.
    """
    api_version = str(getattr(settings, "api_version", None) or "59.0")
    timeout = float(getattr(settings, "timeout", None) or 60.0)
    emulator = getattr(settings, "emulator", None)
    if emulator:
        return _emulator_credentials(Path(emulator), api_version, timeout)
    method = getattr(settings, "auth", None) or "password"
    creds = Credentials(
        method=method,
        login_url=str(getattr(settings, "login_url", None) or "https://login.salesforce.com").rstrip("/"),
        instance_url=getattr(settings, "instance_url", None),
        username=getattr(settings, "username", None),
        password=_secret(getattr(settings, "password", None)),
        security_token=_secret(getattr(settings, "security_token", None)),
        client_id=getattr(settings, "client_id", None),
        client_secret=_secret(getattr(settings, "client_secret", None)),
        private_key_file=getattr(settings, "private_key_file", None),
        session_id=_secret(getattr(settings, "session_id", None)),
        api_version=api_version,
        ca_bundle=getattr(settings, "ca_bundle", None),
        timeout=timeout,
    )
    required = {
        "password": ("username", "password"),
        "jwt": ("username", "client_id", "private_key_file"),
        "client_credentials": ("client_id", "client_secret"),
        "session": ("session_id", "instance_url"),
    }
    if method not in required:
        raise ConfigError(f"unknown auth method {method!r}", key="salesforce.auth")
    for field in required[method]:
        if not getattr(creds, field):
            raise ConfigError(f"auth {method!r} needs {field}", key=f"salesforce.{field}")
    return creds


def _emulator_credentials(directory: Path, api_version: str, timeout: float) -> Credentials:
    path = directory / "connection.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("emulator connection file not found; is the emulator running?", file=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=str(path)) from None
    ca = data.get("ca_bundle")
    key = data.get("private_key_file")
    return Credentials(
        method="emulator",
        login_url=str(data.get("login_url") or data.get("instance_url") or "").rstrip("/"),
        instance_url=data.get("instance_url"),
        username=data.get("username"),
        password=data.get("password"),
        security_token=data.get("security_token"),
        client_id=data.get("client_id"),
        client_secret=data.get("client_secret"),
        private_key_file=Path(key) if key else None,
        session_id=data.get("access_token"),
        api_version=api_version,
        ca_bundle=Path(ca) if ca else None,
        timeout=timeout,
    )


class Authenticator:
    """Logs in (and in again) with one set of credentials over one HTTP session.

    Args:
        credentials: resolved by :func:`credentials_from_settings`.
        session: the ``requests.Session`` every call of the run uses (it may carry an
            in-process adapter, and its ``verify`` carries the CA bundle).
    """

    def __init__(self, credentials: Credentials, session: requests.Session) -> None:
        self._creds = credentials
        self.session = session
        self.logins = 0

    @property
    def can_relogin(self) -> bool:
        """Whether a fresh token can be obtained when the current one expires."""
        c = self._creds
        if c.method == "session":
            return False
        if c.method == "emulator":
            return bool(c.username and c.password) or bool(c.client_id and c.client_secret)
        return True

    @property
    def api_version(self) -> str:
        """The REST API version, e.g. ``"59.0"``."""
        return self._creds.api_version

    def initial_token(self) -> Token:
        """The first token: a ready session if configured, else a fresh login."""
        c = self._creds
        if c.method in ("session", "emulator") and c.session_id:
            instance = c.instance_url or c.login_url
            return Token(c.session_id, instance.rstrip("/"))
        return self.login()

    def login(self) -> Token:
        """Obtain a new access token.

        Raises:
            LoginFailed: Salesforce refused the credentials.
            TransientError: the login host was unreachable or answered 5xx.
            SessionExpired: a ready session cannot be renewed.
        """
        c = self._creds
        method = c.method
        if method == "emulator":
            method = "password" if c.username and c.password else "client_credentials"
        if method == "session":
            from sfsync.errors import SessionExpired

            raise SessionExpired("the configured session id expired; sfsync cannot log in again without credentials")
        if method == "password" and not c.client_id:
            return self._soap_login()
        form: dict[str, str] = {}
        if method == "password":
            form = {
                "grant_type": "password",
                "client_id": c.client_id or "",
                "username": c.username or "",
                "password": (c.password or "") + (c.security_token or ""),
            }
            if c.client_secret:
                form["client_secret"] = c.client_secret
        elif method == "jwt":
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": self._jwt_assertion()}
        elif method == "client_credentials":
            form = {
                "grant_type": "client_credentials",
                "client_id": c.client_id or "",
                "client_secret": c.client_secret or "",
            }
        return self._oauth_token(form)

    def _jwt_assertion(self) -> str:
        import jwt  # PyJWT; imported here so other methods don't pay for cryptography

        c = self._creds
        try:
            key = Path(c.private_key_file or "").read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read private key: {exc.strerror}", key="salesforce.private_key_file") from None
        parsed = urlparse(c.login_url)
        claims = {
            "iss": c.client_id,
            "sub": c.username,
            # Salesforce wants the login host itself as audience (login/test/My Domain).
            "aud": f"{parsed.scheme}://{parsed.netloc}",
            "exp": int(time.time()) + 180,
        }
        return jwt.encode(claims, key, algorithm="RS256")

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.post(url, timeout=self._creds.timeout, **kwargs)
        except requests.exceptions.SSLError:
            raise ConfigError(f"TLS verification of {url} failed; is ca_bundle right?", key="salesforce.ca_bundle") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"cannot reach the Salesforce login host {url}: {type(exc).__name__}") from None
        self.logins += 1
        if response.status_code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise TransientError(
                f"Salesforce login answered HTTP {response.status_code}",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return response

    def _oauth_token(self, form: dict[str, str]) -> Token:
        response = self._post(f"{self._creds.login_url}/services/oauth2/token", data=form)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error", f"HTTP {response.status_code}")
            description = body.get("error_description", "")
            raise LoginFailed(f"Salesforce login failed at {self._creds.login_url}: {error} {description}".strip())
        instance = body.get("instance_url") or self._creds.instance_url or self._creds.login_url
        return Token(body["access_token"], instance.rstrip("/"))

    def _soap_login(self) -> Token:
        c = self._creds
        ns = "urn:partner.soap.sforce.com"
        envelope = ElementTree.Element("soapenv:Envelope", {"xmlns:soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "xmlns:urn": ns})
        body = ElementTree.SubElement(ElementTree.SubElement(envelope, "soapenv:Body"), "urn:login")
        ElementTree.SubElement(body, "urn:username").text = c.username
        ElementTree.SubElement(body, "urn:password").text = (c.password or "") + (c.security_token or "")
        response = self._post(
            f"{c.login_url}/services/Soap/u/{c.api_version}",
            data=ElementTree.tostring(envelope, encoding="utf-8"),
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
        )
        try:
            root = ElementTree.fromstring(response.content)
        except ElementTree.ParseError:
            raise LoginFailed(f"Salesforce SOAP login failed at {c.login_url}: HTTP {response.status_code}") from None
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if "sessionId" not in values:
            code = values.get("exceptionCode") or values.get("faultcode") or f"HTTP {response.status_code}"
            raise LoginFailed(f"Salesforce SOAP login failed at {c.login_url}: {code}")
        server = urlparse(values.get("serverUrl", ""))
        instance = f"{server.scheme}://{server.netloc}" if server.netloc else (c.instance_url or c.login_url)
        return Token(values["sessionId"], instance.rstrip("/"))


def make_session(credentials: Credentials, session: requests.Session | None = None) -> requests.Session:
    """The HTTP session for a run: the caller's (e.g. in-process emulator) or a new one.

    A configured CA bundle is what the session verifies HTTPS with (see :mod:`.tls`), so
    that the client trusts a private CA (the emulator's, or a corporate proxy's).
    """
    from .tls import Session, trust

    session = session or Session()
    if credentials.ca_bundle:
        trust(session, str(credentials.ca_bundle))
    return session
