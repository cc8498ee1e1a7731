"""Logging in: every method, the emulator's connection file, secrets kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from sfsync.config import SalesforceSettings
from sfsync.errors import ConfigError, SessionExpired
from sfsync.salesforce import LoginFailed, RetryPolicy, connect

from .conftest import DATA, INSTANCE, LOGIN, add_login


def _query_ok(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{DATA}/query/", json={"totalSize": 0, "done": True, "records": []})


def test_password_grant_posts_to_the_configured_login_host(rsps, settings):
    forms = add_login(rsps, "T1")
    _query_ok(rsps)
    client = connect(settings)
    assert list(client.query("SELECT Id FROM Account")) == []
    assert forms == [
        {
            "grant_type": "password",
            "client_id": "cid",
            "client_secret": "csecret",
            "username": "loader@example.com",
            "password": "pw-secrettok-secret",
        }
    ]
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer T1"
    assert client.instance_url == INSTANCE


def test_jwt_bearer_assertion_is_signed_rs256_with_the_expected_claims(rsps, settings, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "server.key"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    settings = settings.model_copy(update={"auth": "jwt", "private_key_file": pem})
    forms = add_login(rsps)
    connect(settings)
    assert forms[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(forms[0]["assertion"], key.public_key(), algorithms=["RS256"], audience=LOGIN)
    assert claims["iss"] == "cid" and claims["sub"] == "loader@example.com" and claims["exp"] > 0


def test_client_credentials_grant(rsps, settings):
    forms = add_login(rsps)
    connect(settings.model_copy(update={"auth": "client_credentials"}))
    assert forms == [{"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}]


def test_ready_session_needs_no_login_and_cannot_be_renewed(rsps, settings):
    settings = settings.model_copy(update={"auth": "session", "session_id": SecretStr("S1"), "instance_url": INSTANCE})
    rsps.add(responses.GET, f"{DATA}/query/", status=401, json=[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    client = connect(settings, policy=RetryPolicy(sleep=lambda s: None))
    with pytest.raises(SessionExpired):
        list(client.query("SELECT Id FROM Account"))
    assert len(rsps.calls) == 1  # no login attempted


def test_emulator_connection_file_supplies_token_urls_and_ca(rsps, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not really a cert")
    (tmp_path / "connection.json").write_text(
        json.dumps({"instance_url": INSTANCE, "login_url": LOGIN, "username": "u", "password": "p", "client_id": "c", "client_secret": "s", "access_token": "EMU", "ca_bundle": str(ca)})
    )
    _query_ok(rsps)
    client = connect(SalesforceSettings(emulator=tmp_path, describe_cache_dir=tmp_path / "d"))
    list(client.query("SELECT Id FROM Account"))
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer EMU"
    assert client.transport.session.verify == str(ca)


def test_emulator_without_connection_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="connection.json"):
        connect(SalesforceSettings(emulator=tmp_path / "nowhere"))


def test_refused_login_says_why_but_never_the_password(rsps, settings):
    rsps.add(responses.POST, f"{LOGIN}/services/oauth2/token", status=400, json={"error": "invalid_grant", "error_description": "authentication failure"})
    with pytest.raises(LoginFailed) as info:
        connect(settings)
    assert "invalid_grant" in str(info.value) and "authentication failure" in str(info.value)
    assert "pw-secret" not in str(info.value) and "tok-secret" not in str(info.value)


def test_soap_login_when_no_connected_app(rsps, settings):
    body = (
        '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soapenv:Body><loginResponse xmlns="urn:partner.soap.sforce.com"><result>'
        f"<serverUrl>{INSTANCE}/services/Soap/u/59.0/00D</serverUrl><sessionId>SOAPTOKEN</sessionId>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    rsps.add(responses.POST, f"{LOGIN}/services/Soap/u/59.0", body=body, content_type="text/xml")
    _query_ok(rsps)
    client = connect(settings.model_copy(update={"client_id": None}))
    list(client.query("SELECT Id FROM Account"))
    assert rsps.calls[0].request.headers["SOAPAction"] == "login"
    assert rsps.calls[1].request.headers["Authorization"] == "Bearer SOAPTOKEN"


def test_secrets_do_not_leak_through_repr(rsps, settings):
    add_login(rsps, "SECRET-TOKEN")
    client = connect(settings)
    text = repr(client.transport.token) + repr(client.transport.auth._creds)
    assert "SECRET-TOKEN" not in text and "pw-secret" not in text


def test_incomplete_settings_name_the_key(settings):
    with pytest.raises(ConfigError, match="private_key_file"):
        connect(settings.model_copy(update={"auth": "jwt"}))


def test_ca_bundle_becomes_session_verify(rsps, settings, tmp_path: Path):
    add_login(rsps)
    client = connect(settings.model_copy(update={"ca_bundle": tmp_path / "ca.pem"}))
    assert client.transport.session.verify == str(tmp_path / "ca.pem")


def test_configured_ca_wins_over_the_environment(monkeypatch, tmp_path):
    import requests

    from sfsync.salesforce.tls import CaBundleAdapter, trust

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    session = requests.Session()
    trust(session, str(ca))
    adapter = session.get_adapter("https://org.example.com/")
    assert isinstance(adapter, CaBundleAdapter) and adapter.ca_bundle == str(ca)


def test_salesforce_bulk_calls_go_through_the_thread_session_only_inside_using():
    import threading

    import requests
    import responses
    import salesforce_bulk.salesforce_bulk as module

    from sfsync.salesforce.tls import bulk_requests, route_bulk1

    route_bulk1()
    assert module.requests is bulk_requests and bulk_requests.codes is requests.codes
    seen: list[str] = []

    class Recording(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[override]
            seen.append(f"{method} {url}")
            return super().request(method, url, *args, **kwargs)

    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "https://org.example.com/x", body="ok")
        rsps.add(responses.POST, "https://org.example.com/y", body="ok")
        with bulk_requests.using(Recording()):
            assert module.requests.get("https://org.example.com/x").text == "ok"
            other: list[str] = []
            t = threading.Thread(target=lambda: other.append(module.requests.post("https://org.example.com/y").text))
            t.start()
            t.join()
        assert module.requests.get("https://org.example.com/x").text == "ok"
    # Only the call made inside ``using`` on this thread went through the session.
    assert seen == ["GET https://org.example.com/x"] and other == ["ok"]
