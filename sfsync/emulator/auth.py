"""Authentication: sessions, the OAuth token endpoint and SOAP partner login.

Sessions live in ``org.sessions`` (token → dict) so they persist with the org's state.
The ``session_expire_after_calls`` fault kills a session after N authenticated calls,
which is how tests rehearse INVALID_SESSION_ID and re-login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import jwt
from cryptography import x509
from werkzeug.wrappers import Request, Response

from sfsync.emulator.http import json_response
from sfsync.emulator.ids import make_id

if TYPE_CHECKING:
    from sfsync.emulator.org import Org

ORG_ID = make_id("00D", 1)
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REAL_LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


# -- sessions ----------------------------------------------------------------------------
def new_session(org: Org, *, source: str, user_id: str | None = None, expires: bool = True) -> str:
    """Create a session for the admin user and return its token (``00D...!...``)."""
    token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
    with org.lock:
        org.sessions[token] = {"user_id": user_id or org.admin_user_id, "source": source, "calls": 0,
                               "issued_at": int(time.time() * 1000), "expires": expires}
        org._dirty = True
    return token


def check_session(org: Org, token: str) -> dict[str, Any] | None:
    """The live session for ``token`` (counting this call), or None when invalid/expired."""
    with org.lock:
        session = org.sessions.get(token)
        if session is None:
            return None
        session["calls"] += 1
        limit = org.faults.session_expire_after_calls
        if limit and session.get("expires", True) and session["calls"] > int(limit):
            del org.sessions[token]
            org.counters["sessions_expired"] += 1
            return None
        return session


def token_from(request: Request, mode: str) -> str | None:
    """The session token a client sent: Bearer/OAuth header, or X-SFDC-Session for Bulk 1.0."""
    if mode == "bulk1":
        value = request.headers.get("X-SFDC-Session")
        if value:
            return value.strip()
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


# -- OAuth token endpoint ------------------------------------------------------------------
def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def _token_response(org: Org, request: Request, source: str) -> Response:
    token = new_session(org, source=source)
    base = request.host_url.rstrip("/")
    issued = str(int(time.time() * 1000))
    signature = base64.b64encode(hmac.new(org.credentials["client_secret"].encode(), (base + issued).encode(),
                                          hashlib.sha256).digest()).decode()
    return json_response({
        "access_token": token, "instance_url": base, "id": f"{base}/id/{ORG_ID}/{org.admin_user_id}",
        "token_type": "Bearer", "issued_at": issued, "signature": signature, "scope": "api full",
    })


def _check_client(org: Org, form: Any, *, secret_required: bool) -> Response | None:
    if form.get("client_id") != org.credentials["client_id"]:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if secret_required or form.get("client_secret"):
        if not hmac.compare_digest(str(form.get("client_secret", "")), org.credentials["client_secret"]):
            return _oauth_error("invalid_client", "invalid client credentials")
    return None


def _verify_jwt(org: Org, request: Request, assertion: str) -> str | None:
    """The reason a JWT bearer assertion is refused, or None when it is good."""
    keys = []
    for pem in org.jwt_certificates:
        keys.append(x509.load_pem_x509_certificate(pem).public_key())
    if not keys:
        return "no certificate is configured for this connected app"
    audiences = [request.host_url.rstrip("/"), *_REAL_LOGIN_HOSTS]
    for key in keys:
        try:
            claims = jwt.decode(assertion, key=key, algorithms=["RS256"], audience=audiences,  # type: ignore[arg-type]
                                options={"require": ["iss", "sub", "aud", "exp"]}, leeway=300)
        except jwt.ExpiredSignatureError:
            return "expired"
        except jwt.PyJWTError:
            continue
        if claims.get("iss") != org.credentials["client_id"]:
            return "client identifier invalid"
        if str(claims.get("sub", "")).lower() != org.credentials["username"].lower():
            return "user hasn't approved this consumer"
        return None
    return "invalid assertion"


def oauth_token(request: Request, org: Org) -> Response:
    """``POST /services/oauth2/token``: password, JWT bearer and client_credentials grants."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "must use application/x-www-form-urlencoded")
    form = request.form
    grant = form.get("grant_type", "")
    with org.lock:
        org.counters["oauth"] += 1
    if grant == "password":
        refused = _check_client(org, form, secret_required=False)
        if refused is not None:
            return refused
        expected = org.credentials["password"] + org.credentials["security_token"]
        ok_user = str(form.get("username", "")).lower() == org.credentials["username"].lower()
        if not ok_user or not hmac.compare_digest(str(form.get("password", "")), expected):
            return _oauth_error("invalid_grant", "authentication failure")
        return _token_response(org, request, "password")
    if grant == JWT_GRANT:
        reason = _verify_jwt(org, request, str(form.get("assertion", "")))
        if reason == "client identifier invalid":
            return _oauth_error("invalid_client_id", reason)
        if reason is not None:
            return _oauth_error("invalid_grant", reason)
        return _token_response(org, request, "jwt")
    if grant == "client_credentials":
        refused = _check_client(org, form, secret_required=True)
        if refused is not None:
            return refused
        return _token_response(org, request, "client_credentials")
    return _oauth_error("unsupported_grant_type", "grant type not supported")


