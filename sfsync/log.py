"""Structured logging: readable on a terminal, JSON lines otherwise; run ids bound; secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_secrets: set[str] = set()
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|authorization|session_id|api_key|private_key)", re.I)
MASK = "***"


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that they never reach a log line, wherever they appear."""
    for v in values:
        if v and len(v) >= 4:  # masking 1–3 character strings would shred ordinary words
            _secrets.add(v)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for s in _secrets:
            if s in value:
                value = value.replace(s, MASK)
        return value
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_KEYS.search(str(k)) and v else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and every registered secret value."""
    for k in list(event):
        v = event[k]
        if _SECRET_KEYS.search(k) and v and not k.endswith(("_file", "_path")):
            event[k] = MASK
        else:
            event[k] = _scrub(v)
    return event


def configure(fmt: str | None = None, verbose: int = 0, stream: Any = None) -> None:
    """Set up structlog (and the stdlib root logger, for libraries) once per process.

    Args:
        fmt: ``console`` or ``json``; None picks console on a terminal, JSON otherwise.
        verbose: 0 = warnings on the console (info in JSON), 1 = info, 2+ = debug.
        stream: where to write (stderr by default, so stdout stays for command output).
    """
    stream = stream or sys.stderr
    if fmt is None:
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    # On a terminal the progress bars and summary tables tell the story: the console log shows
    # warnings and errors unless -v asks for the events too. Machines (JSON) always get info.
    if verbose > 1:
        level = logging.DEBUG
    elif verbose or fmt == "json":
        level = logging.INFO
    else:
        level = logging.WARNING
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
                     else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (urllib3, alembic) log through stdlib logging: keep them quiet unless -v.
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.WARNING, stream=stream,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger (bound to ``name`` when given)."""
    return structlog.get_logger(name) if name else structlog.get_logger()


def bind_run(run_id: int, job: str) -> None:
    """Every event from here on in this context carries the run id and the job."""
    structlog.contextvars.bind_contextvars(run_id=run_id, job=job)


def unbind_run() -> None:
    """Stop tagging events with the run."""
    structlog.contextvars.unbind_contextvars("run_id", "job")
