"""A small TM Forum biller on loopback, serving a directory written by ``sample-data --format tmf678``.

Good enough for the demo, the refresh benchmark and integration tests, not a conformance
server: ``GET`` lists with ``offset``/``limit`` (``X-Total-Count``), dot-notation equality
filters (``billingAccount.id=``), ``<field>.gt/.gte/.lt/.lte=`` on the date fields and
``GET /<resource>/<id>``; ``POST /payment`` (and adjustment, paymentMethod, dispute) idempotent
by ``correlatorId`` (a repeat answers 409 with the existing resource). Records are kept as
raw JSON lines in (incremental field, id) order, indexed by id and by billing account.

    with run_in_thread("demo/tmf") as server:
        biller = TmfBiller("tmf", TmfBillerSettings(base_url=server.url), store)
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

READ_ENTITIES = {"customerBill": "billDate", "appliedCustomerBillingRate": "date", "billingAccount": "lastUpdate",
                 "dispute": "creationDate"}
WRITE_ENTITIES = ("payment", "adjustment", "paymentMethod")
_OPS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _get(rec: Any, path: str) -> Any:
    for part in path.split("."):
        rec = rec.get(part) if isinstance(rec, dict) else None
    return rec


class Resource:
    """One entity's records: raw JSON lines plus the fields requests filter on."""

    def __init__(self, name: str, inc: str | None) -> None:
        self.name = name
        self.inc = inc
        self.lines: list[bytes] = []
        self.ids: list[str] = []
        self.dates: list[str] = []
        self.by_id: dict[str, int] = {}
        self.by_account: dict[str, list[int]] = defaultdict(list)
        self.by_correlator: dict[str, int] = {}

    def load(self, files: list[Path]) -> None:
        rows = []
        for f in files:
            with open(f, "rb") as fh:
                for line in fh:
                    line = line.strip()
                    if line:
                        rec = json.loads(line)
                        rows.append((str(_get(rec, self.inc) or "") if self.inc else "", str(rec.get("id")),
                                     str(_get(rec, "billingAccount.id") or ""), line))
        rows.sort(key=lambda r: (r[0], r[1]))
        for date, rid, acct, line in rows:
            self.add(line, rid, date, acct)

    def add(self, line: bytes, rid: str, date: str = "", account: str = "", correlator: str | None = None) -> int:
        i = len(self.lines)
        self.lines.append(line)
        self.ids.append(rid)
        self.dates.append(date)
        self.by_id[rid] = i
        if account:
            self.by_account[account].append(i)
        if correlator:
            self.by_correlator[correlator] = i
        return i

    def query(self, params: dict[str, str]) -> list[int]:
        """Positions matching the filters, in (incremental field, id) order."""
        if "id" in params:
            pos = [self.by_id[params["id"]]] if params["id"] in self.by_id else []
        elif "billingAccount.id" in params:
            pos = list(self.by_account.get(params["billingAccount.id"], []))
        elif "correlatorId" in params:
            c = params["correlatorId"]
            pos = [self.by_correlator[c]] if c in self.by_correlator else []
        else:
            pos = range(len(self.lines))  # type: ignore[assignment]
        for k, v in params.items():
            field, _, op = k.rpartition(".")
            if op in _OPS and field == self.inc:
                fn = _OPS[op]
                pos = [i for i in pos if fn(self.dates[i], v)]
        return list(pos)


class TmfData:
    """Every resource of one sample directory, plus what clients posted."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.resources = {n: Resource(n, inc) for n, inc in READ_ENTITIES.items()}
        for n in WRITE_ENTITIES:
            self.resources[n] = Resource(n, None)
        self.lock = threading.Lock()
        self.counter = 0
        if directory is not None:
            d = Path(directory)
            for name, res in self.resources.items():
                res.load(sorted(d.glob(f"{name}_*.jsonl")) + sorted(d.glob(f"{name}.jsonl")))

    def create(self, name: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """Store a posted resource; a known correlatorId answers 409 with the existing one."""
        res = self.resources[name]
        with self.lock:
            corr = body.get("correlatorId")
            if corr and corr in res.by_correlator:
                return 409, res.lines[res.by_correlator[corr]]
            self.counter += 1
            rid = f"{name[:3].upper()}-{self.counter:06d}"
            rec = {"id": rid, "href": f"/{name}/{rid}", **body, "status": body.get("status", "received")}
            line = json.dumps(rec).encode("utf-8")
            res.add(line, rid, correlator=corr)
            return 201, line


class _Handler(BaseHTTPRequestHandler):
    server: TmfHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> tuple[str | None, str | None, dict[str, str]]:
        parts = urlsplit(self.path)
        segs = [s for s in parts.path.split("/") if s]
        params = dict(parse_qsl(parts.query))
        for i, s in enumerate(segs):
            if s in self.server.data.resources:
                return s, (segs[i + 1] if i + 1 < len(segs) else None), params
        return None, None, params

    def _guard(self) -> bool:
        """Auth and injected faults; True when the request was answered already."""
        srv = self.server
        with srv.data.lock:
            fault = srv.faults.pop(0) if srv.faults else None
        if fault == "html":
            self._send(200, b"<html><body>Maintenance</body></html>", ctype="text/html")
            return True
        if isinstance(fault, int):
            self._send(fault, b'{"code":"%d","reason":"injected fault"}' % fault, {"Retry-After": "0"})
            return True
        if srv.token and self.headers.get("Authorization") != f"Bearer {srv.token}":
            self._send(401, b'{"code":"401","reason":"unauthorized"}')
            return True
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self._guard():
            return
        name, rid, params = self._route()
        if name is None:
            self._send(404, b'{"code":"404","reason":"unknown resource"}')
            return
        res = self.server.data.resources[name]
        if rid is not None:
            i = res.by_id.get(rid)
            self._send(200, res.lines[i]) if i is not None else self._send(404, b'{"code":"404","reason":"not found"}')
            return
        pos = res.query(params)
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 1000))
        page = pos[offset:offset + limit]
        body = b"[" + b",".join(res.lines[i] for i in page) + b"]"
        self._send(200, body, {"X-Total-Count": str(len(pos)), "X-Result-Count": str(len(page))})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if self._guard():
            return
        name, _, _ = self._route()
        if name is None or name not in (*WRITE_ENTITIES, "dispute"):
            self._send(404, b'{"code":"404","reason":"unknown resource"}')
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"code":"400","reason":"body is not JSON"}')
            return
        if not isinstance(body, dict):
            self._send(400, b'{"code":"400","reason":"expected an object"}')
            return
        status, line = self.server.data.create(name, body)
        self._send(status, line)


class TmfHTTPServer(ThreadingHTTPServer):
    """The loopback server; ``faults`` is a list of statuses (or ``"html"``) for the next requests."""

    daemon_threads = True

    def __init__(self, data: TmfData, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.data = data
        self.token = token
        self.faults: list[int | str] = []

    @property
    def url(self) -> str:
        """Base URL clients use (paths follow TMF: /tmf-api/...)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@contextmanager
def run_in_thread(directory: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                  token: str | None = None) -> Iterator[TmfHTTPServer]:
    """Serve ``directory`` on loopback in a background thread for the duration of the block."""
    server = TmfHTTPServer(TmfData(directory), host, port, token)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="sfsync-tmf-server")
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)


def serve(directory: str | Path, host: str = "127.0.0.1", port: int = 8678, token: str | None = None) -> None:
    """Serve in the foreground until interrupted (``sfsync tmf-serve``)."""
    server = TmfHTTPServer(TmfData(directory), host, port, token)
    try:
        server.serve_forever()
    finally:
        server.server_close()
