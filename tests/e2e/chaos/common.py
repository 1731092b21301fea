"""What every chaos scenario shares: an app served the three ways users reach it, a bounded client loop
that records each request with its time, and the checks made after a fault.

The app is a Deployment of busybox HTTP servers behind a NodePort Service, with a `kind: DNS` entry
routing a host name to it through the gateway. The client loop asks it through every node's NodePort
and the ClusterIP from the root netns (like a machine outside the cluster), and by name from a thread
inside node-3's netns (like a process on a node): the Service's DNS name, and the DNS entry's host
through the nginx gateway; each asks the cluster DNS at the kube-dns ClusterIP, then fetches from the
address it got.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import httpx
from dnslib import QTYPE, DNSRecord

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.local import _etcd, _ray_head
from minik8s.cluster.procs import session_members
from minik8s.kubelet import labels as L
from tests.e2e.conftest import run, sleeper_pod, unique, wait_for, web_app

NODES = (1, 2, 3)
NODE_IPS = [ClusterConfig().node(i).ip for i in NODES]
#: The node whose netns the DNS client runs in.
DNS_CLIENT_NODE = 3
REQUEST_INTERVAL_S = 0.1
REQUEST_TIMEOUT_S = 2.0
#: Upper bound on one client loop's requests, so a hung scenario cannot loop for ever.
MAX_REQUESTS = 4000
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def app_containers(cfg: ClusterConfig, app: str) -> dict[str, str]:
    """container id -> restart-count label, for the app's pods' containers (pause included) on every node."""
    out = {}
    for i in NODES:
        dk = docker.DockerClient(base_url=cfg.node(i).docker_url)
        try:
            for c in dk.containers.list(filters={"label": L.POD_NAME}):
                if c.labels.get(L.POD_NAME, "").startswith(app):
                    out[c.id] = c.labels.get(L.RESTART_COUNT, "")
        finally:
            dk.close()
    return out


def kill_control_plane(cfg: ClusterConfig) -> None:
    """SIGKILL every process of the Ray head's session and of etcd's: no process gets to clean up."""
    for proc in (_ray_head(cfg), _etcd(cfg)):
        pid = proc.pid()
        assert pid is not None, f"{proc.name} is not running"
        for member in session_members(os.getsid(pid)):
            os.kill(member, signal.SIGKILL)


def endpoint_count(client: Client, name: str) -> int:
    ep = client.get("Endpoints", name)
    return sum(len(s.addresses or []) for s in ep.subsets or [])


def resolve(name: str, server: str, timeout: float = REQUEST_TIMEOUT_S) -> str:
    """The A record of `name` from the DNS server at `server` (UDP, as a pod's resolver asks)."""
    reply = DNSRecord.parse(DNSRecord.question(name).send(server, 53, timeout=timeout))
    addrs = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
    if not addrs:
        raise LookupError(f"{name}: no A record (rcode {reply.header.rcode})")
    return addrs[0]


def enter_netns(netns: str) -> None:
    """Move the calling thread (only it) into a node's network namespace."""
    with open(f"/var/run/netns/{netns}") as f:
        if _libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {netns}: {os.strerror(err)}")


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """`fn()` run by a thread inside `netns`; its exception is raised here."""
    out: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            enter_netns(netns)
            out.append(fn())
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join()
    if errors:
        raise errors[0]
    return out[0]


@dataclass
class App:
    name: str
    replicas: int
    urls: dict[str, str]  # target -> URL, for the NodePort on each node and the ClusterIP
    dns_name: str  # the Service's name in the cluster DNS
    host: str  # the `kind: DNS` entry's host, served by the gateway

    @property
    def targets(self) -> list[str]:
        return [*self.urls, *BY_NAME]


#: The targets reached by name (they need the cluster DNS, which is down with the control plane).
BY_NAME = ("dns", "gateway")


def fetch(app: App, target: str, dns_server: str) -> bool:
    """One request to the app through `target`; True if it answered 200."""
    if target == "gateway":
        ip = resolve(app.host, dns_server)
        return httpx.get(f"http://{ip}/", headers={"Host": app.host}, timeout=REQUEST_TIMEOUT_S).status_code == 200
    url = app.urls.get(target) or f"http://{resolve(app.dns_name, dns_server)}/"
    return httpx.get(url, timeout=REQUEST_TIMEOUT_S).status_code == 200


@contextmanager
def served_app(client: Client, prefix: str, replicas: int = 3) -> Iterator[App]:
    """A healthy app answering on every target (DNS name and gateway host included); deleted afterwards."""
    cfg = ClusterConfig()
    name = unique(prefix)
    host = f"{name}.chaos.test"
    route = (f"apiVersion: minik8s.io/v1\nkind: DNS\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n"
             f"  paths:\n  - {{path: /, service: {name}, port: 80}}\n")
    run("apply", "-f", "-", input=web_app(name, replicas=replicas, service_type="NodePort") + "---\n" + route)
    try:
        wait_for(f"{replicas} endpoints", lambda: endpoint_count(client, name) == replicas, timeout=120)
        svc = client.get("Service", name)
        port = svc.spec.ports[0].nodePort
        urls = {f"node-{i}": f"http://{ip}:{port}/" for i, ip in zip(NODES, NODE_IPS, strict=True)}
        urls["clusterip"] = f"http://{svc.spec.clusterIP}/"
        app = App(name, replicas, urls, f"{name}.default.svc.cluster.local", host)
        probe = Traffic(app, cfg)
        wait_for("every target answering", lambda: all(probe.once(t) for t in app.targets), timeout=90)
        yield app
    finally:
        run("delete", "dns", name, check=False)
        run("delete", "deploy", name, check=False)
        run("delete", "svc", name, check=False)


@dataclass
class Request:
    started: float  # time.monotonic()
    ended: float
    target: str
    ok: bool
    error: str = ""


@dataclass
class Traffic:
    """The bounded client loop: every target in turn, one request each `REQUEST_INTERVAL_S`, until stopped.

    NodePort and ClusterIP requests come from the root netns; DNS-name requests from a thread in
    node-3's netns (the address of the cluster DNS, 10.96.0.10, is a ClusterIP of the nodes' proxies).
    """

    app: App
    cfg: ClusterConfig
    requests: list[Request] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def once(self, target: str) -> bool:
        """One request, from where the loop sends it."""
        try:
            if target in BY_NAME:
                return in_netns(self._dns_netns, lambda: fetch(self.app, target, self.cfg.dns_ip))
            return fetch(self.app, target, self.cfg.dns_ip)
        except (httpx.HTTPError, OSError, LookupError):
            return False

    @property
    def _dns_netns(self) -> str:
        netns = self.cfg.node(DNS_CLIENT_NODE).netns
        assert netns is not None
        return netns

    def _loop(self, targets: list[str], netns: str | None) -> None:
        if netns is not None:
            enter_netns(netns)
        for i in range(MAX_REQUESTS):
            if self._stop.is_set():
                return
            target = targets[i % len(targets)]
            started = time.monotonic()
            try:
                ok, error = fetch(self.app, target, self.cfg.dns_ip), ""
            except (httpx.HTTPError, OSError, LookupError) as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self.requests.append(Request(started, time.monotonic(), target, ok, error))
            time.sleep(REQUEST_INTERVAL_S)

    def start(self) -> Traffic:
        outside = [t for t in self.app.targets if t not in BY_NAME]
        for targets, netns in ((outside, None), (list(BY_NAME), self._dns_netns)):
            th = threading.Thread(target=self._loop, args=(targets, netns), daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> list[Request]:
        self._stop.set()
        for th in self._threads:
            th.join(REQUEST_TIMEOUT_S * 3)
        return list(self.requests)

    def failures(self, targets: list[str] | None = None, window: tuple[float, float] | None = None) -> list[Request]:
        """Failed requests to `targets` (default all), leaving out those under way during the fault `window`."""
        return [r for r in self.requests if not r.ok and (targets is None or r.target in targets)
                and not (window and r.started <= window[1] and r.ended >= window[0])]

    def count(self, target: str) -> int:
        return sum(1 for r in self.requests if r.target == target)


def summary(failed: list[Request], total: int) -> str:
    return f"{len(failed)} of {total} requests failed: " + "; ".join(
        f"{r.target} at {r.ended:.1f} ({r.error})" for r in failed[:5])


#: Python's resolver reads the pod's resolv.conf as any program would (busybox's static wget cannot resolve).
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"


def client_pod(client: Client) -> AbstractContextManager[str]:
    """A pod to make requests from inside the cluster (its resolver is the cluster DNS)."""
    return sleeper_pod(client, "client", image="python:3")


def fetch_in_pod(pod: str, url: str) -> str:
    """What the pod gets from `url`, or "" if the request failed."""
    proc = run("exec", pod, "--", "python3", "-c", FETCH, url, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def app_hostnames(client: Client, app: App) -> set[str]:
    """The app's pod names: each replica serves its hostname."""
    return {p.metadata.name for p in client.list("Pod", "default", label_selector=f"app={app.name}").items}


def node_ready(client: Client, node: str) -> Any:
    """The node's Ready condition."""
    n = client.get("Node", node, None)
    return next(c for c in (n.status.conditions or []) if c.type == "Ready")
