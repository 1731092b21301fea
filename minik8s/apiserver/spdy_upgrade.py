"""The two upgrades kubectl's port-forward makes that uvicorn cannot hand to an ASGI app as they are:

- ``Upgrade: SPDY/3.1`` (kubectl before 1.31, and 1.31+ when its WebSocket attempt is refused or
  KUBECTL_PORT_FORWARD_WEBSOCKETS=false): not a WebSocket at all;
- ``Upgrade: websocket`` with the subprotocol ``SPDY/3.1+portforward.k8s.io`` (kubectl 1.31+): the
  ``websockets`` library refuses that subprotocol ("/" is not an HTTP token character).

This protocol class (uvicorn's httptools protocol, given to uvicorn as ``http=``) takes both and presents
the upgraded connection to the app as an ASGI *websocket* whose received messages are slices of the
tunnelled byte stream (for the WebSocket case: the payload of each data frame, whatever its message
boundaries, which is what kubectl's tunnel means), offering ``SPDY/3.1+<protocol>`` subprotocols. So
authentication (BearerAuth), routing and the SPDY session are one code path for both. Every other
upgrade (plain WebSockets: exec, the v4 channel port-forward) goes to uvicorn's WebSocket implementation.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
import urllib.parse
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.frames import apply_mask  # the C speedup when built, else websockets' own fallback

log = logging.getLogger("minik8s.apiserver.portforward")

SPDY_UPGRADE = b"spdy/3.1"
TUNNEL_PREFIX = "SPDY/3.1+"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
MAX_FRAME = 64 * 1024 * 1024  # a client frame larger than this is refused
# the scope extension that offers ``send_parts`` (a binary message from several buffers, not joined)
RAW_EXTENSION = "minik8s.raw_upgrade"
PAUSE_READING_AT = 32  # chunks queued for the app before the socket stops being read
RESUME_READING_AT = 8


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    return ",".join(v.decode("latin-1") for k, v in headers if k == name)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class UpgradingHttpProtocol(HttpToolsProtocol):
    def _raw_kind(self) -> str | None:
        """"spdy", "websocket" (a SPDY tunnel over WebSocket) or None (not ours)."""
        upgrade = self._get_upgrade()
        if upgrade == SPDY_UPGRADE:
            # only port-forward speaks SPDY here: an exec/attach that fell back to SPDY (its WebSocket
            # upgrade was refused) gets the plain HTTP answer that says why
            path = self.url.split(b"?", 1)[0]
            return "spdy" if path.endswith(b"/portforward") else None
        if upgrade == b"websocket" and TUNNEL_PREFIX in _header(self.headers, b"sec-websocket-protocol"):
            return "websocket"
        return None

    def _should_upgrade(self) -> bool:
        return self._raw_kind() is not None or super()._should_upgrade()

    def handle_websocket_upgrade(self) -> None:
        kind = self._raw_kind()
        if kind is None:
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        raw = RawUpgrade(self.app, self._raw_scope(kind), self.transport, kind == "websocket")
        self.transport.set_protocol(raw)
        raw.start()

    def _raw_scope(self, kind: str) -> dict[str, Any]:
        url = httptools.parse_url(self.url)
        if kind == "spdy":
            offered = [TUNNEL_PREFIX + v for v in _split(_header(self.headers, b"x-stream-protocol-version"))]
        else:
            offered = _split(_header(self.headers, b"sec-websocket-protocol"))
        return {
            "type": "websocket", "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1", "scheme": "wss" if self.scheme == "https" else "ws",
            "server": self.server, "client": self.client, "root_path": self.root_path,
            "path": urllib.parse.unquote(url.path.decode("ascii")), "raw_path": url.path,
            "query_string": url.query or b"", "headers": self.headers, "subprotocols": offered,
            "state": self.app_state.copy(), "extensions": {"websocket.http.response": {}, RAW_EXTENSION: {}},
        }


def ws_head(opcode: int, size: int) -> bytes:
    """The header of one unmasked, final server frame of ``size`` bytes."""
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size)
    if size < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    return ws_head(opcode, len(payload)) + payload


class FrameError(Exception):
    pass


class WebSocketReader:
    """Cuts the client's bytes into (opcode, unmasked payload) frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= 2:
            opcode, second = self.buffer[0] & 0x0F, self.buffer[1]
            size, pos = second & 0x7F, 2
            if size == 126:
                if len(self.buffer) < 4:
                    break
                size, pos = struct.unpack_from("!H", self.buffer, 2)[0], 4
            elif size == 127:
                if len(self.buffer) < 10:
                    break
                size, pos = struct.unpack_from("!Q", self.buffer, 2)[0], 10
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes is too large")
            mask = b""
            if second & 0x80:
                mask, pos = bytes(self.buffer[pos:pos + 4]), pos + 4
            if len(self.buffer) < pos + size:
                break
            with memoryview(self.buffer) as view:  # unmasked straight out of the buffer: one copy, not two
                payload = apply_mask(view[pos:pos + size], mask) if mask else bytes(view[pos:pos + size])
            del self.buffer[:pos + size]
            frames.append((opcode, payload))
        return frames


