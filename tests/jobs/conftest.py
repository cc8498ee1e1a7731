"""Fixtures of the jobs' tests: an emulator org routed in-process, sample biller data, a config.

Every test gets a fresh org (``sfsync.emulator.org.Org``) that every ``requests`` call for
``DEFAULT_HOST`` is routed into, a small deterministic operator export (the files biller, a
few dozen accounts over two months) and an ``sfsync.yaml`` that points at both. Retries and
bulk polls do not sleep: faults are rehearsed at full speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sfsync.app import App
from sfsync.emulator.org import Org
from sfsync.emulator.server import run_in_thread
from sfsync.emulator.testing import DEFAULT_HOST, route_requests
from sfsync.jobs.load import LoadOptions
from sfsync.jobs.load_run import LoadReport, run_load

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings" / "files"
ACCOUNTS, MONTHS, SEED = 40, 2, 3

ACCOUNT = "Account"
STATEMENT = "vlocity_cmt__Statement__c"
ITEM = "vlocity_cmt__StatementLineItem__c"
BALANCE = "vlocity_cmt__AccountBalance__c"
CASE = "Case"
EXT = "vlocity_cmt__ExternalID__c"


def write_config(base: Path, org_or_emulator: Org | Path, data: Path, *, extra: str = "",
                 mappings: Path = MAPPINGS, more_billers: dict[str, Path] | None = None) -> Path:
    """An ``sfsync.yaml``: the org (in-process credentials, or ``emulator: DIR``), SQLite, one files biller."""
    if isinstance(org_or_emulator, Path):
        sf = f"salesforce:\n  emulator: {org_or_emulator}\n  describe_cache_dir: {base / 'describe'}\n"
    else:
        c = org_or_emulator.credentials
        sf = ("salesforce:\n"
              f"  login_url: 'https://{DEFAULT_HOST}'\n"
              f"  username: '{c['username']}'\n  password: '{c['password']}'\n"
              f"  security_token: '{c['security_token']}'\n"
              f"  client_id: '{c['client_id']}'\n  client_secret: '{c['client_secret']}'\n"
              f"  describe_cache_dir: {base / 'describe'}\n")
    cfg = base / "sfsync.yaml"
    cfg.write_text(
        sf
        + f"database:\n  url: 'sqlite:///{base / 'state.db'}'\n"
        + "billers:\n"
        + "".join(f"  - name: {name}\n    kind: files\n    path: {path}\n    mappings: ['{mappings}/*.yaml']\n"
                  for name, path in {"acme": data, **(more_billers or {})}.items())
        + "load:\n  trim_date: org\n"
        + extra,
        encoding="utf-8")
    return cfg


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off and bulk polling without real sleeps: faults are rehearsed at full speed."""
    from sfsync.salesforce import transport

    init = transport.RetryPolicy.__init__

    def no_sleep_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sleep", lambda s: None)
        init(self, *args, **kwargs)

    monkeypatch.setattr(transport.RetryPolicy, "__init__", no_sleep_init)


@pytest.fixture
def org() -> Org:
    """A fresh, empty emulator org."""
    return Org()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Org, Path]]:
    """An org served over loopback HTTPS from a thread; its state dir holds connection.json."""
    state = tmp_path / "emulator"
    org = Org(state_dir=state)
    handle = run_in_thread(org, state_dir=state)
    try:
        yield org, state
    finally:
        handle.stop()


@pytest.fixture
def routed(org: Org) -> Iterator[Org]:
    """The org, with every ``requests`` call for its host routed into it (no socket)."""
    with route_requests(org):
        yield org


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A small operator export (files layout): {ACCOUNTS} accounts × {MONTHS} months."""
    from sfsync.billers.sample import generate

    d = tmp_path / "acme"
    generate(d, accounts=ACCOUNTS, months=MONTHS, seed=SEED)
    return d


def bulk_mappings(base: Path) -> Path:
    """The shipped mappings with line items forced through Bulk API 1.0 Serial.

    A real month's line items (thousands) go through Bulk 1.0 under ``api: auto, serial: true``;
    the tests' few hundred would take REST Collections, so the Bulk path is forced here.
    """
    out = base / "mappings-bulk"
    out.mkdir(exist_ok=True)
    for p in MAPPINGS.glob("*.yaml"):
        text = p.read_text(encoding="utf-8")
        if p.name == "line_items.yaml":
            forced = text.replace("load: {api: auto,", "load: {api: bulk1,")
            assert forced != text, "line_items.yaml no longer says `load: {api: auto, ...}`"
            text = forced
        (out / p.name).write_text(text, encoding="utf-8")
    return out


@pytest.fixture
def config(tmp_path: Path, org: Org, data: Path) -> Path:
    """The config file for the routed org, a SQLite store and the files biller."""
    return write_config(tmp_path, org, data)


@pytest.fixture
def app(config: Path, routed: Org) -> Iterator[App]:
    """An ``App`` on the config (closed after the test)."""
    a = App(config_path=config)
    yield a
    a.close()


Loader = Callable[..., LoadReport]


@pytest.fixture
def load(app: App) -> Loader:
    """``load(**LoadOptions fields)`` → the run's report (no progress bars)."""
    def _load(**opts: Any) -> LoadReport:
        return run_load(app, options=LoadOptions(**opts), progress=False)
    return _load


def file_rows(data: Path, entity: str) -> int:
    """Rows of an entity across the biller's CSV files (header excluded; the sample quotes newlines)."""
    import pyarrow.csv as pacsv

    return sum(pacsv.read_csv(p).num_rows for p in sorted(data.glob(f"{entity}*.csv")))
