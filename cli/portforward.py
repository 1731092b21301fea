"""port-forward: local TCP ports to a pod's ports, through the API server (pods/portforward, v4 channels).

Each accepted local connection gets a WebSocket of its own to ``pods/NAME/portforward?ports=REMOTE``,
so one connection's failure (nothing listening in the pod) closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from dataclasses import dataclass
from typing import Any

import click
import websockets

from cli.common import as_dict, client, namespace_option
from minik8s import Client
from minik8s.api import kinds as k
from minik8s.client.sdk import config_path
from minik8s.errors import BadRequest, NotFound

CHANNEL_PROTOCOL = "v4.channel.k8s.io"
READ_CHUNK = 256 * 1024
MAX_MESSAGE = 4 * 1024 * 1024
WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class PortPair:
    local: int  # 0: any free port
    remote: str  # a number, or a port name resolved against the pod or the service


def parse_port_pairs(specs: tuple[str, ...]) -> list[PortPair]:
    """kubectl's forms: ``8080`` (same port locally), ``18080:8080``, ``:8080`` (any free local port)."""
    pairs = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        if not sep:
            local, remote = spec, spec
        if not remote or (local and not local.isdigit()) or (local and not 0 <= int(local) < 65536):
            raise BadRequest(f'invalid port specification "{spec}": use LOCAL:REMOTE, REMOTE or :REMOTE')
        pairs.append(PortPair(int(local) if local and local.isdigit() else 0, remote))
    return pairs


def _running_pod_for(api: Client, namespace: str, selector: dict[str, str], what: str) -> dict[str, Any]:
    if not selector:
        raise BadRequest(f"{what} has no selector: no pod to forward to")
    labels = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
    pods = [as_dict(p) for p in api.list("Pod", namespace, label_selector=labels).items]
    running = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Running"),
                     key=lambda p: p["metadata"]["name"])
    if not running:
        raise NotFound(f"no running pod found for {what} (selector {labels})")
    return running[0]


def _container_port(pod: dict[str, Any], name: str) -> int:
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    raise BadRequest(f'pod {pod["metadata"]["name"]} does not have a named port "{name}"')


def _service_target(service: dict[str, Any], pod: dict[str, Any], remote: str) -> int:
    """A service port (number or name) -> the pod port it targets, as kubectl maps it."""
    for port in (service.get("spec") or {}).get("ports") or []:
        if remote in (str(port.get("port")), port.get("name")):
            target = port.get("targetPort", port.get("port"))
            return int(target) if str(target).isdigit() else _container_port(pod, str(target))
    raise BadRequest(f'service {service["metadata"]["name"]} does not have a service port {remote}')


def resolve_target(api: Client, namespace: str, resource: str, pairs: list[PortPair]) -> tuple[str, list[int]]:
    """(pod name, remote port numbers) for ``POD``, ``pod/NAME``, ``svc/NAME`` or a workload ``KIND/NAME``."""
    kind_name, sep, name = resource.partition("/")
    info = k.lookup(kind_name if sep else "pod")
    name = name if sep else resource
    obj = as_dict(api.get(info.kind, name, namespace))
    if info.kind == "Pod":
        pod = obj
    elif info.kind == "Service":
        pod = _running_pod_for(api, namespace, (obj.get("spec") or {}).get("selector") or {}, f"service/{name}")
        return pod["metadata"]["name"], [_service_target(obj, pod, p.remote) for p in pairs]
    elif info.kind in WORKLOAD_KINDS:
        selector = (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
        pod = _running_pod_for(api, namespace, selector, f"{info.singular}/{name}")
    else:
        raise BadRequest(f"cannot port-forward to a {info.kind}: use a pod, service or workload")
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise BadRequest(f"unable to forward port because pod is not running. Current status={phase}")
    ports = [int(p.remote) if p.remote.isdigit() else _container_port(pod, p.remote) for p in pairs]
    return pod["metadata"]["name"], ports


class Forwarder:
    """Listens on the local ports; relays each connection over a WebSocket of its own."""

    def __init__(self, server: str, token: str | None, ca: str | None, namespace: str, pod: str) -> None:
        base = server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
        self.url = f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/portforward"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ssl = ssl.create_default_context(cadata=ca) if ca and base.startswith("wss") else None

    async def _relay(self, local: int, remote: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        click.echo(f"Handling connection for {local}")
        try:
            async with websockets.connect(f"{self.url}?ports={remote}", additional_headers=self.headers,
                                          subprotocols=[websockets.Subprotocol(CHANNEL_PROTOCOL)], ssl=self.ssl,
                                          compression=None, max_size=MAX_MESSAGE, ping_interval=None) as ws:
                upload = asyncio.ensure_future(self._upload(reader, ws))
                try:
                    await self._download(ws, writer, local, remote)
                finally:
                    upload.cancel()
                    await asyncio.gather(upload, return_exceptions=True)
        except (OSError, websockets.WebSocketException) as exc:
            click.echo(f"error: forwarding {local} -> {remote}: {exc}", err=True)
        finally:
            writer.close()

    @staticmethod
    async def _upload(reader: asyncio.StreamReader, ws: Any) -> None:
        while data := await reader.read(READ_CHUNK):
            await ws.send(b"\x00" + data)

    @staticmethod
    async def _download(ws: Any, writer: asyncio.StreamWriter, local: int, remote: int) -> None:
        seen = set()
        async for message in ws:
            if not isinstance(message, bytes) or not message:
                continue
            channel, data = message[0], message[1:]
            if channel not in seen:  # each channel's first message is the port number
                seen.add(channel)
                continue
            if channel == 1:
                click.echo(f"error: an error occurred forwarding {local} -> {remote}: {data.decode()}", err=True)
                return
            writer.write(data)
            await writer.drain()

    async def serve(self, address: str, pairs: list[tuple[int, int]]) -> None:
        servers = []
        for local, remote in pairs:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             local: int = local, remote: int = remote) -> None:
                await self._relay(local, remote, reader, writer)

            server = await asyncio.start_server(handle, address, local)
            bound = server.sockets[0].getsockname()[1]
            click.echo(f"Forwarding from {address}:{bound} -> {remote}")
            servers.append(server)
        await asyncio.gather(*(s.serve_forever() for s in servers))


@click.command(name="port-forward")
@click.argument("resource")
@click.argument("ports", nargs=-1, required=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Local address to listen on.")
@namespace_option
def port_forward(resource: str, ports: tuple[str, ...], address: str, namespace: str | None) -> None:
    """Forward local ports to a pod (or a pod of a service or workload) until Ctrl-C.

    \b
    Examples:
      minik8s port-forward web-0 8080
      minik8s port-forward svc/web 18080:80
      minik8s port-forward deploy/web :8080 --address 0.0.0.0
    """
    ns = namespace or "default"
    pairs = parse_port_pairs(ports)
    api = client()
    pod, remotes = resolve_target(api, ns, resource, pairs)
    cfg = json.loads(config_path().read_text())
    forwarder = Forwarder(api.server, api.token, cfg.get("ca"), ns, pod)
    try:
        asyncio.run(forwarder.serve(address, [(p.local, r) for p, r in zip(pairs, remotes, strict=True)]))
    except OSError as exc:
        raise BadRequest(f"unable to listen on {address}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.flush()


COMMANDS = [port_forward]
