"""kubectl's port-forward: a SPDY/3.1 session, tunnelled in binary WebSocket messages.

kubectl (client-go's portforward package) opens, for each accepted local connection, two streams
with the headers ``streamtype: error|data``, ``port: N`` and ``requestid: R``: the error stream
first (it half-closes it at once), then the data stream. Like Kubernetes' kubelet, the server
replies to every SYN_STREAM, pairs the two by requestid, forwards the data stream's bytes to the
pod's port and back, writes a failure as text on the error stream, and ends both with FIN once the
pod closes its end. kubectl waits for that FIN on the error stream before it forgets a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

from minik8s.apiserver import spdy
from minik8s.apiserver.portforward import PodTarget, Upstream
from minik8s.apiserver.spdy_upgrade import RAW_EXTENSION
from minik8s.errors import MiniK8sError

log = logging.getLogger("minik8s.apiserver.portforward")

UPLOAD_QUEUE_FRAMES = 64  # client -> pod frames buffered per connection before the session reader waits
UPLOAD_BATCH_BYTES = 1024 * 1024  # at most this much of them sent to the kubelet as one message
Send = Callable[[bytes], Awaitable[None]]
SendParts = Callable[[list[bytes | memoryview]], Awaitable[None]]
Chunk = bytes | memoryview


@dataclass
class Pair:
    """One forwarded connection: its two streams and the task that runs it."""

    request_id: str
    port: int = 0
    error_id: int = 0
    data_id: int = 0
    uploads: asyncio.Queue[Chunk | None] = field(default_factory=lambda: asyncio.Queue(UPLOAD_QUEUE_FRAMES))
    task: asyncio.Task[None] | None = None
    done: bool = False  # the pod side ended: client bytes for it are dropped, as a closed socket would


class SpdySession:
    """The server side of one SPDY connection; ``feed`` takes the client's bytes as they arrive."""

    def __init__(self, send: Send, target: PodTarget, send_parts: SendParts | None = None) -> None:
        self.send, self.target = send, target
        self.send_parts = send_parts  # when the connection offers it: data frames go out without a join
        self.reader = spdy.FrameReader()
        self.codec = spdy.HeaderCodec()
        self.pairs: dict[str, Pair] = {}
        self.by_stream: dict[int, Pair] = {}
        self.last_stream = 0
        self.gone = False  # GOAWAY received

    async def feed(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            if isinstance(frame, spdy.DataFrame):
                await self._on_data(frame)
            else:
                await self._on_control(frame)

    async def _on_control(self, frame: spdy.ControlFrame) -> None:
        if frame.type == spdy.SYN_STREAM:
            stream_id, headers = spdy.parse_syn_stream(self.codec, frame)
            await self._on_syn_stream(stream_id, headers, frame.fin)
        elif frame.type == spdy.RST_STREAM:
            pair = self.by_stream.get(frame.stream_id())
            if pair is not None:
                self._forget(pair)
        elif frame.type == spdy.PING:
            await self.send(spdy.ping(frame.word(0)))  # answer with the same id, as the spec asks
        elif frame.type == spdy.GOAWAY:
            self.gone = True
        elif frame.type == spdy.HEADERS:
            self.codec.decode(frame.payload[4:])  # nothing to act on, but the zlib stream must advance
        # SETTINGS, WINDOW_UPDATE: spdystream does no flow control, and neither do we

    async def _on_syn_stream(self, stream_id: int, headers: spdy.Headers, fin: bool) -> None:
        self.last_stream = max(self.last_stream, stream_id)
        kind = (headers.get("streamtype") or [""])[0]
        port_text = (headers.get("port") or [""])[0]
        request_id = (headers.get("requestid") or [""])[0]
        if kind not in ("error", "data") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            await self.send(spdy.rst_stream(stream_id, spdy.PROTOCOL_ERROR))
            log.info("refused stream", extra={"streamtype": kind, "port": port_text})
            return
        if not request_id:  # kubectl before 1.6 sent none: its data stream followed its error stream
            request_id = str(stream_id if kind == "error" else stream_id - 2)
        await self.send(spdy.syn_reply(self.codec, stream_id, {}))
        pair = self.pairs.setdefault(request_id, Pair(request_id))
        pair.port = int(port_text)
        if kind == "error":
            pair.error_id = stream_id
        else:
            pair.data_id = stream_id
            if fin:
                pair.uploads.put_nowait(None)
        self.by_stream[stream_id] = pair
        if pair.error_id and pair.data_id and pair.task is None:
            pair.task = asyncio.ensure_future(self._run(pair))

    async def _on_data(self, frame: spdy.DataFrame) -> None:
        pair = self.by_stream.get(frame.stream_id)
        if pair is None or frame.stream_id != pair.data_id or pair.task is None or pair.done:
            return  # a stream already forgotten, or bytes on an error stream: nothing reads them
        if frame.data:
            await pair.uploads.put(frame.data)
        if frame.fin:
            await pair.uploads.put(None)

    async def _run(self, pair: Pair) -> None:
        try:
            await self._forward(pair)
        except (WebSocketDisconnect, RuntimeError, ConnectionError) as exc:  # the client left mid-copy
            log.debug("port-forward connection ended: %s", exc)
        finally:
            # a session reader waiting to queue more of this connection's bytes must not wait forever
            pair.done = True
            while not pair.uploads.empty():
                pair.uploads.get_nowait()

    async def _forward(self, pair: Pair) -> None:
        try:
            upstream = await Upstream.open(self.target, pair.port)
        except MiniK8sError as exc:
            await self._finish(pair, self.target.error(pair.port, exc.message))
            return
        upload = asyncio.ensure_future(self._upload(pair, upstream))
        try:
            while True:
                message = await upstream.recv()
                if message is None:
                    await self._finish(pair, "")
                    return
                if isinstance(message, str):
                    await self._finish(pair, self.target.error(pair.port, message))
                    return
                await self._send_data(pair.data_id, message)
        finally:
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            await upstream.close()

    async def _send_data(self, stream_id: int, data: bytes) -> None:
        if self.send_parts is not None and len(data) <= spdy.MAX_DATA_LENGTH:
            await self.send_parts([spdy.data_header(stream_id, len(data)), data])
        else:
            await self.send(spdy.data_frames(stream_id, data))

    @staticmethod
    async def _upload(pair: Pair, upstream: Upstream) -> None:
        ended = False
        while not ended:
            data = await pair.uploads.get()
            if data is None:
                break
            # kubectl writes 32 KiB frames: what has piled up goes to the kubelet as one chunk, unjoined
            parts, size = [data], len(data)
            while not pair.uploads.empty() and size < UPLOAD_BATCH_BYTES:
                more = pair.uploads.get_nowait()
                if more is None:
                    ended = True
                    break
                parts.append(more)
                size += len(more)
            await upstream.send_parts(parts)
        await upstream.close_write()

    async def _finish(self, pair: Pair, error: str) -> None:
        """End both streams (FIN), the error stream carrying the reason when there is one."""
        await self.send(spdy.data_frames(pair.data_id, b"", fin=True))
        await self.send(spdy.data_frames(pair.error_id, error.encode(), fin=True))
        self._forget(pair, cancel=False)

    def _forget(self, pair: Pair, cancel: bool = True) -> None:
        self.pairs.pop(pair.request_id, None)
        for stream_id in (pair.error_id, pair.data_id):
            self.by_stream.pop(stream_id, None)
        if cancel and pair.task is not None:
            pair.task.cancel()

    async def close(self) -> None:
        tasks = [p.task for p in self.pairs.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pairs.clear()
        self.by_stream.clear()


async def serve_tunnel(ws: WebSocket, target: PodTarget) -> None:
    """Run a SPDY session over an accepted WebSocket until the client leaves."""

    async def send(frame: bytes) -> None:
        await ws.send_bytes(frame)

    raw = (ws.scope.get("extensions") or {}).get(RAW_EXTENSION) or {}
    session = SpdySession(send, target, raw.get("send_parts"))
    try:
        while not session.gone:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data:
                await session.feed(data)
    except spdy.ProtocolError as exc:
        log.warning("port-forward: bad SPDY from the client: %s", exc)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await send(spdy.goaway(session.last_stream, 1))
    except (WebSocketDisconnect, RuntimeError) as exc:
        log.debug("port-forward client left: %s", exc)
    finally:
        await session.close()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await ws.close()
