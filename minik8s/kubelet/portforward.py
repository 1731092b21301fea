"""The kubelet's end of ``pods/{name}/portforward``: one WebSocket per forwarded connection.

The API server terminates the user's protocol (kubectl's SPDY, the client libraries' channel
WebSocket) and opens, for every forwarded TCP connection, a WebSocket to
``/portForward/{namespace}/{pod}?port=N`` here. The kubelet connects to ``127.0.0.1:N`` *inside
the pod's network namespace*, like Kubernetes' CRI streaming server, so a server bound to the
pod's loopback is reachable too.

Wire between API server and kubelet (ours, not a Kubernetes API):
- kubelet -> API server: binary messages are bytes from the pod; one text message is the error that
  ended the forwarding (connection refused, no such pod), followed by a close; a close with 1000
  means the pod closed its end.
- API server -> kubelet: binary messages are bytes for the pod; an empty binary message means the
  client will send nothing more (the pod's socket is shut down for writing, reading goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hmac
import logging
import os
import socket
import threading
from typing import Protocol

import anyio
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from minik8s.errors import MiniK8sError

log = logging.getLogger("minik8s.kubelet.portforward")

PATH = "/portForward/{namespace}/{pod}"
DIAL_TIMEOUT_S = 10.0
READ_CHUNK = 256 * 1024
CLONE_NEWNET = 0x40000000
POLICY_VIOLATION = 1008  # WebSocket close code for a refused credential


class Sandboxes(Protocol):
    def sandbox_pid(self, namespace: str, pod: str) -> int: ...


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def dial_in_netns(pid: int, port: int, timeout: float = DIAL_TIMEOUT_S) -> socket.socket:
    """A TCP connection to 127.0.0.1:port in the network namespace of process ``pid``.

    setns(2) moves only the calling thread, so it runs in a thread of its own that ends right after:
    no pooled thread is ever left in a pod's namespace. The socket keeps the namespace it was made in.
    """
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            with open(f"/proc/{pid}/ns/net", "rb") as netns:
                _setns(netns.fileno())
            result.append(socket.create_connection(("127.0.0.1", port), timeout))
        except BaseException as exc:  # handed to the caller below
            result.append(exc)

    thread = threading.Thread(target=run, name=f"portforward-dial-{pid}-{port}", daemon=True)
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _dial_error(port: int, exc: OSError) -> str:
    # Go's wording ("dial tcp4 127.0.0.1:80: connect: connection refused"), as kubectl users know it
    reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    return f"dial tcp4 127.0.0.1:{port}: connect: {reason}"


async def _pod_to_client(reader: asyncio.StreamReader, ws: WebSocket) -> None:
    while data := await reader.read(READ_CHUNK):
        await ws.send_bytes(data)


async def _client_to_pod(ws: WebSocket, writer: asyncio.StreamWriter) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            continue
        if not data:
            if writer.can_write_eof():
                writer.write_eof()
            continue
        writer.write(data)
        await writer.drain()


async def forward(ws: WebSocket, sandboxes: Sandboxes, namespace: str, pod: str, port: int) -> None:
    """Relay one accepted WebSocket to the pod's port until the pod or the API server closes."""
    try:
        pid = await anyio.to_thread.run_sync(lambda: sandboxes.sandbox_pid(namespace, pod))
        sock = await anyio.to_thread.run_sync(lambda: dial_in_netns(pid, port))
    except (MiniK8sError, OSError) as exc:
        message = exc.message if isinstance(exc, MiniK8sError) else _dial_error(port, exc)
        log.info("port-forward refused", extra={"pod": f"{namespace}/{pod}", "port": port, "reason": message})
        await ws.send_text(message)
        await ws.close()
        return
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    upstream = asyncio.ensure_future(_client_to_pod(ws, writer))
    downstream = asyncio.ensure_future(_pod_to_client(reader, ws))
    try:
        # the pod closing its end finishes the connection; the client's half-close does not (see _client_to_pod)
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        if downstream.done() and not upstream.done():
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await ws.close()
    except (WebSocketDisconnect, ConnectionError) as exc:
        log.debug("port-forward ended: %s", exc)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        writer.close()


def register(app: FastAPI, sandboxes: Sandboxes, token: str) -> None:
    @app.websocket(PATH)
    async def port_forward(ws: WebSocket, namespace: str, pod: str) -> None:
        scheme, _, given = ws.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            await ws.close(code=POLICY_VIOLATION)
            return
        raw = ws.query_params.get("port", "")
        await ws.accept()
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            await ws.send_text(f"invalid port {raw!r}: an integer 1-65535 is required")
            await ws.close()
            return
        await forward(ws, sandboxes, namespace, pod, int(raw))
