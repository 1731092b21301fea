"""``pods/{name}/portforward``: the API server's end, as kubectl and the client libraries speak it.

Two client protocols arrive as a WebSocket upgrade of ``GET .../pods/NAME/portforward``:
- ``SPDY/3.1+portforward.k8s.io`` (kubectl >= 1.31): SPDY/3.1 tunnelled in binary WebSocket
  messages; every forwarded connection is a pair of SPDY streams (see portforward_spdy). Older
  kubectl's ``POST`` with ``Upgrade: SPDY/3.1`` arrives here looking the same (see spdy_upgrade).
- ``v4.channel.k8s.io`` / ``portforward.k8s.io`` (the ``kubernetes`` Python client and other
  libraries): ``?ports=A,B``; for the i-th port channel 2i carries data and 2i+1 errors, each
  message starts with its channel byte, and the server's first message on each channel is the
  port number (2 bytes, little endian).
Every forwarded connection becomes one streamed HTTP exchange with the kubelet of the pod's node,
which dials the port inside the pod's network namespace (minik8s.kubelet.portforward describes
that wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from minik8s import jsonc
from minik8s.api import kinds as k
from minik8s.api import printers
from minik8s.apiserver.resources import Resources
from minik8s.apiserver.streams import KubeletAccess
from minik8s.errors import BadRequest, MiniK8sError, Unavailable

log = logging.getLogger("minik8s.apiserver.portforward")

PATH = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
SPDY_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
KUBELET_PATH = "/portForward/{namespace}/{name}"
KUBELET_OPEN_TIMEOUT_S = 10.0
KUBELET_READ_LIMIT = 1024 * 1024  # the stream buffer: the kubelet's chunks are 256 KiB at most


async def deny(ws: WebSocket, err: MiniK8sError) -> None:
    """Refuse an upgrade with an HTTP status and a Kubernetes Status body (kubectl prints its message)."""
    body = Response(jsonc.dumps(err.to_status()), status_code=err.code, media_type="application/json")
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(body)
    else:
        await ws.close(code=1008, reason=err.message[:120])


@dataclass(frozen=True)
class PodTarget:
    """Where a pod's ports are reached: its kubelet, and the names errors quote."""

    namespace: str
    name: str
    uid: str
    kubelet: str  # ws://IP:PORT, or wss:// toward a kubelet that speaks TLS
    ssl: ssl.SSLContext | None = None  # TLS toward the kubelet, with the API server's client certificate

    def error(self, port: int, reason: str) -> str:
        # the wording of Kubernetes' kubelet, so users see the message they know
        return f"error forwarding port {port} to pod {self.name}, uid {self.uid}: {reason}"


def resolve(resources: Resources, namespace: str, name: str, kubelets: KubeletAccess) -> PodTarget:
    """The pod's kubelet, or the error that makes forwarding impossible (blocking: run in a thread)."""
    pod = resources.get(k.lookup("Pod"), namespace, name)
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase != "Running":
        raise BadRequest(f"unable to forward port because pod is not running. Current status={phase}")
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
    node = resources.get(k.lookup("Node"), None, node_name)
    ip = printers.node_ip(node)
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if ip == "<none>" or not port:
        raise Unavailable(f'node "{node_name}" has no kubelet endpoint')
    return PodTarget(namespace, name, pod["metadata"].get("uid", ""), kubelets.ws_url(ip, int(port)), kubelets.ssl)


