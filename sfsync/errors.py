"""One root error, split by what the caller should do about it.

* :class:`UserError` — the user's own mistake (config, mapping, flags). The CLI prints
  one line and exits 2; retrying cannot help.
* :class:`TransientError` — the world was briefly unwell (timeouts, 5xx, lock contention,
  an expired session). The runner may retry, bounded.
* :class:`TerminalError` — the run cannot go on (the biller refuses us, the org's daily
  budget is spent, a bulk job Failed). No retry; the run stops resumably.

Row-level failures are never exceptions: they are values (see ``RowResult`` in
``sfsync.salesforce``) and end up in the rejects table.
"""

from __future__ import annotations


class SfsyncError(Exception):
    """Root of every error sfsync raises on purpose."""

    exit_code = 1


class UserError(SfsyncError):
    """A mistake the user can fix: bad config, bad mapping, bad flags. Exit 2."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration file is wrong. The message names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class MappingError(UserError):
    """A mapping file is wrong. ``problems`` lists every problem found, each self-contained."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class TransientError(SfsyncError):
    """Retrying later may succeed (timeouts, HTTP 5xx, UNABLE_TO_LOCK_ROW, rate limits)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TerminalError(SfsyncError):
    """The run cannot continue; retrying will not help until something changes."""


class SessionExpired(TransientError):
    """Salesforce answered INVALID_SESSION_ID: log in again, then retry once."""


class BudgetExhausted(TerminalError):
    """sfsync's share of the org's daily API budget is used up; the run stops resumably."""


class LockHeld(SfsyncError):
    """Another run of the same job for the same biller holds the run lock."""

    exit_code = 1
