"""Configuration: interpolation, overrides, masking, and one clear line for every mistake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sfsync.cli import main
from sfsync.config import load_settings, masked
from sfsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "sfsync.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sfsync.yaml"
    p.write_text(text)
    return p


def test_example_config_checks_and_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SF_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("SFSYNC_WEBHOOK_SECRET", "whsec_c2VjcmV0c2VjcmV0")
    cfg = tmp_path / "c.yaml"
    shutil.copy(EXAMPLE, cfg)
    assert main(["--config", str(cfg), "config", "check", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["salesforce"]["password"] == "***"
    assert data["webhook"]["secret"] == "***"
    assert "hunter2" not in out and "c2VjcmV0" not in out
    assert data["billers"][0]["name"] == "acme"


def test_env_interpolation_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_FILE", "/tmp/x.db")
    p = write(tmp_path, "database: {url: 'sqlite:///${DB_FILE}'}\n"
                        "salesforce: {emulator: '${EMU:-/tmp/emu}'}\n")
    s = load_settings(p)
    assert s.database.url == "sqlite:////tmp/x.db"
    assert str(s.salesforce.emulator) == "/tmp/emu"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "database: {url: 'sqlite:///a.db'}\nsalesforce: {emulator: /tmp/e}\n")
    monkeypatch.setenv("SFSYNC_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("SFSYNC_API_BUDGET_SHARE", "0.25")
    s = load_settings(p)
    assert s.database.url == "postgresql://u@h/db" and s.limits.api_budget_share == 0.25


def test_config_chosen_by_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "salesforce: {emulator: /tmp/e}\nlimits: {api_budget_share: 0.1}\n")
    monkeypatch.setenv("SFSYNC_CONFIG", str(p))
    assert load_settings().limits.api_budget_share == 0.1


BROKEN = [
    ("billers:\n  - {name: a, kind: files, path: /tmp}\n  - {name: b, kind: ftp}\n",
     "billers[1].kind: unknown biller kind 'ftp'; expected one of files, sql, tmf678"),
    ("salesforce: {emulator: /tmp/e}\ndatabase: {url: 'mysql://x'}\n",
     "database.url: database url must be sqlite:/// or postgresql://"),
    ("salesforce: {emulator: /tmp/e, api_version: '59'}\n", "salesforce.api_version: api_version must look like"),
    ("salesforce: {emulator: /tmp/e}\nlimits: {api_budget_share: 2}\n", "limits.api_budget_share: Input should be less than or equal to 1"),
    ("salesforce: {emulator: /tmp/e}\nlimts: {}\n", "limts: unknown key"),
    ("salesforce: {emulator: /tmp/e}\nwebhook: {secret: '${NOPE_NOT_SET}'}\n",
     "webhook.secret: environment variable NOPE_NOT_SET is not set"),
    ("salesforce: {auth: session}\n", "salesforce.instance_url: required when auth is 'session'"),
    ("salesforce: {emulator: /tmp/e}\nschedules: [{job: load, cron: 'daily'}]\n",
     "schedules[0].cron: cron must have 5 fields"),
    ("salesforce: {emulator: /tmp/e\n", "not valid YAML"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("salesforce: {emulator: /tmp/e}\nbillers:\n  - {name: a, kind: files, path: /tmp}\n  - {name: a, kind: files, path: /tmp}\n",
     "billers[1].name: duplicate biller name 'a'"),
    ("salesforce: {emulator: /tmp/e}\nbillers:\n  - {name: a, kind: files, path: /tmp, colour: red}\n",
     "billers[0].colour: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN, ids=[b[1].split(":")[0] for b in BROKEN])
def test_broken_config_is_one_line_exit_2(tmp_path: Path, text: str, expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, text)
    assert main(["--config", str(p), "config", "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sfsync: error: {p}"), err
    assert expected in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml")


def test_masked_hides_kind_specific_secrets(tmp_path: Path) -> None:
    p = write(tmp_path, "salesforce: {emulator: /tmp/e}\n")
    s = load_settings(p)
    s.billers = []
    data = masked(s)
    assert data["salesforce"]["password"] is None


def test_load_batch_rows_is_the_billers_default_batch(tmp_path: Path) -> None:
    from sfsync.billers import make_biller as build
    from sfsync.jobs.setup import make_biller

    data = tmp_path / "data"
    data.mkdir()
    p = write(tmp_path, "salesforce: {emulator: /tmp/e}\nload: {batch_rows: 1234}\n"
                        f"billers:\n  - {{name: a, kind: files, path: {data}}}\n"
                        f"  - {{name: b, kind: files, path: {data}, batch_size: 77}}\n")
    s = load_settings(p)
    assert [make_biller(b, None).config.batch_size for b in s.billers] == [1234, 77]  # the biller's own wins
    assert build("c", "files", {"path": str(data)}).config.batch_size == 50_000
