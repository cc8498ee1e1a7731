"""Shared fixtures. Sections are owned by the package they serve; add, don't rewrite."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest

# ---------------------------------------------------------------------------------------------
# Real services: PostgreSQL and Redis on this machine. Tests that need them skip, with the
# reason, only where they are absent.
# ---------------------------------------------------------------------------------------------
PG_ADMIN_URL = os.environ.get("SFSYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SFSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {str(exc).strip().splitlines()[0]}"
    return None


_PG_SKIP = _pg_reason()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The URL of the machine's PostgreSQL `test` database (skips when there is none)."""
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"sfsync_t_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(pg_admin_url, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh SQLite state database in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/state.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Each store test runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    else:
        yield request.getfixturevalue("pg_url")


def _redis_reason() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (database 15), skipping when absent."""
    reason = _redis_reason()
    if reason:
        pytest.skip(reason)
    return REDIS_URL


# ---------------------------------------------------------------------------------------------
# Emulator (sfsync.emulator): an in-process org and an unmodified simple-salesforce client on
# it, for any package's tests. `emulator_org` is empty apart from the admin User and the
# record types; `emulator_sf` is `simple_salesforce.Salesforce` routed into it with no socket.
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def emulator_org():  # type: ignore[no-untyped-def]
    """A fresh in-memory emulator org (``sfsync.emulator.org.Org``)."""
    from sfsync.emulator.org import Org

    return Org()


@pytest.fixture
def emulator_sf(emulator_org):  # type: ignore[no-untyped-def]
    """Unmodified ``simple_salesforce.Salesforce`` talking to ``emulator_org`` in-process."""
    from sfsync.emulator.testing import inprocess_salesforce

    return inprocess_salesforce(emulator_org)


# ---------------------------------------------------------------------------------------------
# Logging: every test starts and ends logging to the live stderr (a CLI call configures
# structlog on the stream it was given; pytest closes that capture after the test).
# ---------------------------------------------------------------------------------------------
class _LiveStderr:
    """Whatever ``sys.stderr`` is now (pytest swaps it per test; a CLI call configures logging on it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def _logging() -> Iterator[None]:
    """Logs to the live stderr, so a test after a CLI call does not log into a closed capture."""
    from sfsync import log

    log.configure("json", stream=_LiveStderr())
    yield
    log.configure("json", stream=_LiveStderr())