class Upstream:
    """One forwarded connection's streamed HTTP exchange with the kubelet (minik8s.kubelet.portforward).

    Bytes go out as chunks of the request body and come back as chunks of the response, each chunk
    as large as the sender had ready: no per-message protocol work on either side of this hop.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._ended = False

    @classmethod
    async def open(cls, target: PodTarget, port: int) -> Upstream:
        """Start forwarding; raises with the kubelet's reason when the pod's port cannot be reached."""
        url = urllib.parse.urlsplit(target.kubelet)
        secure = url.scheme in ("https", "wss")
        host, kubelet_port = url.hostname or "", url.port or (443 if secure else 80)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, kubelet_port, limit=KUBELET_READ_LIMIT,
                                        ssl=(target.ssl or ssl.create_default_context()) if secure else None),
                KUBELET_OPEN_TIMEOUT_S)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise Unavailable(f"cannot reach the kubelet at {target.kubelet}: {exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        path = KUBELET_PATH.format(namespace=target.namespace, name=target.name)
        writer.write(f"POST {urllib.parse.quote(path)}?port={port} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n".encode())
        try:
            status, headers = await asyncio.wait_for(_response_head(reader), KUBELET_OPEN_TIMEOUT_S)
            if status != 200:
                size = int(headers.get("content-length", "0") or 0)
                reason = (await reader.readexactly(size)).decode(errors="replace").strip() if size else ""
                raise Unavailable(reason or f"the kubelet answered {status}")
            if headers.get("transfer-encoding", "").lower() != "chunked":
                raise Unavailable("the kubelet's port-forward answer is not a chunked stream")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            raise Unavailable(f"the kubelet at {target.kubelet} broke off port-forwarding: {exc!r}") from None
        except Unavailable:
            writer.close()
            raise
        return cls(reader, writer)

    async def send(self, data: bytes | memoryview) -> None:
        await self.send_parts([data])

    async def send_parts(self, parts: list[bytes | memoryview]) -> None:
        """The concatenation of ``parts`` as one chunk, written without joining them."""
        size = sum(len(p) for p in parts)
        if not size or self._writer.is_closing():
            return  # the pod side already ended: drop, as TCP would
        with contextlib.suppress(ConnectionError):
            self._writer.writelines([b"%x\r\n" % size, *parts, b"\r\n"])
            await self._writer.drain()

    async def close_write(self) -> None:
        if not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                self._writer.write(b"0\r\n\r\n")
                await self._writer.drain()

    async def recv(self) -> bytes | str | None:
        """Bytes from the pod, the error that ended forwarding, or None once the pod closed its end."""
        if self._ended:
            return None
        try:
            line = await self._reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                self._ended = True
                return None
            data = await self._reader.readexactly(size)
            await self._reader.readexactly(2)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError) as exc:
            self._ended = True
            return f"connection to the kubelet broke: {exc!r}"
        return data

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await self._writer.wait_closed()


async def _response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def serve(ws: WebSocket, resources: Resources, kubelets: KubeletAccess) -> None:
    """The WebSocket route: pick the protocol the client offered, check the pod, then run the session."""
    from minik8s.apiserver import portforward_spdy  # the SPDY machinery only when kubectl asks for it

    namespace, name = ws.path_params["namespace"], ws.path_params["name"]
    offered = list(ws.scope.get("subprotocols") or [])  # ASGI lists them (wsproto drops the header itself)
    try:
        target = await anyio.to_thread.run_sync(lambda: resolve(resources, namespace, name, kubelets))
        if SPDY_TUNNEL_PROTOCOL in offered:
            await ws.accept(subprotocol=SPDY_TUNNEL_PROTOCOL)
            await portforward_spdy.serve_tunnel(ws, target)
            return
        protocol = next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
        if offered and protocol is None:
            raise BadRequest(f"none of the offered protocols {offered} is supported; "
                             f"use one of {[SPDY_TUNNEL_PROTOCOL, *CHANNEL_PROTOCOLS]}")
        ports = parse_ports(ws.query_params.getlist("ports"))
    except MiniK8sError as exc:
        await deny(ws, exc)
        return
    await ws.accept(subprotocol=protocol)
    await ChannelSession(ws, target, ports).run()


def parse_ports(values: list[str]) -> list[int]:
    ports: list[int] = []
    for raw in ",".join(values).split(","):
        if not raw.strip():
            continue
        if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
            raise BadRequest(f"invalid port {raw!r}: ports must be integers 1-65535")
        ports.append(int(raw))
    if not ports:
        raise BadRequest("query parameter `ports` is required (e.g. ?ports=8080)")
    return ports


class ChannelSession:
    """The v4 channel protocol: one WebSocket, a data and an error channel per requested port."""

    def __init__(self, ws: WebSocket, target: PodTarget, ports: list[int]) -> None:
        self.ws, self.target, self.ports = ws, target, ports
        self.upstreams: dict[int, Upstream] = {}
        self.failed: dict[int, str] = {}

    async def _send(self, channel: int, data: bytes) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client went away: nothing to tell
            await self.ws.send_bytes(bytes([channel]) + data)

    async def _open(self, index: int) -> None:
        port = self.ports[index]
        try:
            self.upstreams[index] = await Upstream.open(self.target, port)
        except MiniK8sError as exc:
            self.failed[index] = self.target.error(port, exc.message)

    async def _pump(self, index: int, upstream: Upstream) -> None:
        """Pod -> client for one port; an error goes on the port's error channel."""
        while True:
            message = await upstream.recv()
            if message is None:
                return
            if isinstance(message, str):
                await self._send(2 * index + 1, self.target.error(self.ports[index], message).encode())
                return
            await self._send(2 * index, message)

    async def _pump_client(self) -> None:
        """Client -> pods, until the client closes the WebSocket."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if not data:
                continue
            index, payload = divmod(data[0], 2)
            if payload or index >= len(self.ports):
                continue  # clients write only to data channels; anything else is not ours to deliver
            upstream = self.upstreams.get(index)
            if upstream is not None:
                await upstream.send(memoryview(data)[1:])  # no copy of the payload

    async def run(self) -> None:
        # every port is dialled before the client's first byte is read, so none of it is dropped
        await asyncio.gather(*(self._open(i) for i in range(len(self.ports))))
        for index, port in enumerate(self.ports):
            first = port.to_bytes(2, "little")
            await self._send(2 * index, first)
            await self._send(2 * index + 1, first)
        for index, message in self.failed.items():
            await self._send(2 * index + 1, message.encode())
        pumps = [asyncio.ensure_future(self._pump(i, up)) for i, up in self.upstreams.items()]
        client = asyncio.ensure_future(self._pump_client())
        pumped: asyncio.Future[Any] = asyncio.gather(*pumps)
        try:
            waiters: list[asyncio.Future[Any]] = [client, pumped]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (client, pumped, *pumps):
                task.cancel()
            # the gather too, so its cancellation is retrieved (else asyncio logs it as never retrieved)
            await asyncio.gather(client, pumped, *pumps, return_exceptions=True)
            for upstream in self.upstreams.values():
                await upstream.close()
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.close()


async def upgrade_required(request: Any, target: Any) -> Response:
    """A plain HTTP request (no WebSocket or SPDY upgrade) to pods/NAME/portforward."""
    raise BadRequest("Upgrade request required: port-forward speaks WebSocket (v4.channel.k8s.io, "
                     "SPDY/3.1+portforward.k8s.io) or an HTTP Upgrade to SPDY/3.1")


def register(app: Any, resources: Resources, kubelets: KubeletAccess) -> None:
    async def port_forward(ws: WebSocket) -> None:
        await serve(ws, resources, kubelets)

    app.router.add_websocket_route(PATH, port_forward)
