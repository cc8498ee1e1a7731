"""Bad input gets Salesforce's error and status, never a 500 with a traceback."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsync.emulator.app import EmulatorApp
from sfsync.emulator.testing import DEFAULT_HOST

BASE = f"https://{DEFAULT_HOST}"

V = f"{BASE}/services/data/v59.0"


def _auth(token: str, ctype: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": ctype}


def test_bad_json(http: requests.Session, token: str) -> None:
    resp = http.post(f"{V}/sobjects/Account/", data=b"{not json", headers=_auth(token))
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    empty = http.post(f"{V}/sobjects/Account/", data=b"", headers=_auth(token))
    assert empty.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    array = http.post(f"{V}/sobjects/Account/", data=b"[1]", headers=_auth(token))
    assert array.status_code == 400 and array.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_wrong_content_type(http: requests.Session, token: str) -> None:
    resp = http.post(f"{V}/sobjects/Account/", data=b"Name=x", headers=_auth(token, "text/plain"))
    assert resp.status_code == 415 and resp.json()[0]["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"


def test_unknown_things(http: requests.Session, token: str) -> None:
    obj = http.get(f"{V}/sobjects/Nope__c/describe", headers=_auth(token))
    assert obj.status_code == 404 and obj.json() == [{"message": "The requested resource does not exist",
                                                     "errorCode": "NOT_FOUND"}]
    field = http.post(f"{V}/sobjects/Account/", json={"Name": "x", "Nope__c": 1}, headers=_auth(token))
    assert field.status_code == 400 and field.json()[0]["errorCode"] == "INVALID_FIELD"
    path = http.get(f"{V}/nothing/here", headers=_auth(token))
    assert path.status_code == 404 and path.json()[0]["errorCode"] == "NOT_FOUND"
    method = http.put(f"{V}/sobjects/Account/", json={}, headers=_auth(token))
    assert method.status_code == 405 and method.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    locator = http.get(f"{V}/query/01g8d0000000001AAA-2000", headers=_auth(token))
    assert locator.status_code == 400 and locator.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_unexpected_error_is_salesforce_shaped(app: EmulatorApp, http: requests.Session) -> None:
    def explode(request, org):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    app.routes.insert(0, app.routes[0].__class__("GET", r"/boom", explode, None, None))
    resp = http.get(f"{BASE}/boom")
    assert resp.status_code == 500
    assert resp.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION" and "secret" not in resp.text
    assert "Traceback" not in resp.text


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=st.binary(max_size=200), ctype=st.sampled_from(["application/json", "text/csv", "", "application/xml"]),
       path=st.sampled_from(["sobjects/Account/", "composite/sobjects", "sobjects/Account/AccountNumber/x",
                             "composite/sobjects/Account/AccountNumber"]))
def test_fuzzed_bodies_never_500(http: requests.Session, token: str, body: bytes, ctype: str, path: str) -> None:
    method = "POST" if path in ("sobjects/Account/", "composite/sobjects") else "PATCH"
    resp = http.request(method, f"{V}/{path}", data=body, headers=_auth(token, ctype))
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert isinstance(resp.json(), list) and "errorCode" in resp.json()[0]
