"""API budget guard and call counters.

Salesforce's daily API request limit is shared by every integration of the org: a run
that spends it stops everybody else for the rest of the day. The guard keeps sfsync to
its configured share of it. It learns the org's usage from the ``Sforce-Limit-Info``
header that REST responses carry (``api-usage=N/M``) and from ``limits()``, counts the
calls made since the last observation (Bulk 1.0 calls never pass the session hook), and
refuses a call that would cross ``share × Max`` with :class:`~sfsync.errors.BudgetExhausted`,
so the job stops between two calls, resumably.

A bulk job is checked for its minimum cost before it is created; once created, its
upload, polls and result downloads are not refused (see ``Transport``): finishing it may
cost a few calls past the share, abandoning it would leave rows whose outcome nobody
records.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import requests

from sfsync.errors import BudgetExhausted

#: The kinds of calls counted in :attr:`SalesforceClient.calls`.
CALL_KINDS = ("rest", "query", "bulk1", "bulk2")

# "per-app-api-usage=..." also contains "api-usage=": anchor on the start or a separator.
_USAGE_RE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


def parse_limit_info(header: str) -> tuple[int, int] | None:
    """Parse an ``Sforce-Limit-Info`` header.

    Args:
        header: e.g. ``"api-usage=18/5000; per-app-api-usage=17/250(appName=x)"``.

    Returns:
        ``(used, max)`` of the org-wide daily request limit, or ``None`` when absent.
    """
    match = _USAGE_RE.search(header)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


class BudgetGuard:
    """Stops the run before it crosses its share of the org's daily API requests.

    Args:
        share: the fraction (0 < share ≤ 1) of ``DailyApiRequests.Max`` this run may
            bring the org's usage up to.

    The guard is thread-safe; one guard may be shared by several clients of one run.
    """

    def __init__(self, share: float = 0.5) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"budget share must be in (0, 1], got {share}")
        self.share = share
        self.used: int | None = None
        self.max: int | None = None
        # Calls made since the last observation: the estimate between two headers.
        self._since_observation = 0
        self._lock = threading.Lock()

    @property
    def known(self) -> bool:
        """Whether the org's usage has been observed at least once."""
        return self.max is not None

    @property
    def cap(self) -> int | None:
        """The usage level the run must not cross, once known."""
        return None if self.max is None else int(self.share * self.max)

    @property
    def estimated_used(self) -> int | None:
        """The last observed usage plus the calls made since."""
        with self._lock:
            return None if self.used is None else self.used + self._since_observation

    def observe(self, used: int, maximum: int) -> None:
        """Record the org's usage as Salesforce reported it."""
        with self._lock:
            self.used, self.max = used, maximum
            self._since_observation = 0

    def observe_limits(self, limits: dict[str, Any]) -> None:
        """Record usage from a ``limits/`` answer (``DailyApiRequests``)."""
        daily = limits.get("DailyApiRequests") or {}
        if "Max" in daily and "Remaining" in daily:
            self.observe(int(daily["Max"]) - int(daily["Remaining"]), int(daily["Max"]))

    def observe_response(self, response: requests.Response) -> None:
        """Record usage from a response's ``Sforce-Limit-Info`` header, if any."""
        header = response.headers.get("Sforce-Limit-Info")
        if header:
            parsed = parse_limit_info(header)
            if parsed is not None:
                self.observe(*parsed)

    def check(self, calls: int = 1) -> None:
        """Raise :class:`BudgetExhausted` if ``calls`` more calls would cross the cap.

        Args:
            calls: how many calls the caller is about to make. A unit of work (one bulk
                job, say) checks for its whole estimate first, so that it is not cut off
                halfway, leaving a job whose outcome nobody collects.
        """
        with self._lock:
            if self.used is None or self.max is None:
                return
            cap = int(self.share * self.max)
            projected = self.used + self._since_observation + calls
        if projected > cap:
            raise BudgetExhausted(
                f"API budget guard: the org has used about {projected - calls} of "
                f"{self.max} daily API requests; sfsync may bring it to {cap} "
                f"({self.share:.0%}). Stopping cleanly; run again later to resume."
            )

    def spend(self, calls: int = 1) -> None:
        """Count calls made since the last observation."""
        with self._lock:
            self._since_observation += calls

    def summary(self) -> dict[str, int | float | None]:
        """The guard's view, for the run summary."""
        return {"used": self.estimated_used, "max": self.max, "cap": self.cap, "share": self.share}


class CallCounter:
    """Counts calls by kind (``rest``, ``query``, ``bulk1``, ``bulk2``); thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter({kind: 0 for kind in CALL_KINDS})
        self._lock = threading.Lock()

    def add(self, kind: str, n: int = 1) -> None:
        """Count ``n`` calls of ``kind``."""
        with self._lock:
            self._counts[kind] += n

    def as_dict(self) -> dict[str, int]:
        """A snapshot: kind → number of calls."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """All calls counted."""
        with self._lock:
            return sum(self._counts.values())


def install_hook(session: requests.Session, guard: BudgetGuard) -> None:
    """Make every response of ``session`` feed ``guard`` its ``Sforce-Limit-Info``.

    Installing twice on the same session is harmless (the hook is added once).
    """
    hooks = session.hooks.setdefault("response", [])
    if not isinstance(hooks, list):
        hooks = [hooks]
        session.hooks["response"] = hooks
    if not any(getattr(h, "_sfsync_guard", None) is guard for h in hooks):

        def _hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            guard.observe_response(response)

        _hook._sfsync_guard = guard  # type: ignore[attr-defined]
        hooks.append(_hook)