class RawUpgrade(asyncio.Protocol):
    """An upgraded connection, driven by an ASGI app through the websocket message types."""

    def __init__(self, app: Any, scope: dict[str, Any], transport: asyncio.Transport, websocket: bool) -> None:
        self.app, self.scope, self.transport, self.websocket = app, scope, transport, websocket
        self.reader = WebSocketReader() if websocket else None
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.arrived = asyncio.Event()
        self.arrived.set()
        self.writable = asyncio.Event()
        self.writable.set()
        self.accepted = self.closed = self.paused = False

    def start(self) -> None:
        self.scope["extensions"][RAW_EXTENSION]["send_parts"] = self.send_parts
        asyncio.get_running_loop().create_task(self._run())

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """Send the concatenation of ``parts`` as one binary message, without joining them first."""
        if self.closed:
            raise OSError("the connection is closed")
        await self.writable.wait()
        if self.websocket:
            self.transport.writelines([ws_head(OP_BINARY, sum(len(p) for p in parts)), *parts])
        else:
            self.transport.writelines(parts)

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("port-forward: the upgraded connection failed")
        finally:
            self._close()

    def _close(self, code: int = 1000) -> None:
        if not self.closed and self.accepted and self.websocket:
            self.transport.write(ws_frame(OP_CLOSE, struct.pack("!H", code)))
        self.closed = True
        self.transport.close()

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            self._deliver(data)
            return
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            log.warning("port-forward: %s", exc)
            self._close(1009)
            return
        # kubectl writes each SPDY frame as three messages (two 4-byte halves of the header, then the
        # data), so one read holds dozens: the tunnel is a byte stream, and the app gets them as one
        # piece, not one wake-up per message
        stream: list[bytes] = []
        for opcode, payload in frames:
            if opcode in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
                if payload:
                    stream.append(payload)
                continue
            self._deliver_all(stream)
            if opcode == OP_PING:
                self.transport.write(ws_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self._close()
                return
        self._deliver_all(stream)

    def _deliver_all(self, stream: list[bytes]) -> None:
        if stream:
            self._deliver(stream[0] if len(stream) == 1 else b"".join(stream))
            stream.clear()

    def _deliver(self, data: bytes) -> None:
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

    def _switch(self, subprotocol: str) -> bytes:
        if not self.websocket:
            return (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                    b"X-Stream-Protocol-Version: " + subprotocol.removeprefix(TUNNEL_PREFIX).encode() + b"\r\n\r\n")
        key = _header(self.scope["headers"], b"sec-websocket-key").strip().encode()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        return (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: " + subprotocol.encode()
                + b"\r\n\r\n")

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise OSError("the connection is closed")
        kind = message["type"]
        if kind == "websocket.accept":
            self.transport.write(self._switch(message.get("subprotocol") or ""))
            self.accepted = True
        elif kind == "websocket.send":
            await self.writable.wait()
            data = message.get("bytes") or (message.get("text") or "").encode()
            self.transport.write(ws_frame(OP_BINARY, data) if self.websocket else data)
        elif kind == "websocket.close":
            if not self.accepted:
                self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self._close(message.get("code", 1000))
        elif kind == "websocket.http.response.start":
            lines = [f"HTTP/1.1 {message['status']} Upgrade refused".encode()]
            lines += [name + b": " + value for name, value in message.get("headers", [])]
            self.transport.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]))
        elif kind == "websocket.http.response.body":
            self.transport.write(message.get("body", b""))
            if not message.get("more_body"):
                self._close()
