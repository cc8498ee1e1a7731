"""Authentication: OAuth grants, SOAP login, session expiry as clients see it."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, InProcessAdapter, inprocess_session
from sfsync.emulator.tls import make_jwt_keypair

BASE = f"https://{DEFAULT_HOST}"


def _token(http: requests.Session, **form: str) -> requests.Response:
    return http.post(f"{BASE}/services/oauth2/token", data=form)


def test_password_grant(http: requests.Session, org: Org) -> None:
    c = org.credentials
    resp = _token(http, grant_type="password", client_id=c["client_id"], client_secret=c["client_secret"],
                  username=c["username"], password=c["password"] + c["security_token"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["instance_url"] == BASE and body["token_type"] == "Bearer"
    sf = Salesforce(instance_url=body["instance_url"], session_id=body["access_token"], session=http)
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1


def test_password_grant_refusals(http: requests.Session, org: Org) -> None:
    c = org.credentials
    bad_pw = _token(http, grant_type="password", client_id=c["client_id"], username=c["username"], password="nope")
    assert (bad_pw.status_code, bad_pw.json()) == (400, {"error": "invalid_grant", "error_description": "authentication failure"})
    bad_client = _token(http, grant_type="password", client_id="x", username=c["username"], password="nope")
    assert bad_client.json()["error"] == "invalid_client_id"
    assert _token(http, grant_type="magic").json()["error"] == "unsupported_grant_type"


def test_jwt_bearer_grant(http: requests.Session, org: Org) -> None:
    key, cert = make_jwt_keypair()
    org.jwt_certificates.append(cert)
    claims = {"iss": org.credentials["client_id"], "sub": org.credentials["username"], "aud": "https://login.salesforce.com",
              "exp": int(time.time()) + 180}
    good = _token(http, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                  assertion=jwt.encode(claims, key, algorithm="RS256"))
    assert good.status_code == 200 and good.json()["access_token"]
    other_key, _ = make_jwt_keypair()
    forged = _token(http, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                    assertion=jwt.encode(claims, other_key, algorithm="RS256"))
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"
    expired = _token(http, grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                     assertion=jwt.encode({**claims, "exp": int(time.time()) - 3600}, key, algorithm="RS256"))
    assert expired.json()["error"] == "invalid_grant"


def test_client_credentials_grant(http: requests.Session, org: Org) -> None:
    c = org.credentials
    ok = _token(http, grant_type="client_credentials", client_id=c["client_id"], client_secret=c["client_secret"])
    assert ok.status_code == 200
    bad = _token(http, grant_type="client_credentials", client_id=c["client_id"], client_secret="wrong")
    assert bad.json()["error"] == "invalid_client"


def test_soap_login_with_simple_salesforce(org: Org) -> None:
    session = inprocess_session(org)
    session.mount("https://test.salesforce.com/", session.get_adapter(f"{BASE}/"))
    c = org.credentials
    session_id, instance = SalesforceLogin(username=c["username"], password=c["password"],
                                           security_token=c["security_token"], domain="test", session=session)
    assert session_id in org.sessions and instance == "test.salesforce.com"
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        SalesforceLogin(username=c["username"], password="wrong", security_token="", domain="test", session=session)
    assert exc.value.code == "INVALID_LOGIN"


def test_session_expiry_fault(sf: Any, org: Org) -> None:
    org.faults.update({"session_expire_after_calls": 2})
    sf.query("SELECT COUNT() FROM Account")
    sf.query("SELECT COUNT() FROM Account")
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT COUNT() FROM Account")
    assert exc.value.status == 401
    assert exc.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_invalid_token_shapes(http: requests.Session) -> None:
    rest = http.get(f"{BASE}/services/data/v59.0/limits/", headers={"Authorization": "Bearer nope"})
    assert rest.status_code == 401
    assert rest.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    bulk = http.post(f"{BASE}/services/async/59.0/job", headers={"X-SFDC-Session": "nope", "Content-Type": "application/xml"},
                     data="<jobInfo/>")
    assert bulk.status_code == 400 and "<exceptionCode>InvalidSessionId</exceptionCode>" in bulk.text
    bulk_json = http.post(f"{BASE}/services/async/59.0/job", headers={"X-SFDC-Session": "nope",
                                                                      "Content-Type": "application/json"}, data="{}")
    assert bulk_json.json()["exceptionCode"] == "InvalidSessionId"


def test_adapter_reports_status_and_headers(org: Org) -> None:
    adapter = InProcessAdapter(lambda environ, start: (start("418 I'm a teapot", [("X-A", "1")]) and None) or [b"tea"])
    session = requests.Session()
    session.mount("https://t/", adapter)
    resp = session.get("https://t/x")
    assert (resp.status_code, resp.headers["X-A"], resp.content) == (418, "1", b"tea")
