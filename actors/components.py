"""The actor classes. Each builds its component in __init__ (so a Ray restart rebuilds it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import ray

ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1,
                                 "max_concurrency": 4, "lifetime": "detached"}


def _logging() -> None:
    logging.basicConfig(level=os.environ.get("MINIK8S_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _netlink_ready_asyncio() -> None:
    """Ray workers make uvloop the asyncio policy whenever it is installed, and uvloop cannot open
    pyroute2's AF_NETLINK datagram sockets ("invalid family 16"): use the standard loops here."""
    import asyncio

    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())


@ray.remote
class ApiServerActor:
    def __init__(self, config: dict[str, Any]) -> None:
        from minik8s.apiserver.app import ApiServer, ApiServerConfig
        from minik8s.apiserver.server import ServerThread

        _logging()
        cfg = ApiServerConfig(**config)
        self.server = ServerThread(ApiServer(cfg).app, cfg.hosts, cfg.port, name="apiserver",
                                   tls_cert=cfg.tls_cert, tls_key=cfg.tls_key)
        self.server.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.server.alive(), "pid": os.getpid()}


@ray.remote
class SchedulerActor:
    def __init__(self, server: str, token: str, ca: str) -> None:
        from minik8s.client import Client
        from minik8s.scheduler.loop import Scheduler

        _logging()
        self.scheduler = Scheduler(Client(server, token, ca=ca))
        self.scheduler.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": True, "pid": os.getpid()}


@ray.remote
class ControllerManagerActor:
    def __init__(self, server: str, token: str, ca: str, node_lifecycle: dict[str, float]) -> None:
        from minik8s.client import Client
        from minik8s.controllers.manager import ControllerManager, ControllerManagerConfig
        from minik8s.controllers.nodelifecycle import NodeLifecycleConfig

        _logging()
        config = ControllerManagerConfig(node_lifecycle=NodeLifecycleConfig(**node_lifecycle))
        self.manager = ControllerManager(Client(server, token, ca=ca), config)
        self.manager.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": True, "pid": os.getpid()}


@ray.remote
class GatewayActor:
    """The gateway controller (routes from DNS objects, long-poll config endpoint); ensures the gateway exists."""

    def __init__(self, server: str, token: str, ca: str, gateway: dict[str, Any]) -> None:
        import threading

        from minik8s.client import Client
        from minik8s.gateway.controller import GatewayConfig, GatewayController
        from minik8s.gateway.manifests import ensure_gateway_when_ready

        _logging()
        client = Client(server, token, ca=ca)
        self.controller = GatewayController(client, GatewayConfig(hosts=gateway["hosts"], port=gateway["port"]))
        self.controller.server.start()  # serve at once (the last config is kept by the pods meanwhile)
        self.thread = threading.Thread(target=self.controller.start, kwargs={"serve": False}, name="gateway",
                                       daemon=True)
        self.thread.start()
        threading.Thread(target=ensure_gateway_when_ready, args=(client, gateway["config_url"]),
                         name="gateway-ensure", daemon=True).start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.controller.server.alive(), "pid": os.getpid(),
                "version": self.controller.store.version}


@ray.remote
class DnsActor:
    """Cluster DNS (Services, DNS objects) on the head's root netns; `kube-system/kube-dns` points here."""

    def __init__(self, config: dict[str, Any], server: str, token: str, ca: str) -> None:
        from minik8s.client import Client
        from minik8s.dns import ClusterDns, DnsConfig

        _logging()
        self.dns = ClusterDns(Client(server, token, ca=ca), DnsConfig(**config))
        self.dns.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.dns.alive(), "pid": os.getpid(), "queries": self.dns.server.queries}


@ray.remote
class NetworkAgentActor:
    """The node's pod network (VXLAN peers, masquerade); runs inside the node's netns with its raylet."""

    def __init__(self, node: dict[str, str], server: str, token: str, ca: str) -> None:
        import threading

        from minik8s.client import Client
        from minik8s.network.agent import NetworkAgent, NetworkAgentConfig
        from minik8s.network.vxlan import VxlanConfig

        _logging()
        _netlink_ready_asyncio()
        # the overlay rides on the node's underlay device: eth0 in a netns node, the NIC in host mode
        config = NetworkAgentConfig(vxlan=VxlanConfig(underlay_dev=node.get("interface") or "eth0"))
        self.agent = NetworkAgent(Client(server, token, ca=ca), node["name"], node["ip"], node["pod_cidr"],
                                  config=config)
        self.thread = threading.Thread(target=self.agent.run, name="network-agent", daemon=True)
        self.thread.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.thread.is_alive(), "pid": os.getpid()}


@ray.remote
class ProxyActor:
    """The node's service proxy (nftables table ``minik8s-proxy``); runs inside the node's netns with its raylet."""

    def __init__(self, node: dict[str, str], server: str, token: str, ca: str) -> None:
        import threading

        from minik8s.client import Client
        from minik8s.proxy.proxy import Proxy

        _logging()
        _netlink_ready_asyncio()
        self.proxy = Proxy(Client(server, token, ca=ca), node["name"], node["ip"])
        self.thread = threading.Thread(target=self.proxy.run, name="proxy", daemon=True)
        self.thread.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.thread.is_alive(), "pid": os.getpid()}


@ray.remote
class KubeletActor:
    def __init__(self, config: dict[str, Any], server: str, token: str, ca: str) -> None:
        import threading

        from minik8s.client import Client
        from minik8s.kubelet.kubelet import Kubelet, KubeletConfig

        _logging()
        cfg = KubeletConfig(**{**config, "pods_dir": Path(config["pods_dir"])})
        self.kubelet = Kubelet(cfg, Client(server, token, ca=ca))
        self.thread = threading.Thread(target=self.kubelet.run, name="kubelet", daemon=True)
        self.thread.start()

    def health(self) -> dict[str, Any]:
        return {"healthy": self.thread.is_alive(), "pid": os.getpid()}
