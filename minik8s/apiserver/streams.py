"""Pod exec and attach over WebSocket: the API server's half, a frame-for-frame relay to the kubelet.

A client (kubectl 1.30+, the Python client, `minik8s exec -it`) upgrades
`GET /api/v1/namespaces/NS/pods/NAME/exec?command=...` to a WebSocket speaking
`v5.channel.k8s.io` or `v4.channel.k8s.io`. This end checks the pod and container (errors are
plain HTTP Status answers before the upgrade, as kube-apiserver gives them), opens the same
subprotocol to the pod's kubelet (`minik8s.kubelet.streams`) and copies messages both ways
until either side closes. Port-forward can reuse `kubelet_endpoint` and `relay`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from minik8s import jsonc
from minik8s.api import kinds, printers
from minik8s.errors import BadRequest, MiniK8sError, Unavailable
from minik8s.streaming import channels as ch

log = logging.getLogger("minik8s.apiserver.streams")

KUBELET_CONNECT_TIMEOUT_S = 10.0
STREAM_SUBRESOURCES = ("exec", "attach")


@dataclass(frozen=True)
class KubeletAccess:
    """How the API server reaches kubelets: HTTPS/WSS verified against the cluster CA, presenting its own
    client certificate (`ssl`); without one (tests of other parts), plain HTTP with no credential, which
    a kubelet refuses."""

    ssl: ssl.SSLContext | None = None

    def http_url(self, host: str, port: int) -> str:
        return f"{'https' if self.ssl else 'http'}://{host}:{port}"

    def ws_url(self, host: str, port: int) -> str:
        return f"{'wss' if self.ssl else 'ws'}://{host}:{port}"


@dataclass(frozen=True)
class KubeletEndpoint:
    node: str
    host: str
    port: int
    container: str


def kubelet_endpoint(resources: Any, namespace: str, name: str, container: str | None) -> KubeletEndpoint:
    """Where the pod's container is served, with kube-apiserver's errors (blocking: etcd reads)."""
    pod = resources.get(kinds.lookup("Pod"), namespace, name)
    node_name = pod["spec"].get("nodeName")
    if not node_name:
        raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
    node = resources.get(kinds.lookup("Node"), None, node_name)
    status = node.get("status") or {}
    ip = printers.node_ip(node)
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if ip == "<none>" or not port:
        raise Unavailable(f'node "{node_name}" has no kubelet endpoint')
    containers = [c["name"] for c in pod["spec"]["containers"]]
    chosen = container or (containers[0] if len(containers) == 1 else None)
    inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
    if chosen is None:
        also = f" or one of the init containers: {inits}" if inits else ""
        raise BadRequest(f"a container name must be specified for pod {name}, choose one of: {containers}{also}")
    if chosen not in containers and chosen not in inits:
        raise BadRequest(f"container {chosen} is not valid for pod {name}")
    return KubeletEndpoint(node_name, ip, int(port), chosen)


async def deny(ws: WebSocket, err: MiniK8sError) -> None:
    """Answer the upgrade request with a plain HTTP Status, as a failed upgrade reads to kubectl."""
    await ws.send_denial_response(Response(jsonc.dumps(err.to_status()), err.code, media_type="application/json"))


async def relay(client: WebSocket, upstream: ClientConnection) -> None:
    """Copy messages both ways until one side closes; then close the other."""

    async def downstream() -> None:
        try:
            async for message in upstream:
                await client.send_bytes(message if isinstance(message, bytes) else message.encode())
        except ConnectionClosed:
            pass

    async def upstream_pump() -> None:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            await upstream.send(data if data is not None else message.get("text") or "")

    tasks = {asyncio.create_task(downstream()), asyncio.create_task(upstream_pump())}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        if task.exception() is not None and not isinstance(task.exception(), ConnectionClosed):
            log.warning("stream relay failed: %s", task.exception())
    await upstream.close()
    try:
        await client.close()
    except (RuntimeError, WebSocketDisconnect):  # already closed, or gone, on the client's side
        pass


class PodStreams:
    """The WebSocket routes for `pods/{name}/exec` and `pods/{name}/attach`."""

    def __init__(self, resources: Any, kubelets: KubeletAccess) -> None:
        self.resources, self.kubelets = resources, kubelets

    def register(self, app: FastAPI) -> None:
        for sub in STREAM_SUBRESOURCES:
            app.router.add_websocket_route(f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/{sub}", self.serve)

    async def serve(self, ws: WebSocket) -> None:
        ns, name = ws.path_params["namespace"], ws.path_params["name"]
        subresource = ws.url.path.rstrip("/").rsplit("/", 1)[-1]
        protocol = ch.choose_protocol(ch.offered_protocols(ws.headers.get("sec-websocket-protocol")))
        try:
            if protocol is None:
                raise BadRequest(f"{subresource} needs a WebSocket subprotocol, one of {list(ch.SERVER_PROTOCOLS)}")
            target = await anyio.to_thread.run_sync(
                kubelet_endpoint, self.resources, ns, name, ws.query_params.get("container"))
            upstream = await self._connect(target, subresource, ns, name, protocol, ws.url.query)
        except MiniK8sError as exc:
            await deny(ws, exc)
            return
        await ws.accept(subprotocol=protocol)
        log.debug("stream opened", extra={"pod": f"{ns}/{name}", "subresource": subresource, "node": target.node})
        await relay(ws, upstream)

    async def _connect(self, target: KubeletEndpoint, subresource: str, ns: str, name: str, protocol: str,
                       query: str) -> ClientConnection:
        base = self.kubelets.ws_url(target.host, target.port)
        url = f"{base}/{subresource}/{ns}/{name}/{target.container}?{query}"
        try:
            return await connect(url, subprotocols=[Subprotocol(protocol)], ssl=self.kubelets.ssl,
                                 compression=None, max_size=None, open_timeout=KUBELET_CONNECT_TIMEOUT_S,
                                 ping_interval=None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise Unavailable(f'cannot reach the kubelet on node "{target.node}": {exc}') from None
