"""Serve an org over HTTPS on loopback (cheroot's HTTP/1.1 server with keep-alive, TLS).

cheroot rather than werkzeug's development server: werkzeug closes every connection, so a
client would pay a TLS handshake (and a CA-file load) for each API call, which a real org
does not make it pay; cheroot keeps connections alive and serves them from a thread pool.

:func:`run_in_thread` is for tests and demos; :func:`serve` is what ``sfsync emulator
serve`` runs (blocking, stops cleanly on Ctrl-C / SIGTERM and flushes the state).
Both write ``connection.json`` in the state dir.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from sfsync.emulator import auth
from sfsync.emulator.app import EmulatorApp, create_app
from sfsync.emulator.org import Org
from sfsync.emulator.tls import TlsFiles, ensure_tls
from sfsync.limits import DEFAULT_API_VERSION

log = logging.getLogger(__name__)
FLUSH_INTERVAL_S = 30.0


@dataclass
class ServerHandle:
    """A running emulator server: its URL, files and a way to stop it."""

    url: str
    host: str
    port: int
    state_dir: Path
    connection_file: Path
    tls: TlsFiles
    org: Org
    server: wsgi.Server
    thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _flusher: threading.Thread | None = None

    def connection(self) -> dict[str, Any]:
        """The contents of connection.json."""
        return dict(json.loads(self.connection_file.read_text(encoding="utf-8")))

    def stop(self) -> None:
        """Stop serving, wait for the server thread, flush the org's state."""
        self._stop.set()
        self.server.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.org.close()


#: Threads answering requests (idle kept-alive connections do not hold one).
SERVER_THREADS = 16
#: Seconds a connection may stay silent mid-request or idle between requests.
CONNECTION_TIMEOUT_S = 75


def _ssl_adapter(tls: TlsFiles) -> BuiltinSSLAdapter:
    adapter = BuiltinSSLAdapter(str(tls.server_cert), str(tls.server_key))
    adapter.context.minimum_version = ssl.TLSVersion.TLSv1_2
    return adapter


class _Server(wsgi.Server):
    """cheroot's WSGI server, its error log sent to logging (a refused TLS handshake is no stderr line)."""

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        """Log ``msg``: errors as errors, the rest (dropped clients, handshakes) at debug."""
        log.log(level if level >= logging.ERROR else logging.DEBUG, "emulator: %s", msg, exc_info=traceback)


def _chunked_input(app: Any) -> Any:
    """Mark a dechunked request body as complete, so werkzeug reads it without a Content-Length."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return wrapped


def _static_token(org: Org) -> str:
    """The ready session for connection.json: kept across restarts and resets, never expires."""
    token = org.credentials.get("access_token")
    if not token or token not in org.sessions:
        token = auth.new_session(org, source="connection.json", expires=False)
        org.credentials["access_token"] = token
    return token


def write_connection(org: Org, url: str, state_dir: Path, tls: TlsFiles) -> Path:
    """Write ``state_dir/connection.json`` (mode 600: it holds credentials) and return its path."""
    creds = org.credentials
    data = {
        "instance_url": url, "login_url": url, "username": creds["username"], "password": creds["password"],
        "security_token": creds["security_token"], "client_id": creds["client_id"],
        "client_secret": creds["client_secret"], "access_token": _static_token(org), "ca_bundle": str(tls.ca_cert),
        "private_key_file": str(tls.jwt_key), "certificate_file": str(tls.jwt_cert),
        "api_version": DEFAULT_API_VERSION, "admin_url": f"{url}/__emulator",
    }
    path = Path(state_dir) / "connection.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
    return path


def start_server(org: Org, *, host: str = "127.0.0.1", port: int = 0, state_dir: Path | None = None,
                 app: EmulatorApp | None = None) -> ServerHandle:
    """Bind the HTTPS server (not yet serving) and write connection.json.

    Args:
        org: The org to serve.
        host: Interface to bind; loopback by default (the admin endpoints have no auth).
        port: TCP port; 0 picks a free one.
        state_dir: Where key material and connection.json go (the org's own state_dir
            when None, else a temporary directory).
        app: A prebuilt app (default: :func:`create_app`).
    """
    if state_dir is None:
        state_dir = org.state_dir or Path(tempfile.mkdtemp(prefix="sfsync-emulator-"))
    state_dir = Path(state_dir)
    tls = ensure_tls(state_dir)
    cert_pem = tls.jwt_cert.read_bytes()
    if cert_pem not in org.jwt_certificates:
        org.jwt_certificates.append(cert_pem)
    server = _Server((host, port), _chunked_input(app or create_app(org)), numthreads=SERVER_THREADS,
                         server_name="sfsync-emulator", timeout=CONNECTION_TIMEOUT_S, request_queue_size=64)
    server.ssl_adapter = _ssl_adapter(tls)
    server.prepare()  # binds: the port is known from here on
    bound_port = server.bind_addr[1]
    url_host = f"[{host}]" if ":" in host else host
    url = f"https://{url_host}:{bound_port}"
    connection = write_connection(org, url, state_dir, tls)
    org.flush()
    return ServerHandle(url=url, host=host, port=bound_port, state_dir=state_dir, connection_file=connection,
                        tls=tls, org=org, server=server)


def _flush_loop(handle: ServerHandle) -> None:
    while not handle._stop.wait(FLUSH_INTERVAL_S):
        try:
            handle.org.flush()
        except OSError:
            log.exception("emulator: periodic state flush failed")


def run_in_thread(org: Org, port: int = 0, *, host: str = "127.0.0.1", state_dir: Path | None = None) -> ServerHandle:
    """Serve ``org`` from a background thread; call ``handle.stop()`` when done."""
    handle = start_server(org, host=host, port=port, state_dir=state_dir)
    handle.thread = threading.Thread(target=handle.server.serve, name="sfsync-emulator", daemon=True)
    handle.thread.start()
    handle._flusher = threading.Thread(target=_flush_loop, args=(handle,), name="sfsync-emulator-flush", daemon=True)
    handle._flusher.start()
    return handle


def serve(org: Org, *, host: str = "127.0.0.1", port: int = 8443, state_dir: Path | None = None,
          on_ready: Any = None) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM, then flush the state and return.

    Args:
        on_ready: Called with the :class:`ServerHandle` once the socket is bound.
    """
    handle = start_server(org, host=host, port=port, state_dir=state_dir)
    if on_ready is not None:
        on_ready(handle)

    def stop(signum: int, frame: Any) -> None:
        # stop() waits for the serving loop, so it must run off this thread.
        threading.Thread(target=handle.server.stop, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    flusher = threading.Thread(target=_flush_loop, args=(handle,), name="sfsync-emulator-flush", daemon=True)
    flusher.start()
    try:
        handle.server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        handle._stop.set()
        handle.server.stop()
        org.close()
