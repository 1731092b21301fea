"""A two-node testbed for the proxy (integration test and benchmark), beside a real cluster.

Built on :mod:`minik8s.network.testbed` with its own names: netns ``mk8ssv-*``, bridge
``mk8ssv0`` (10.204.0.0/24), pods 10.248.1.0/24 and 10.248.2.0/24 joined by the VXLAN overlay,
ClusterIPs from 10.205.0.0/16. Pods ``mk8ssv-pa`` (node a) and ``mk8ssv-pb`` (node b) run a tiny
HTTP server answering their name; ``mk8ssv-pa2`` is the client pod.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

from minik8s.api.services import Endpoints, Service
from minik8s.network import vxlan as vx
from minik8s.network.testbed import Testbed, TestbedConfig
from minik8s.proxy import nft
from minik8s.proxy.hairpin import ensure_hairpin
from minik8s.proxy.rules import ProxyRulesConfig

log = logging.getLogger("minik8s.proxy.testbed")

BED = TestbedConfig(prefix="mk8ssv", underlay_cidr="10.204.0.0/24", pod_cidr="10.248.0.0/16", pods_per_node=2)
SERVICE_CIDR = "10.205.0.0/16"
BACKEND_PORT = 8080
RULES = ProxyRulesConfig(cluster_cidr=BED.pod_cidr)

#: HTTP/1.0 server answering its name (argv: ip, port, name); prints "ready" once bound.
NAME_SERVER = """
import http.server, socketserver, sys
ip, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", str(len(name))); self.end_headers()
        self.wfile.write(name)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True; allow_reuse_address = True; request_queue_size = 128
s = S((ip, port), H)
print("ready", flush=True)
s.serve_forever()
"""

#: n sequential HTTP GETs, one connection each (argv: url, n); prints one answer (or error) a line,
#: then "latency_us <p50> <p99>" and "rps <n/s>".
CLIENT = """
import socket, sys, time
url, n = sys.argv[1], int(sys.argv[2])
host, port = url.split("//")[1].split("/")[0].split(":")
lat = []
t0 = time.perf_counter()
for _ in range(n):
    s0 = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=2) as c:
            c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk: break
                data += chunk
        print(data.split(b"\\r\\n\\r\\n", 1)[1].decode())
    except OSError as exc:
        print("error", type(exc).__name__)
    lat.append(time.perf_counter() - s0)
total = time.perf_counter() - t0
lat.sort()
print("latency_us", int(lat[len(lat) // 2] * 1e6), int(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6))
print("rps", round(n / total, 1))
"""


def service(name: str, cluster_ip: str, port: int = 80, node_port: int | None = None,
            namespace: str = "default", affinity: str = "None") -> Service:
    ports: list[dict[str, Any]] = [{"name": "http", "port": port, "protocol": "TCP", "targetPort": BACKEND_PORT,
                                    **({"nodePort": node_port} if node_port else {})}]
    return Service.model_validate({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "NodePort" if node_port else "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": ports, "selector": {"app": name}, "sessionAffinity": affinity}})


def endpoints(name: str, ips: list[str], namespace: str = "default", port: int = BACKEND_PORT) -> Endpoints:
    subsets = [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]
    return Endpoints.model_validate({"metadata": {"name": name, "namespace": namespace},
                                     "subsets": subsets if ips else []})


class ServiceBed:
    __test__ = False

    def __init__(self) -> None:
        self.bed = Testbed(BED)
        self.procs: list[subprocess.Popen[bytes]] = []
        a, b = self.bed.nodes
        self.node_a, self.node_b = a, b
        self.backend_a, self.client_pod = a.pods
        self.backend_b = b.pods[0]

    def build(self) -> None:
        self.bed.build()
        for node in self.bed.nodes:
            vx.setup_node(node.local, [n.peer for n in self.bed.nodes], self.bed.vxlan_config, node.netns)
        for node in self.bed.nodes:
            ensure_hairpin(BED.pod_bridge, node.netns)
        for pod in (self.backend_a, self.backend_b):
            p = self.bed.popen(pod.netns, [sys.executable, "-c", NAME_SERVER, pod.ip, str(BACKEND_PORT), pod.netns],
                               stdout=subprocess.PIPE)
            self.procs.append(p)
            assert p.stdout is not None
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"backend in {pod.netns} did not start")

    def requests(self, netns: str | None, url: str, n: int) -> tuple[list[str], dict[str, float]]:
        argv = [sys.executable, "-c", CLIENT, url, str(n)]
        if netns is None:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        else:
            res = self.bed.run(netns, argv, timeout=120)
        lines = res.stdout.strip().splitlines()
        stats: dict[str, float] = {}
        answers = []
        for line in lines:
            if line.startswith("latency_us "):
                _, p50, p99 = line.split()
                stats["p50_us"], stats["p99_us"] = float(p50), float(p99)
            elif line.startswith("rps "):
                stats["rps"] = float(line.split()[1])
            else:
                answers.append(line)
        return answers, stats

    def teardown(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        self.procs.clear()
        for node in self.bed.nodes:
            try:
                nft.delete_table(RULES.table, node.netns)
            except Exception as exc:  # the netns may be gone already; teardown below removes everything anyway
                log.info("proxy table not deleted", extra={"netns": node.netns, "error": str(exc)})
        self.bed.teardown()

    def wait_tcp(self, seconds: float = 0.05) -> None:
        time.sleep(seconds)
