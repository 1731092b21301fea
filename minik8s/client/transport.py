"""Plain request/response HTTP for the SDK: a thread-safe pool of keep-alive `http.client` connections.

Why not httpx for these: every controller call is one small JSON request, and httpx/httpcore
spend ~0.8 ms of CPU on each (URL parsing, and a pool that scans every connection, polling each
socket, per request), against ~0.2 ms here; on a 2-core control plane that was a third of the
scheduler's CPU. Watches use it too (a connection of their own each); log streams stay on httpx.

A connection is used by one thread at a time: taken from the idle pool (or opened), returned
after its response is read in full. One that sat idle too long, or whose socket turned readable
while idle (the server closed it), is dropped instead of reused.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from minik8s.errors import BadRequest

MAX_IDLE_CONNECTIONS = 32  # kept open for reuse; more may be open at once (one per concurrent caller)
IDLE_TIMEOUT_S = 4.0  # below uvicorn's 5 s keep-alive, so the server never closes one under us first
NO_TIMEOUT: float | None = None  # `timeout=NO_TIMEOUT`: wait for the answer as long as it takes (exec)

# a reused connection that fails with these before any answer was read: the server had closed it
# while it sat idle, so the request never reached the handler; send it once more on a new connection
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class TransportError(Exception):
    """The server could not be reached, or the connection broke before a full answer."""


@dataclass
class RawResponse:
    status: int
    content: bytes
    warnings: tuple[str, ...] = ()  # the `Warning` headers' texts (admission's warnings, e.g. Pod Security)


def warning_text(header: str) -> str:
    """`299 - "text"` (RFC 7234, as the API server writes it) -> `text`."""
    parts = header.split(" ", 2)
    if len(parts) == 3 and parts[2].startswith('"') and parts[2].endswith('"'):
        return parts[2][1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return header


def _query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items() if v is not None]
    return "?" + urlencode(pairs) if pairs else ""


class Transport:
    def __init__(self, server: str, headers: Mapping[str, str], timeout: float,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        url = urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BadRequest(f"the API server address must be http(s)://HOST[:PORT], not {server!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._https else None)
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn, _ in idle:
            conn.close()

    def request(self, method: str, path: str, params: Mapping[str, Any] | None = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = -1.0) -> RawResponse:
        """One request; `timeout` in seconds (default: the transport's), NO_TIMEOUT for none."""
        target = self._prefix + path + _query(params)
        hdrs = {**self._headers, **(headers or {})}
        wait = self._timeout if timeout is not None and timeout < 0 else timeout
        while True:
            conn, reused = self._take()
            try:
                if conn.sock is None:
                    conn.connect()
                conn.sock.settimeout(wait)  # type: ignore[union-attr]
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                content = resp.read()
            except _STALE as exc:
                conn.close()
                if reused:
                    continue  # never reached the server: see _STALE
                raise TransportError(str(exc) or type(exc).__name__) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError(str(exc) or type(exc).__name__) from None
            self._give_back(conn, resp.will_close)
            warnings = tuple(warning_text(w) for w in resp.headers.get_all("Warning") or ())
            return RawResponse(resp.status, content, warnings)

    @contextmanager
    def stream(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> Iterator[
            http.client.HTTPResponse]:
        """A long response (a watch) on a connection of its own, read as it comes (`readline()`): connecting
        may take the transport's timeout, waiting for the next line takes as long as it takes."""
        conn = self._new()
        try:
            conn.connect()
            conn.sock.settimeout(None)  # type: ignore[union-attr]
            conn.request(method, self._prefix + path + _query(params), headers=self._headers)
            yield conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None
        finally:
            conn.close()

    def _new(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if now - since < IDLE_TIMEOUT_S and not _readable(conn):
                return conn, True
            conn.close()
        return self._new(), False

    def _give_back(self, conn: http.client.HTTPConnection, will_close: bool) -> None:
        if not will_close:
            with self._lock:
                if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()


def _readable(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket is readable only when the server closed it (or sent garbage)."""
    if conn.sock is None:
        return True
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
