"""Fixtures for the billers tests: a real state store and small sample exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfsync.billers.sample import generate
from sfsync.state import StateStore


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    """A fresh SQLite state store."""
    s = StateStore(f"sqlite:///{tmp_path}/state.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 accounts × 3 months in the files layout (CSV); read-only for tests."""
    d = tmp_path_factory.mktemp("sample_csv")
    generate(d, accounts=40, months=3, seed=3, fmt="csv")
    return d


@pytest.fixture(scope="session")
def sample_tmf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same accounts as TMF resources, 24 months (refresh-sized accounts)."""
    d = tmp_path_factory.mktemp("sample_tmf")
    generate(d, accounts=30, months=24, seed=3, fmt="tmf678")
    return d