def oauth_revoke(request: Request, org: Org) -> Response:
    """``POST /services/oauth2/revoke``: forget a session (200 even when unknown, like Salesforce)."""
    token = request.form.get("token") or request.args.get("token") or ""
    with org.lock:
        org.sessions.pop(token, None)
    return Response("", status=200)


# -- SOAP partner login --------------------------------------------------------------------
def _soap_text(body: str, tag: str) -> str | None:
    match = re.search(rf"<(?:\w+:)?{tag}\b[^>]*>(.*?)</(?:\w+:)?{tag}>", body, re.S)
    if match is None:
        return None
    text = match.group(1)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def _soap_fault(code: str, message: str) -> Response:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
           'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
           f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}"
           f'</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
           f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
           "</soapenv:Body></soapenv:Envelope>")
    return Response(xml, status=500, content_type="text/xml; charset=utf-8")


def soap_login(request: Request, org: Org, version: str) -> Response:
    """``POST /services/Soap/u/{version}`` with a ``login`` call: sessionId + serverUrl."""
    body = request.get_data(as_text=True)
    if "login" not in body:
        return _soap_fault("INVALID_OPERATION", "Only the login call is supported by the emulator")
    username, password = _soap_text(body, "username"), _soap_text(body, "password")
    expected = org.credentials["password"] + org.credentials["security_token"]
    if (username or "").lower() != org.credentials["username"].lower() or not hmac.compare_digest(
            password or "", expected):
        return _soap_fault("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    with org.lock:
        org.counters["soap_login"] += 1
    token = new_session(org, source="soap")
    base = request.host_url.rstrip("/")
    user = org.admin_user_id
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
           'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
           "<soapenv:Body><loginResponse><result>"
           f"<metadataServerUrl>{base}/services/Soap/m/{version}/{ORG_ID[:15]}</metadataServerUrl>"
           "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
           f"<serverUrl>{base}/services/Soap/u/{version}/{ORG_ID[:15]}</serverUrl>"
           f"<sessionId>{escape(token)}</sessionId><userId>{user}</userId>"
           f"<userInfo><organizationId>{ORG_ID}</organizationId><organizationName>sfsync emulator</organizationName>"
           f"<userEmail>admin@example.invalid</userEmail><userFullName>Emulator Admin</userFullName>"
           f"<userId>{user}</userId><userName>{escape(org.credentials['username'])}</userName>"
           "<userTimeZone>UTC</userTimeZone></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>")
    return Response(xml, status=200, content_type="text/xml; charset=utf-8")


ROUTES = [
    ("POST", r"/services/oauth2/token", oauth_token, None, None),
    ("POST,GET", r"/services/oauth2/revoke", oauth_revoke, None, None),
    ("POST", r"/services/Soap/u/(?P<version>\d+\.\d+)(?:/[0-9A-Za-z]*)?", soap_login, None, None),
]
