"""An outbox directory: export files written atomically, each Salesforce Id at most once.

Protocol, so that a crash at any point never loses nor duplicates a record:

1. records whose ``sf_id`` is already in the manifest are answered ``ok`` with the file
   they went to (a retry is not an error);
2. the rest go to ``<stream>_<UTC timestamp>_<n>.<ext>.tmp``, fsynced, renamed to the final
   name (readers never see half a file), directory fsynced;
3. their ids are appended to ``.manifest.jsonl`` (fsynced).

A crash between 2 and 3 leaves a file the manifest does not list: the next export reads
its ids back before writing anything, so they are not written again. The manifest outlives
the files, which the biller may pick up and delete.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sfsync.billers.base import EXPORT_STREAMS, ExportResult
from sfsync.errors import TransientError, UserError

MANIFEST = ".manifest.jsonl"


class Outbox:
    """Writes export files into ``path`` (created on first use)."""

    def __init__(self, path: Path, fmt: str = "csv") -> None:
        self.path = Path(path)
        self.fmt = fmt
        self._lock = threading.Lock()

    def _manifest(self) -> tuple[dict[str, str], set[str]]:
        """sf_id → file, and the files the manifest knows."""
        ids: dict[str, str] = {}
        files: set[str] = set()
        mf = self.path / MANIFEST
        if mf.exists():
            with open(mf, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue  # a torn last line after a crash: its file is recovered below
                    ids[e["sf_id"]] = e["file"]
                    files.add(e["file"])
        return ids, files

    def _recover(self, ids: dict[str, str], files: set[str]) -> None:
        """Add the ids of export files the manifest missed (crash after rename)."""
        for p in sorted(self.path.glob(f"*.{self.fmt}")):
            if p.name in files:
                continue
            found = _ids_in(p)
            self._append([{"sf_id": i, "file": p.name, "stream": p.name.split("_")[0]} for i in found])
            for i in found:
                ids.setdefault(i, p.name)
            files.add(p.name)

    def _append(self, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        with open(self.path / MANIFEST, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(e) + "\n" for e in entries))
            f.flush()
            os.fsync(f.fileno())

    def write(self, stream: str, records: list[dict[str, Any]]) -> list[ExportResult]:
        """Write the records not yet exported; one result per record, in order."""
        if stream not in EXPORT_STREAMS:
            raise UserError(f"unknown export stream {stream!r}; expected one of {', '.join(EXPORT_STREAMS)}")
        with self._lock:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                ids, files = self._manifest()
                self._recover(ids, files)
                fresh: dict[str, dict[str, Any]] = {}
                for r in records:
                    sid = str(r.get("sf_id") or "")
                    if sid and sid not in ids and sid not in fresh:
                        fresh[sid] = r
                name = None
                if fresh:
                    name = self._write_file(stream, list(fresh.values()))
                    self._append([{"sf_id": s, "file": name, "stream": stream} for s in fresh])
                    for s in fresh:
                        ids[s] = name
            except OSError as exc:
                # A full disk or a vanished mount: nothing was acknowledged, keep them pending.
                err = f"outbox {self.path}: {exc.strerror or exc}"
                return [ExportResult(str(r.get("sf_id")), False, None, err, transient=True) for r in records]
        out = []
        for r in records:
            sid = str(r.get("sf_id") or "")
            if not sid:
                out.append(ExportResult(sid, False, None, "record has no sf_id"))
            else:
                out.append(ExportResult(sid, True, ids[sid]))
        return out

    def _write_file(self, stream: str, records: list[dict[str, Any]]) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        n = 0
        while True:
            name = f"{stream}_{stamp}{f'_{n}' if n else ''}.{self.fmt}"
            if not (self.path / name).exists():
                break
            n += 1
        final = self.path / name
        tmp = final.with_name(final.name + ".tmp")
        columns: list[str] = ["sf_id"]
        for r in records:
            columns.extend(k for k in r if k not in columns)
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if self.fmt == "csv":
                w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
                w.writeheader()
                w.writerows({k: _plain(v) for k, v in r.items()} for r in records)
            else:
                f.writelines(json.dumps(r, default=str, ensure_ascii=False) + "\n" for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.path)
        return name


def _plain(v: Any) -> Any:
    return "" if v is None else v


def _ids_in(p: Path) -> list[str]:
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if p.suffix == ".csv":
                return [r["sf_id"] for r in csv.DictReader(f) if r.get("sf_id")]
            return [json.loads(line)["sf_id"] for line in f if line.strip()]
    except (OSError, ValueError, KeyError) as exc:
        raise TransientError(f"outbox file {p} is unreadable: {exc}") from exc


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
