"""The emulator over real HTTPS on loopback: CA trust, JWT with connection.json's key, chunked
bodies, the CLI's clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from simple_salesforce import Salesforce

from sfsync.emulator.org import Org
from sfsync.emulator.server import ServerHandle, run_in_thread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = run_in_thread(Org(state_dir=tmp_path), port=0)
    yield handle
    handle.stop()


def _session(ca_bundle: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca_bundle
    # REQUESTS_CA_BUNDLE in the environment would override session.verify (a requests quirk).
    session.trust_env = False
    return session


def test_https_round_trip(server: ServerHandle) -> None:
    conn = server.connection()
    assert set(conn) >= {"instance_url", "login_url", "username", "password", "security_token", "client_id",
                         "client_secret", "access_token", "ca_bundle", "private_key_file"}
    assert conn["instance_url"].startswith("https://127.0.0.1:")
    assert oct(server.connection_file.stat().st_mode & 0o777) == "0o600"
    session = _session(conn["ca_bundle"])
    sf = Salesforce(instance_url=conn["instance_url"], session_id=conn["access_token"], session=session)
    created = sf.Account.create({"Name": "Over TLS"})
    assert sf.Account.get(created["id"])["Name"] == "Over TLS"

    # JWT bearer with the key connection.json points at.
    key = Path(conn["private_key_file"]).read_text()
    assertion = jwt.encode({"iss": conn["client_id"], "sub": conn["username"], "aud": conn["login_url"],
                            "exp": int(time.time()) + 120}, key, algorithm="RS256")
    token = session.post(f"{conn['login_url']}/services/oauth2/token",
                         data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
    assert token.status_code == 200 and token.json()["instance_url"] == conn["instance_url"]

    # A chunked request body (what salesforce-bulk streams) is read whole.
    def chunks() -> Iterator[bytes]:
        yield b'{"Name": "Chun'
        yield b'ked"}'

    resp = session.post(f"{conn['instance_url']}/services/data/v59.0/sobjects/Account/", data=chunks(),
                        headers={"Authorization": f"Bearer {conn['access_token']}", "Content-Type": "application/json"})
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == 201 and resp.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_untrusted_without_ca(server: ServerHandle) -> None:
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{server.url}/services/data/")


def test_cli_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "from sfsync.emulator.cli import emulator; emulator()", "serve", "--port", "0",
           "--state-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("sfsync emulator serving https://127.0.0.1:")
        conn_path = Path(lines[1].split(":", 1)[1].strip())
        conn = json.loads(conn_path.read_text())
        sf = Salesforce(instance_url=conn["instance_url"], session_id=conn["access_token"],
                        session=_session(conn["ca_bundle"]))
        sf.Account.create({"Name": "Persisted"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r["Name"] for r in Org(state_dir=tmp_path).records("Account")] == ["Persisted"]


def test_salesforce_bulk_streams_a_batch_over_https(server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    from salesforce_bulk import CsvDictsAdapter, SalesforceBulk

    conn = server.connection()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", conn["ca_bundle"])  # salesforce-bulk has no session to configure
    bulk = SalesforceBulk(sessionId=conn["access_token"], host=conn["instance_url"])
    job = bulk.create_insert_job("Account", contentType="CSV")
    rows = iter([{"Name": "B1", "AccountNumber": "X1"}, {"Name": "B2", "AccountNumber": "X2"}])
    batch = bulk.post_batch(job, CsvDictsAdapter(rows))  # a generator: sent chunked
    bulk.close_job(job)
    for _ in range(100):
        if bulk.is_batch_done(batch, job):
            break
        time.sleep(0.05)
    results = list(bulk.get_batch_results(batch, job))
    assert [(r.success, r.created) for r in results] == [("true", "true"), ("true", "true")]
    assert server.org.counters["records_ingested"] == 2


def test_connections_are_kept_alive_and_closed_by_stop(tmp_path: Path) -> None:
    # Like Salesforce: many calls, one TLS connection (werkzeug's dev server closed every one).
    handle = run_in_thread(Org(state_dir=tmp_path), port=0)
    conn = handle.connection()
    session = _session(conn["ca_bundle"])
    headers = {"Authorization": f"Bearer {conn['access_token']}", "Content-Type": "application/json"}
    url = f"{conn['instance_url']}/services/data/v59.0"
    ports = set()
    try:
        for i in range(5):
            # A body the app answers without reading in full must not corrupt the next request.
            r = session.post(f"{url}/sobjects/NoSuchObject__c/", data=json.dumps({"Name": "x" * 5000 + str(i)}),
                             headers=headers, stream=True)
            ports.add(r.raw.connection.sock.getsockname()[1])  # this end of the TCP connection
            assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
            r = session.get(f"{url}/limits", headers=headers, stream=True)
            ports.add(r.raw.connection.sock.getsockname()[1])
            assert r.status_code == 200 and "DailyApiRequests" in r.json()
            assert "close" not in r.headers.get("Connection", "").lower()
        assert len(ports) == 1
    finally:
        handle.stop()
    with pytest.raises(requests.ConnectionError):  # the kept connection went with the server
        session.get(f"{url}/limits", headers=headers, timeout=5)
