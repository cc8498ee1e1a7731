"""What every command needs: the settings, the state store, logging — opened lazily, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sfsync import log
from sfsync.config import Settings, load_settings

if TYPE_CHECKING:
    from sfsync.state import StateStore


@dataclass
class App:
    """The per-invocation context the CLI (and the service) hands to jobs."""

    config_path: Path | None = None
    log_format: str | None = None
    verbose: int = 0
    trigger: str = "cli"
    _settings: Settings | None = field(default=None, repr=False)
    _store: StateStore | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The validated configuration (read on first use; secrets registered for redaction)."""
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            log.register_secrets(self._settings.secrets())
        return self._settings

    def settings_or_defaults(self) -> Settings:
        """Like :attr:`settings`, but a missing config file means defaults (for db/runs commands)."""
        if self._settings is None:
            self._settings = load_settings(self.config_path, required=False)
            log.register_secrets(self._settings.secrets())
        return self._settings

    @property
    def store(self) -> StateStore:
        """The state store, upgraded to the current schema on first use."""
        if self._store is None:
            from sfsync.state import StateStore

            s = self._settings or self.settings_or_defaults()
            self._store = StateStore(s.database.url, echo=s.database.echo)
        return self._store

    def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            self._store.close()
            self._store = None
