"""The life of a run, shared by every job: lock, record, log, count, finish, exit code.

A job does its work inside ``with start_run(...) as run:``; the runner turns what happened
into the run's status and the CLI's exit code:

* everything went through → ``succeeded`` (exit 0)
* finished, but some rows were rejected → ``rejected`` (exit 3)
* stopped cleanly before the end (API budget, Ctrl-C) → ``stopped`` (exit 1, resumable)
* an error ended it → ``failed`` (exit 1; a user mistake exits 2)
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sfsync import log
from sfsync.errors import BudgetExhausted, SfsyncError, UserError
from sfsync.state import Reject, RunLock, StateStore, lock_name

EXIT_FOR_STATUS = {"succeeded": 0, "rejected": 3, "stopped": 1, "failed": 1}


@dataclass
class RunContext:
    """What a job reports while it runs."""

    store: StateStore
    run_id: int
    job: str
    billers: list[str]
    counts: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    api_calls: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    status: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    _last_flush: float = field(default_factory=time.monotonic)

    def count(self, sobject: str, **increments: float) -> None:
        """Add to the per-object counters (read, unchanged, sent, created, updated, rejected...)."""
        row = self.counts[sobject]
        for k, v in increments.items():
            row[k] += v

    def reject(self, rejects: Iterable[Reject]) -> int:
        """Store rejected rows now (they are never lost, even if the run dies next)."""
        n = self.store.add_rejects(rejects)
        self.rejected += n
        return n

    def new_reject(self, biller: str, sobject: str, key: str | None, source: str | None, stage: str,
                   code: str, message: str, payload: dict[str, Any] | None = None) -> Reject:
        """A reject of this run (to pass to :meth:`reject`)."""
        return Reject(self.run_id, biller, sobject, key, source, stage, code, message, payload)

    def flush(self, force: bool = False) -> None:
        """Persist the running totals (at most every few seconds) so a killed run still shows them."""
        now = time.monotonic()
        if force or now - self._last_flush > 3:
            self.store.update_run(self.run_id, counts=self.plain_counts(), api_calls=dict(self.api_calls))
            self._last_flush = now

    def plain_counts(self) -> dict[str, dict[str, float]]:
        """Counters as plain dicts (JSON-ready)."""
        return {k: dict(v) for k, v in self.counts.items()}

    @property
    def exit_code(self) -> int:
        """The CLI exit code this run ends with."""
        return EXIT_FOR_STATUS.get(self.status or "failed", 1)


@contextlib.contextmanager
def start_run(store: StateStore, job: str, billers: list[str], trigger: str = "cli",
              options: dict[str, Any] | None = None, *, lock: bool = True) -> Iterator[RunContext]:
    """Take the run locks, record the run, bind its id to every log event, and close it.

    Raises:
        LockHeld: another run of this job holds a biller's lock (nothing is recorded).
    """
    logger = log.get_logger("sfsync.run")
    locks = [RunLock(store, lock_name(job, b)) for b in (billers or [None])] if lock else []  # type: ignore[list-item]
    acquired: list[RunLock] = []
    try:
        for lk in locks:
            acquired.append(lk.acquire())
        run_id = store.start_run(job, billers, trigger, options)
        for lk in acquired:
            lk.set_run(run_id)
        ctx = RunContext(store, run_id, job, billers)
        log.bind_run(run_id, job)
        logger.info("run started", billers=billers, trigger=trigger, options=options or {})
        try:
            yield ctx
            if ctx.status is None:
                ctx.status = "rejected" if ctx.rejected else "succeeded"
        except BudgetExhausted as exc:
            ctx.status, ctx.error = "stopped", str(exc)
            logger.warning("run stopped: API budget reached; rerun to resume", reason=str(exc))
        except KeyboardInterrupt:
            ctx.status, ctx.error = "stopped", "interrupted"
            raise
        except UserError as exc:
            ctx.status, ctx.error = "failed", str(exc)
            raise
        except SfsyncError as exc:
            ctx.status, ctx.error = "failed", str(exc)
            logger.error("run failed", error=str(exc), error_type=type(exc).__name__)
            raise
        except Exception as exc:
            ctx.status, ctx.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.exception("run failed")
            raise
        finally:
            store.finish_run(run_id, ctx.status or "failed", counts=ctx.plain_counts(),
                             api_calls=dict(ctx.api_calls), error=ctx.error)
            logger.info("run finished", status=ctx.status, rejected=ctx.rejected,
                        seconds=round(time.monotonic() - ctx.started, 3))
            log.unbind_run()
    finally:
        for lk in reversed(acquired):
            lk.release()
