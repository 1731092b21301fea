"""The gateway controller: DNS + Ingress + Service + Endpoints informers -> nginx.conf, served by long poll.

Ray Serve `long_poll` style: the gateway pods' sidecars hold `GET /config?version=V` open; it
answers at once when the current config's version differs from V (so a sidecar that starts, or
a controller that restarts, converges immediately) and otherwise when the config next changes,
or with 304 after `timeout` seconds. The version is the config's content hash, so it survives
controller restarts. The same plan gives each DNS object's `status.paths` and each Ingress's
`status.loadBalancer` (the gateway Service's ClusterIP while the Ingress has a route served),
written only on change, and a Warning event `HostPathConflict` to whoever lost a host + path.
Ingresses of another IngressClass (controller other than `minik8s.io/gateway`) are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from minik8s.api import networking as net
from minik8s.apiserver.server import ServerThread
from minik8s.client import Client, Informer
from minik8s.client.events import EventRecorder
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import NotFound
from minik8s.gateway import config as gw
from minik8s.gateway import manifests
from minik8s.gateway.reporting import CONFLICT_REASON, ConflictLog, dns_losses, ingress_status, lb_ips

log = logging.getLogger("minik8s.gateway")

CONFIG_KEY = "\x00config"  # not a namespace/name, so it never collides with a DNS key
INGRESS_PREFIX = "ingress:"  # Ingress keys; DNS keys are plain namespace/name
VERSION_HEADER = "X-Gateway-Version"
DEFAULT_PORT = 10280


@dataclass
class GatewayConfig:
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # the control plane adds its underlay IP
    port: int = DEFAULT_PORT
    workers: int = 2
    resync_s: float = 30.0
    long_poll_default_s: float = 30.0
    long_poll_max_s: float = 60.0
    render: gw.RenderOptions = field(default_factory=gw.RenderOptions)


class ConfigStore:
    """The latest rendered config and its version; async waiters are woken from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.text = ""
        self.version = ""
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def publish(self, text: str) -> bool:
        version = gw.version_of(text)
        with self._lock:
            if version == self.version:
                return False
            self.text, self.version = text, version
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed: nobody is waiting there any more
                log.debug("long-poll waiter's loop is closed")
        return True

    def snapshot(self) -> tuple[str, str]:
        with self._lock:
            return self.text, self.version

    async def wait_change(self, version: str, timeout: float) -> tuple[str, str] | None:
        """The config once its version is not `version` (and something was rendered); None on timeout."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self.version and self.version != version:
                return self.text, self.version
            self._waiters.add(waiter)
        try:
            while True:
                await asyncio.wait_for(waiter[1].wait(), timeout)
                text, current = self.snapshot()
                if current != version:
                    return text, current
                waiter[1].clear()
        except TimeoutError:
            return None
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def config_app(store: ConfigStore, cfg: GatewayConfig) -> Starlette:
    async def get_config(request: Request) -> Response:
        try:
            timeout = float(request.query_params.get("timeout", cfg.long_poll_default_s))
        except ValueError:
            return PlainTextResponse("timeout must be a number of seconds\n", status_code=400)
        timeout = max(0.0, min(timeout, cfg.long_poll_max_s))
        got = await store.wait_change(request.query_params.get("version", ""), timeout)
        if got is None:
            return Response(status_code=304, headers={VERSION_HEADER: store.snapshot()[1]})
        text, version = got
        return PlainTextResponse(text, headers={VERSION_HEADER: version})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"version": store.snapshot()[1]})

    return Starlette(routes=[Route("/config", get_config), Route("/healthz", healthz)])


def _wire(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class GatewayController(QueueWorkers):
    name = "gateway"

    def __init__(self, client: Client, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.store = ConfigStore()
        self.events = EventRecorder(client, "gateway-controller")
        self.conflicts = ConflictLog()
        resync = self.config.resync_s
        self.dnses = Informer(client, "DNS", resync_seconds=resync)
        self.ingresses = Informer(client, "Ingress", resync_seconds=resync)
        self.classes = Informer(client, "IngressClass", resync_seconds=resync)
        self.services = Informer(client, "Service", resync_seconds=resync)
        self.endpoints = Informer(client, "Endpoints", resync_seconds=resync)
        self.informers = (self.dnses, self.ingresses, self.classes, self.services, self.endpoints)
        self.dnses.add_handler(self._on_dns, lambda _old, new: self._on_dns(new), self._on_dns)
        self.ingresses.add_handler(self._on_ingress, lambda _old, new: self._on_ingress(new), self._on_ingress)
        for inf in (self.classes, self.services, self.endpoints):
            inf.add_handler(self._on_other, lambda _old, new: self._on_other(new), self._on_other)
        self._plan_lock = threading.Lock()
        self._plan: gw.Plan | None = None  # the last plan CONFIG_KEY rendered; object syncs report from it
        self.server = ServerThread(config_app(self.store, self.config), self.config.hosts, self.config.port,
                                   name="gateway-config")

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, serve: bool = True) -> None:
        for inf in self.informers:
            inf.start()
        for inf in self.informers:
            inf.wait_synced()
        self.queue.add(CONFIG_KEY)
        self.run_workers()
        if serve:
            self.server.start()
        log.info("gateway controller started", extra={"hosts": self.config.hosts, "port": self.config.port})

    def stop(self) -> None:
        self.shutdown()
        for inf in self.informers:
            inf.stop()
        if self.server.thread is not None:
            self.server.stop()

    # --- events -------------------------------------------------------------------------------
    def _on_dns(self, obj: Any) -> None:
        self.queue.add(f"{obj.metadata.namespace}/{obj.metadata.name}")
        self.queue.add(CONFIG_KEY)

    def _on_ingress(self, obj: Any) -> None:
        self.queue.add(f"{INGRESS_PREFIX}{obj.metadata.namespace}/{obj.metadata.name}")
        self.queue.add(CONFIG_KEY)

    def _on_other(self, _obj: Any) -> None:
        self.queue.add(CONFIG_KEY)  # the config sync queues every object whose report changed

    # --- sync ---------------------------------------------------------------------------------
    def gateway_ip(self) -> str | None:
        svc = self.services.get(f"{manifests.NAMESPACE}/{manifests.NAME}")
        ip = svc.spec.clusterIP if svc is not None else None
        return ip if ip and ip != "None" else None

    def served_ingresses(self) -> list[dict[str, Any]]:
        classes = [_wire(c) for c in self.classes.list()]
        return [w for w in (_wire(i) for i in self.ingresses.list()) if net.served_by(w, classes)]

    def current_plan(self) -> gw.Plan:
        backends = {}
        for svc in self.services.list():
            ns, name = svc.metadata.namespace, svc.metadata.name
            ep = self.endpoints.get(f"{ns}/{name}")
            backends[(ns, name)] = gw.backend_of(_wire(svc), _wire(ep) if ep is not None else None)
        return gw.plan([_wire(d) for d in self.dnses.list()], backends, self.served_ingresses())

    def _changed_keys(self, old: gw.Plan | None, new: gw.Plan) -> set[str]:
        """The objects whose report differs between two plans (all of them after a start)."""
        keys = set()
        for ref in set(new.statuses) | set(old.statuses if old else {}):
            if old is None or old.statuses.get(ref) != new.statuses.get(ref):
                keys.add(f"{ref[0]}/{ref[1]}")
        for ref in set(new.ingresses) | set(old.ingresses if old else {}):
            if old is None or old.ingresses.get(ref) != new.ingresses.get(ref):
                keys.add(f"{INGRESS_PREFIX}{ref[0]}/{ref[1]}")
        if old is None:
            keys |= {f"{INGRESS_PREFIX}{i.metadata.namespace}/{i.metadata.name}" for i in self.ingresses.list()}
        return keys

    def sync(self, key: str) -> None:
        if key == CONFIG_KEY:
            plan = self.current_plan()
            with self._plan_lock:
                old, self._plan = self._plan, plan
            if self.store.publish(gw.render_plan(plan, self.config.render)):
                log.info("gateway config changed", extra={"version": self.store.version,
                                                          "hosts": len(plan.servers)})
            for changed in self._changed_keys(old, plan):
                self.queue.add(changed)
            return
        with self._plan_lock:
            latest = self._plan
        if latest is None:  # not rendered yet: the first config sync queues every object
            return
        if key.startswith(INGRESS_PREFIX):
            self._sync_ingress(key[len(INGRESS_PREFIX):], latest)
        else:
            self._sync_dns(key, latest)

    def _sync_dns(self, key: str, plan: gw.Plan) -> None:
        cached = self.dnses.get(key)
        if cached is None:
            self.conflicts.forget(f"DNS {key}")
            return
        ns, name = key.split("/", 1)
        for message in self.conflicts.new_messages(f"DNS {key}", dns_losses(plan, ns, name)):
            self.events.record(cached, "Warning", CONFLICT_REASON, message)
        want = [s.to_dict() for s in plan.statuses.get((ns, name), [])]
        have = _wire(cached).get("status", {}).get("paths") or []
        if have == want:
            return
        obj = _wire(cached)
        obj["status"] = {**(obj.get("status") or {}), "paths": want}
        try:
            self.client.update_status(obj)
        except NotFound:  # deleted meanwhile: nothing to report on
            return

    def _sync_ingress(self, key: str, plan: gw.Plan) -> None:
        cached = self.ingresses.get(key)
        if cached is None:
            self.conflicts.forget(f"Ingress {key}")
            return
        ns, name = key.split("/", 1)
        obj = _wire(cached)
        report = plan.ingresses.get((ns, name))
        gateway_ip = self.gateway_ip()
        if report is None:  # not ours (another class): only take back an address we gave it
            if not gateway_ip or lb_ips(obj) != [gateway_ip]:
                return
            want: dict[str, Any] = {}
        else:
            for message in self.conflicts.new_messages(f"Ingress {key}", report.lost):
                self.events.record(cached, "Warning", CONFLICT_REASON, message)
            want = ingress_status(report, gateway_ip)
        if ((obj.get("status") or {}).get("loadBalancer") or {}) == want:
            return
        obj["status"] = {**(obj.get("status") or {}), "loadBalancer": want}
        try:
            self.client.update_status(obj)
        except NotFound:
            return
