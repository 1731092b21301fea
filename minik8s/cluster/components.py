"""Every component the cluster runs, declared once: name, scope, factory and health probe.

`up` and `join` start one Ray actor per component (control-plane components once, on the
head; node components once per node, named `<name>-<node>`); the actor builds its component
with the factory and answers health checks with the probe plus the process's watchdog
(:mod:`minik8s.health`); `minik8s status` lists exactly these. Nothing here imports Ray, and
a factory imports its component only when it runs (so reading the registry is cheap).

A factory gets the component's settings (a JSON-able dict that :mod:`minik8s.cluster.bootstrap`
builds from the cluster config and the join reply) and returns the running component; the probe
gets that object back. A `health` entry in the settings (HealthSettings) sets when the component
counts as stuck and when its actor exits so that Ray restarts it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from minik8s.health import MIN_IDLE_S, STUCK_AFTER_S, WATCHDOG

Scope = Literal["control-plane", "node"]
CONTROL_PLANE: Scope = "control-plane"
NODE: Scope = "node"
#: An actor unhealthy this long (its loops stuck) exits so that Ray restarts it.
RESTART_AFTER_S = 180.0
#: How often the actor's own supervisor checks it.
SELF_CHECK_S = 10.0
#: The key of a component's settings that holds its HealthSettings (absent: the defaults above).
HEALTH_KEY = "health"


@dataclass(frozen=True)
class Component:
    name: str
    scope: Scope
    factory: Callable[[dict[str, Any]], Any]
    """Builds and starts the component in this process from its settings; returns the running object."""
    probe: Callable[[Any], bool]
    """Whether the running object's threads and servers are up (the watchdog adds whether they progress)."""
    facts: Callable[[Any], dict[str, Any]] = field(default=lambda _obj: {})
    """Extra fields for the health answer (e.g. the DNS server's query count)."""
    bootstrap: bool = False
    """Started, and healthy, before the other components (the others are clients of it)."""

    def actor_name(self, node: str | None = None) -> str:
        if self.scope == NODE:
            if not node:
                raise ValueError(f"{self.name} runs on a node: give the node's name")
            return f"{self.name}-{node}"
        return self.name


def health(component: Component, running: Any) -> dict[str, Any]:
    """The health answer: up (probe) and making progress (watchdog), with the process id."""
    verdict = WATCHDOG.verdict()
    up = component.probe(running)
    problems = ([] if up else ["not running"]) + verdict.problems
    return {"healthy": up and verdict.healthy, "detail": "; ".join(problems), "pid": os.getpid(),
            **component.facts(running)}


