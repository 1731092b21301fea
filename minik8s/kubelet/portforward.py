"""The kubelet's end of ``pods/{name}/portforward``: one streamed HTTP exchange per forwarded connection.

The API server terminates the user's protocol (kubectl's SPDY, the client libraries' channel
WebSocket) and opens, for every forwarded TCP connection, a ``POST /portForward/{namespace}/{pod}?port=N``
here. The kubelet connects to ``127.0.0.1:N`` *inside the pod's network namespace*, like Kubernetes'
CRI streaming server, so a server bound to the pod's loopback is reachable too.

Wire between API server and kubelet (ours, not a Kubernetes API): plain HTTP/1.1, full duplex, so the
bytes cross this hop with no framing of their own beyond chunked encoding (no WebSocket masking, no
per-message work), over TLS or not alike:
- the request body (chunked) is the bytes for the pod; its end means the client will send nothing
  more (the pod's socket is shut down for writing, reading goes on);
- a 200 response, sent once the pod's port answered, streams the pod's bytes; its end means the pod
  closed its end. Any other status carries, as text, why forwarding could not start (connection
  refused, no such pod, bad credential).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
from fastapi import FastAPI
from starlette.routing import Route

from minik8s.errors import MiniK8sError

log = logging.getLogger("minik8s.kubelet.portforward")

PATH = "/portForward/{namespace}/{pod}"
DIAL_TIMEOUT_S = 10.0
READ_CHUNK = 256 * 1024
CLONE_NEWNET = 0x40000000


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


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
#: the kubelet's client check (minik8s.kubelet.server.ClientCheck): None, or the 401/403 refusing the peer
Check = Callable[[Scope], MiniK8sError | None]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _respond(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _pod_to_client(reader: asyncio.StreamReader, send: Send) -> None:
    while data := await reader.read(READ_CHUNK):
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _client_to_pod(receive: Receive, writer: asyncio.StreamWriter) -> None:
    """Copy the request body to the pod (its end: a half-close), then wait for the API server to leave.

    Returns once the API server is gone, so a pod that keeps its end open after our half-close is not
    left streaming to nobody.
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        data = message.get("body", b"")
        if data:
            writer.write(data)
            await writer.drain()
        if not message.get("more_body", False) and writer.can_write_eof():
            writer.write_eof()


async def forward(receive: Receive, send: Send, sandboxes: Sandboxes, namespace: str, pod: str, port: int) -> None:
    """Dial the pod's port, then relay until the pod closes its end or the API server goes away."""
    try:
        pid = await anyio.to_thread.run_sync(lambda: sandboxes.sandbox_pid(namespace, pod))
        sock = await anyio.to_thread.run_sync(lambda: dial_in_netns(pid, port))
    except (MiniK8sError, OSError) as exc:
        message = exc.message if isinstance(exc, MiniK8sError) else _dial_error(port, exc)
        log.info("port-forward refused", extra={"pod": f"{namespace}/{pod}", "port": port, "reason": message})
        await _respond(send, 404 if isinstance(exc, MiniK8sError) else 502, message)
        return
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    upstream = asyncio.ensure_future(_client_to_pod(receive, writer))
    downstream = asyncio.ensure_future(_pod_to_client(reader, send))
    try:
        # the pod closing its end, or the API server leaving, finishes the exchange (a half-close does not)
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, OSError) as exc:
        log.debug("port-forward ended: %s", exc)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        writer.close()


class PortForwardEndpoint:
    """The raw ASGI endpoint (not a FastAPI handler: it reads the body while it streams the response)."""

    def __init__(self, sandboxes: Sandboxes, check: Check) -> None:
        self.sandboxes, self.check = sandboxes, check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.check(scope)  # the API server's client certificate, or a 401/403
        if refused is not None:
            await _respond(send, refused.code, str(refused))
            return
        raw = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("port", [""])[0]
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            await _respond(send, 400, f"invalid port {raw!r}: an integer 1-65535 is required")
            return
        params = scope["path_params"]
        await forward(receive, send, self.sandboxes, params["namespace"], params["pod"], int(raw))


def register(app: FastAPI, sandboxes: Sandboxes, check: Check) -> None:
    # a Starlette Route around a plain ASGI callable: it gets the raw receive/send, body and response streaming
    app.router.routes.append(Route(PATH, PortForwardEndpoint(sandboxes, check), methods=["POST"]))
