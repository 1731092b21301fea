"""The one HTTP upgrade ASGI cannot express: ``Upgrade: SPDY/3.1`` (kubectl before 1.31, and 1.31+ when its
WebSocket attempt is refused or KUBECTL_PORT_FORWARD_WEBSOCKETS=false).

uvicorn hands only ``Upgrade: websocket`` to an ASGI app. This protocol class (uvicorn's httptools protocol,
given to uvicorn as ``http=``) also takes ``Upgrade: SPDY/3.1`` requests and presents the raw upgraded
connection to the app as an ASGI *websocket* whose messages are arbitrary slices of the byte stream,
offering the subprotocols ``SPDY/3.1+<X-Stream-Protocol-Version>``: exactly what the SPDY-over-WebSocket
tunnel of kubectl 1.31+ looks like. So authentication (BearerAuth), routing and the SPDY session are the
same code for both transports; ``websocket.accept`` becomes ``101 Switching Protocols`` with the
negotiated ``X-Stream-Protocol-Version``, and a denial response is written as plain HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("minik8s.apiserver.portforward")

SPDY_UPGRADE = b"spdy/3.1"
TUNNEL_PREFIX = "SPDY/3.1+"
PAUSE_READING_AT = 32  # chunks queued for the app before the socket stops being read
RESUME_READING_AT = 8


class UpgradingHttpProtocol(HttpToolsProtocol):
    def _should_upgrade(self) -> bool:
        return self._get_upgrade() == SPDY_UPGRADE or super()._should_upgrade()

    def handle_websocket_upgrade(self) -> None:
        if self._get_upgrade() != SPDY_UPGRADE:
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        raw = RawUpgrade(self.app, self._raw_scope(), self.transport)
        self.transport.set_protocol(raw)
        raw.start()

    def _raw_scope(self) -> dict[str, Any]:
        url = httptools.parse_url(self.url)
        versions = [v.strip() for name, value in self.headers if name == b"x-stream-protocol-version"
                    for v in value.decode("latin-1").split(",") if v.strip()]
        return {
            "type": "websocket", "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1", "scheme": "wss" if self.scheme == "https" else "ws",
            "server": self.server, "client": self.client, "root_path": self.root_path,
            "path": urllib.parse.unquote(url.path.decode("ascii")), "raw_path": url.path,
            "query_string": url.query or b"", "headers": self.headers,
            "subprotocols": [TUNNEL_PREFIX + v for v in versions], "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }


class RawUpgrade(asyncio.Protocol):
    """An upgraded connection, driven by an ASGI app through the websocket message types."""

    def __init__(self, app: Any, scope: dict[str, Any], transport: asyncio.Transport) -> None:
        self.app, self.scope, self.transport = app, scope, transport
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.arrived = asyncio.Event()
        self.arrived.set()
        self.writable = asyncio.Event()
        self.writable.set()
        self.accepted = self.closed = self.paused = False

    def start(self) -> None:
        asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("port-forward: the upgraded connection failed")
        finally:
            self.transport.close()

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.inbox.append({"type": "websocket.receive", "bytes": data})
        self.arrived.set()
        if len(self.inbox) >= PAUSE_READING_AT and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close: a SPDY peer never half-closes its whole connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.inbox.append({"type": "websocket.disconnect", "code": 1006})
        self.arrived.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # --- ASGI ---------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.arrived.clear()
            await self.arrived.wait()
        message = self.inbox.popleft()
        if self.paused and len(self.inbox) <= RESUME_READING_AT:
            self.paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise OSError("the connection is closed")
        kind = message["type"]
        if kind == "websocket.accept":
            protocol = (message.get("subprotocol") or "").removeprefix(TUNNEL_PREFIX)
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: " + protocol.encode() + b"\r\n\r\n")
            self.accepted = True
        elif kind == "websocket.send":
            await self.writable.wait()
            self.transport.write(message.get("bytes") or (message.get("text") or "").encode())
        elif kind == "websocket.close":
            if not self.accepted:
                self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            self.closed = True
        elif kind == "websocket.http.response.start":
            lines = [f"HTTP/1.1 {message['status']} Upgrade refused".encode()]
            lines += [name + b": " + value for name, value in message.get("headers", [])]
            self.transport.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]))
        elif kind == "websocket.http.response.body":
            self.transport.write(message.get("body", b""))
            if not message.get("more_body"):
                self.transport.close()
                self.closed = True