@dataclass(frozen=True)
class HealthSettings:
    """When a component counts as stuck and when its actor gives up on it, from the `health` entry of its
    settings: a cluster whose components take short steps may restart a stuck one sooner."""

    stuck_after_s: float = STUCK_AFTER_S
    """One step of a loop running this long is a stuck loop (minik8s.health)."""
    min_idle_s: float = MIN_IDLE_S
    """A periodic loop silent this long (and for several of its periods) is stuck."""
    restart_after_s: float = RESTART_AFTER_S
    """Unhealthy this long without a healthy answer: the actor exits and Ray restarts it."""
    self_check_s: float = SELF_CHECK_S
    """How often the actor asks itself."""

    @classmethod
    def of(cls, settings: dict[str, Any]) -> HealthSettings:
        given = settings.get(HEALTH_KEY) or {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"{HEALTH_KEY}: unknown setting {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        limits = cls(**{k: float(v) for k, v in given.items()})
        if min(limits.stuck_after_s, limits.min_idle_s, limits.restart_after_s, limits.self_check_s) <= 0:
            raise ValueError(f"{HEALTH_KEY}: every threshold must be a positive number of seconds, got {given}")
        return limits

    def apply(self) -> None:
        """Judge this process's loops (the watchdog) by these thresholds."""
        WATCHDOG.configure(self.stuck_after_s, self.min_idle_s)


class StuckTimer:
    """Decides when an actor that keeps failing its own health check should exit (Ray then restarts it)."""

    def __init__(self, restart_after_s: float = RESTART_AFTER_S) -> None:
        self.restart_after_s = restart_after_s
        self.bad_since: float | None = None

    def observe(self, healthy: bool, now: float) -> bool:
        """True once the component has been unhealthy, without a healthy answer, for `restart_after_s`."""
        if healthy:
            self.bad_since = None
            return False
        if self.bad_since is None:
            self.bad_since = now
        return now - self.bad_since >= self.restart_after_s


# --- factories: each imports its component when it runs ------------------------------------

@dataclass
class Threaded:
    """A component whose main loop runs in one thread of this process."""

    obj: Any
    thread: threading.Thread

    def alive(self) -> bool:
        return self.thread.is_alive()


def _client(settings: dict[str, Any]) -> Any:
    from minik8s.client import Client

    return Client(settings["server"], settings.get("token"), ca=settings["ca"], cert=settings.get("cert"),
                  key=settings.get("key"))


def _in_thread(obj: Any, target: Callable[[], None], name: str) -> Threaded:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return Threaded(obj, thread)


def _netlink_ready_asyncio() -> None:
    """Ray workers make uvloop the asyncio policy whenever it is installed, and uvloop cannot open
    pyroute2's AF_NETLINK datagram sockets ("invalid family 16"): use the standard loops here."""
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


def _apiserver(settings: dict[str, Any]) -> Any:
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    cfg = ApiServerConfig(**settings["config"])
    server = ServerThread(ApiServer(cfg).app, cfg.hosts, cfg.port, name="apiserver",
                          tls_cert=cfg.tls_cert, tls_key=cfg.tls_key, client_ca=cfg.ca_cert)
    server.start()
    return server


def _scheduler(settings: dict[str, Any]) -> Any:
    from minik8s.scheduler.loop import Scheduler

    scheduler = Scheduler(_client(settings))
    scheduler.start()
    return scheduler


def _scheduler_up(scheduler: Any) -> bool:
    thread = scheduler._thread
    return bool(thread and thread.is_alive()) and all(inf.alive() for inf in
                                                      (scheduler.pods, scheduler.nodes, scheduler.namespaces))


def _controller_manager(settings: dict[str, Any]) -> Any:
    from minik8s.controllers.manager import ControllerManager, ControllerManagerConfig
    from minik8s.controllers.nodelifecycle import NodeLifecycleConfig
    from minik8s.controllers.rootcacert import RootCACertConfig

    config = ControllerManagerConfig(node_lifecycle=NodeLifecycleConfig(**settings["node_lifecycle"]),
                                     root_ca=RootCACertConfig(root_ca=settings.get("ca")))
    manager = ControllerManager(_client(settings), config)
    manager.start()
    return manager


def _gateway(settings: dict[str, Any]) -> Any:
    from minik8s.gateway.controller import GatewayConfig, GatewayController
    from minik8s.gateway.manifests import ensure_gateway_when_ready

    client = _client(settings)
    gateway = settings["gateway"]
    controller = GatewayController(client, GatewayConfig(hosts=gateway["hosts"], port=gateway["port"]))
    controller.server.start()  # serve at once (the last config is kept by the pods meanwhile)
    threading.Thread(target=ensure_gateway_when_ready, args=(client, gateway["config_url"]),
                     name="gateway-ensure", daemon=True).start()
    return _in_thread(controller, lambda: controller.start(serve=False), "gateway")


def _gateway_up(running: Threaded) -> bool:
    """Serving, and its informers run (the starting thread ends once they have synced)."""
    controller = running.obj
    informers = (controller.dnses, controller.services, controller.endpoints)
    return bool(controller.server.alive()) and (running.alive() or all(inf.alive() for inf in informers))


def _dns(settings: dict[str, Any]) -> Any:
    from minik8s.dns import ClusterDns, DnsConfig

    dns = ClusterDns(_client(settings), DnsConfig(**settings["dns"]))
    dns.start()
    return dns


def _kubelet(settings: dict[str, Any]) -> Any:
    from minik8s.kubelet.kubelet import Kubelet, KubeletConfig

    config = settings["kubelet"]
    # the NetworkPolicy agent in the kubelet has its own identity (absent from an older join reply: no agent)
    policy = _client(settings["netpol"]) if settings.get("netpol") else None
    kubelet = Kubelet(KubeletConfig(**{**config, "pods_dir": Path(config["pods_dir"])}), _client(settings),
                      policy_client=policy)
    return _in_thread(kubelet, kubelet.run, "kubelet")


def _network(settings: dict[str, Any]) -> Any:
    from minik8s.network.agent import NetworkAgent, NetworkAgentConfig
    from minik8s.network.vxlan import VxlanConfig

    _netlink_ready_asyncio()
    node = settings["node"]
    # the overlay rides on the node's underlay device: eth0 in a netns node, the NIC in host mode
    config = NetworkAgentConfig(vxlan=VxlanConfig(underlay_dev=node.get("interface") or "eth0"))
    agent = NetworkAgent(_client(settings), node["name"], node["ip"], node["pod_cidr"], config=config)
    return _in_thread(agent, agent.run, "network-agent")


def _proxy(settings: dict[str, Any]) -> Any:
    from minik8s.proxy.proxy import Proxy

    _netlink_ready_asyncio()
    node = settings["node"]
    proxy = Proxy(_client(settings), node["name"], node["ip"])
    return _in_thread(proxy, proxy.run, "proxy")


COMPONENTS: tuple[Component, ...] = (
    Component("apiserver", CONTROL_PLANE, _apiserver, lambda server: bool(server.alive()), bootstrap=True),
    Component("scheduler", CONTROL_PLANE, _scheduler, _scheduler_up),
    Component("controller-manager", CONTROL_PLANE, _controller_manager,
              lambda manager: all(inf.alive() for inf in manager.informers.informers())),
    Component("gateway", CONTROL_PLANE, _gateway, _gateway_up,
              facts=lambda running: {"version": running.obj.store.version}),
    Component("dns", CONTROL_PLANE, _dns, lambda dns: bool(dns.alive()),
              facts=lambda dns: {"queries": dns.server.queries}),
    Component("kubelet", NODE, _kubelet, Threaded.alive),
    Component("network", NODE, _network, Threaded.alive),
    Component("proxy", NODE, _proxy, Threaded.alive),
)
_BY_NAME = {c.name: c for c in COMPONENTS}


def get(name: str) -> Component:
    return _BY_NAME[name]


def control_plane() -> list[Component]:
    return [c for c in COMPONENTS if c.scope == CONTROL_PLANE]


def node_components() -> list[Component]:
    return [c for c in COMPONENTS if c.scope == NODE]


def node_actor_names(node: str) -> list[str]:
    return [c.actor_name(node) for c in node_components()]


def actor_names(nodes: list[str]) -> list[str]:
    """Every actor a cluster with these nodes runs: the control plane's, then each node's."""
    return [c.actor_name() for c in control_plane()] + [n for node in nodes for n in node_actor_names(node)]
