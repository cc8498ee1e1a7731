"""The CLI's contract: exit codes, one-line errors, redacted logs, run history output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfsync import log
from sfsync.cli import main
from sfsync.config import load_settings
from sfsync.state import Reject, StateStore
from sfsync.state.migrate import head


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    p = tmp_path / "sfsync.yaml"
    p.write_text(f"salesforce: {{emulator: {tmp_path}/emu}}\ndatabase: {{url: 'sqlite:///{tmp_path}/s.db'}}\n")
    return p


def test_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "sfsync.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "sfsync, version" in out.stdout


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "list", "--limit", "zero"]) == 2
    assert "Invalid value" in capsys.readouterr().err


def test_unknown_command_exits_2() -> None:
    assert main(["frobnicate"]) == 2


def test_db_upgrade_then_runs_show(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
    assert f"-> {head()}" in capsys.readouterr().out
    assert main(["--config", str(cfg), "db", "upgrade"]) == 0
    assert f"already at {head()}" in capsys.readouterr().out
    store = StateStore(f"sqlite:///{tmp_path}/s.db")
    rid = store.start_run("load", ["acme"])
    store.add_rejects([Reject(rid, "acme", "Obj", "k", "f.csv:2", "map", "X", "bad")])
    store.finish_run(rid, "rejected", counts={"Obj": {"read": 2, "sent": 1, "rejected": 1}}, api_calls={"bulk2": 3})
    assert main(["--config", str(cfg), "runs", "show", str(rid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "rejected" and shown["rejected_rows"] == 1 and shown["api_calls"] == {"bulk2": 3}
    assert main(["--config", str(cfg), "runs", "list"]) == 0
    text = capsys.readouterr().out
    assert "load" in text and "rejected" in text
    assert main(["--config", str(cfg), "runs", "show", "999"]) == 2


def test_secrets_never_reach_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PW", "s3cr3t-Passw0rd")
    monkeypatch.setenv("SF_TOK", "TOKEN-abcdef123")
    p = tmp_path / "c.yaml"
    p.write_text("salesforce: {auth: password, username: u, password: '${SF_PW}', security_token: '${SF_TOK}',"
                 " client_id: c, client_secret: cs-secret-xyz}\n")
    settings = load_settings(p)
    buf = io.StringIO()
    log.configure("json", stream=buf)
    log.register_secrets(settings.secrets())
    logger = log.get_logger("test")
    logger.info("login failed for s3cr3t-Passw0rd", body="password=s3cr3t-PasswordTOKEN-abcdef123&x=1")
    logger.info("auth", password="plain", headers={"Authorization": "Bearer TOKEN-abcdef123"},
                settings=settings.model_dump(mode="json"))
    out = buf.getvalue()
    assert "s3cr3t-Passw0rd" not in out and "TOKEN-abcdef123" not in out and "cs-secret-xyz" not in out
    assert "***" in out
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["event"] == "login failed for ***"


def test_run_id_is_on_every_event(tmp_path: Path) -> None:
    buf = io.StringIO()
    log.configure("json", stream=buf)
    log.bind_run(42, "load")
    try:
        log.get_logger().info("batch sent", rows=10)
    finally:
        log.unbind_run()
    log.get_logger().info("after")
    a, b = (json.loads(x) for x in buf.getvalue().splitlines())
    assert a["run_id"] == 42 and a["job"] == "load" and "run_id" not in b


def test_a_stopped_emulator_is_named_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "emu").mkdir()
    url = f"https://127.0.0.1:{port}"
    (tmp_path / "emu" / "connection.json").write_text(json.dumps(
        {"instance_url": url, "login_url": url, "username": "u", "password": "p", "access_token": "t"}))
    (tmp_path / "data").mkdir()
    config = tmp_path / "sfsync.yaml"
    config.write_text(f"salesforce: {{emulator: {tmp_path}/emu}}\ndatabase: {{url: 'sqlite:///{tmp_path}/s.db'}}\n"
                      f"billers: [{{name: acme, kind: files, path: {tmp_path}/data, mappings: ['mappings/files/*.yaml']}}]\n"
                      "limits: {max_retries: 0}\n")
    out = subprocess.run([sys.executable, "-m", "sfsync.cli", "--config", str(config), "load"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"sfsync: error: connection to Salesforce at {url} failed: ConnectionError (connection refused: nothing "
        "listens there; is the emulator running? `sfsync emulator serve`)")
    assert "Traceback" not in out.stderr
