"""Fixtures for the emulator's own tests: an in-process org and unmodified clients on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sfsync.emulator.app import EmulatorApp, create_app
from sfsync.emulator.org import Org
from sfsync.emulator.testing import DEFAULT_HOST, inprocess_salesforce, inprocess_session

BASE = f"https://{DEFAULT_HOST}"


@pytest.fixture
def org() -> Org:
    """A fresh in-memory org."""
    return Org()


@pytest.fixture
def app(org: Org) -> EmulatorApp:
    """The WSGI app serving ``org``."""
    return create_app(org)


@pytest.fixture
def sf(org: Org) -> Any:
    """Unmodified ``simple_salesforce.Salesforce`` talking to ``org`` in-process."""
    return inprocess_salesforce(org)


@pytest.fixture
def http(app: EmulatorApp) -> Iterator[requests.Session]:
    """A plain ``requests`` session routed to the app (for raw HTTP assertions)."""
    session = inprocess_session(app)
    yield session
    session.close()


@pytest.fixture
def token(org: Org) -> str:
    """A valid session token for raw calls."""
    from sfsync.emulator import auth

    return auth.new_session(org, source="test")


@pytest.fixture
def account_id(sf: Any) -> str:
    """An Account with AccountNumber A-1."""
    return str(sf.Account.create({"Name": "Acme", "AccountNumber": "A-1"})["id"])
