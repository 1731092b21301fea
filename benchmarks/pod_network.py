"""Pod-to-pod network cost of the VXLAN overlay versus two pods on one bridge, same run.

Run as root:

    .venv/bin/python benchmarks/pod_network.py [--bytes 200000000] [--round-trips 2000] [--iperf3]
    .venv/bin/python benchmarks/pod_network.py --cluster      # against a running `minik8s up` cluster

Default: builds its own testbed (:mod:`minik8s.network.testbed`: netns ``mk8snt-*``, bridge
``mk8snt0``, pod CIDR 10.247.0.0/16, so it runs beside a real cluster), applies the overlay,
and measures from pod ``mk8snt-pa``:
- across nodes: to pod ``mk8snt-pb`` on the other node (bridge -> mk8s.vx -> VXLAN/UDP -> underlay
  bridge -> mk8s.vx -> bridge);
- baseline: to pod ``mk8snt-pa2`` on the same bridge (veth -> bridge -> veth).
TCP throughput: a Python sender pushes N bytes in 1 MiB writes, the receiver acknowledges at EOF
(and iperf3 for 5 s with ``--iperf3``).  Latency: N round trips of a 64-byte request/response
over one TCP connection with TCP_NODELAY, p50/p99.  Each measurement runs ``--rounds`` times,
alternating the two paths; the median is reported, with the overlay/baseline ratio.

With ``--cluster``: the same measurements between the sandbox (pause) containers of running pods
found in the node dockerds of the default ClusterConfig: two pods on node-1 and one on node-2
(create them first, e.g. three busybox pods pinned with nodeName).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import smoke
from minik8s.network import vxlan as vx
from minik8s.network.netns import nsenter_argv
from minik8s.network.testbed import Testbed, TestbedConfig

TPUT_PORT = 5201 + 100
RTT_PORT = TPUT_PORT + 1
IPERF_PORT = TPUT_PORT + 2
SERVER_READY_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 300.0
IPERF_SECONDS = 5
IPERF_RETRY_S = 0.2

SERVER = """
import socket, sys, threading
ip, tput_port, rtt_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def listener(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((ip, port)); s.listen(8)
    return s
def sink(c):
    n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        n += len(b)
    c.sendall(str(n).encode()); c.close()
def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
def serve(s, fn):
    while True:
        c, _ = s.accept(); threading.Thread(target=fn, args=(c,), daemon=True).start()
t, r = listener(tput_port), listener(rtt_port)
threading.Thread(target=serve, args=(t, sink), daemon=True).start()
print("ready", flush=True)
serve(r, echo)
"""

CLIENT = """
import json, socket, sys, time
mode, ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((ip, port), timeout=60)
if mode == "tput":
    buf = b"x" * (1 << 20); sent = 0; t0 = time.perf_counter()
    while sent < n:
        k = min(len(buf), n - sent); s.sendall(buf[:k]); sent += k
    s.shutdown(socket.SHUT_WR); got = int(s.recv(64)); dt = time.perf_counter() - t0
    assert got == n, (got, n)
    print(json.dumps({"seconds": dt, "bytes": n}))
else:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"m" * 64; rtts = []
    for _ in range(n + 50):
        t0 = time.perf_counter(); s.sendall(msg); got = 0
        while got < len(msg): got += len(s.recv(65536))
        rtts.append(time.perf_counter() - t0)
    rtts = sorted(rtts[50:])  # the first round trips warm up
    print(json.dumps({"p50": rtts[len(rtts) // 2], "p99": rtts[int(len(rtts) * 0.99) - 1]}))
"""


@dataclass(frozen=True)
class Endpoint:
    """A pod: its network namespace (name or /proc path) and IP."""

    netns: str
    ip: str


@dataclass
class PathResult:
    label: str
    mbit_s: list[float]
    p50_us: list[float]
    p99_us: list[float]
    iperf_mbit_s: list[float]


def _client(src: Endpoint, args: list[str]) -> dict[str, float]:
    r = subprocess.run(nsenter_argv(src.netns, [sys.executable, "-c", CLIENT, *args]), capture_output=True,
                       text=True, timeout=CLIENT_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"client in {src.netns} failed: {r.stderr.strip()}")
    return dict(json.loads(r.stdout))


def _iperf3(src: Endpoint, dst: Endpoint) -> float:
    server = subprocess.Popen(nsenter_argv(dst.netns, ["iperf3", "-s", "-1", "-B", dst.ip, "-p", str(IPERF_PORT)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # iperf3 has no readiness signal; retry the client until it connects
            r = subprocess.run(nsenter_argv(src.netns, ["iperf3", "-c", dst.ip, "-p", str(IPERF_PORT), "-J",
                                                        "-t", str(IPERF_SECONDS)]),
                               capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
            data = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
            received = data.get("end", {}).get("sum_received")
            if r.returncode == 0 and received:
                return float(received["bits_per_second"]) / 1e6
            time.sleep(IPERF_RETRY_S)
        raise RuntimeError(f"iperf3 client failed: {r.stdout[-500:]} {r.stderr[-500:]}")
    finally:
        server.kill()
        server.wait()


def measure(pairs: list[tuple[str, Endpoint, Endpoint]], nbytes: int, round_trips: int, rounds: int,
            iperf3: bool) -> list[PathResult]:
    servers = []
    results = {label: PathResult(label, [], [], [], []) for label, _, _ in pairs}
    try:
        for _, _, dst in pairs:
            p = subprocess.Popen(nsenter_argv(dst.netns, [sys.executable, "-c", SERVER, dst.ip, str(TPUT_PORT),
                                                          str(RTT_PORT)]), stdout=subprocess.PIPE)
            servers.append(p)
            assert p.stdout is not None
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"server in {dst.netns} did not start")
        for _ in range(rounds):
            for label, src, dst in pairs:  # alternate, so drift on a shared machine hits both paths
                res = results[label]
                t = _client(src, ["tput", dst.ip, str(TPUT_PORT), str(nbytes)])
                res.mbit_s.append(t["bytes"] * 8 / t["seconds"] / 1e6)
                lat = _client(src, ["rtt", dst.ip, str(RTT_PORT), str(round_trips)])
                res.p50_us.append(lat["p50"] * 1e6)
                res.p99_us.append(lat["p99"] * 1e6)
                if iperf3:
                    res.iperf_mbit_s.append(_iperf3(src, dst))
    finally:
        for p in servers:
            p.kill()
            p.wait()
    return [results[label] for label, _, _ in pairs]


def report(overlay: PathResult, base: PathResult, out: Callable[[str], None] = print) -> None:
    med = statistics.median
    rows = [("TCP throughput, Python (Mbit/s)", overlay.mbit_s, base.mbit_s),
            ("TCP request/response p50 (us)", overlay.p50_us, base.p50_us),
            ("TCP request/response p99 (us)", overlay.p99_us, base.p99_us)]
    if overlay.iperf_mbit_s:
        rows.append((f"TCP throughput, iperf3 {IPERF_SECONDS}s (Mbit/s)", overlay.iperf_mbit_s, base.iperf_mbit_s))
    out(f"{'metric':40} {overlay.label:>22} {base.label:>22} {'ratio':>7}")
    for name, o, b in rows:
        out(f"{name:40} {med(o):22.1f} {med(b):22.1f} {med(o) / med(b):7.2f}")


def cluster_pods(nodes: int = 2) -> tuple[Endpoint, Endpoint, Endpoint]:
    """(pod on node-1, another pod on node-1, pod on node-2) from the running sandboxes of a local cluster."""
    import docker

    from minik8s.cluster.config import ClusterConfig
    from minik8s.kubelet import labels as L

    cfg = ClusterConfig(nodes=nodes)
    found: list[list[Endpoint]] = []
    for node in cfg.all_nodes()[:2]:
        dc = docker.DockerClient(base_url=node.docker_url)
        eps = []
        for c in dc.containers.list(filters={"label": [f"{L.MANAGED}=true", f"{L.CONTAINER_TYPE}={L.TYPE_SANDBOX}"]}):
            pid, ip = c.attrs["State"]["Pid"], c.attrs["NetworkSettings"]["IPAddress"]
            if pid and ip:
                eps.append(Endpoint(f"/proc/{pid}/ns/net", ip))
        found.append(eps)
        dc.close()
    if len(found) < 2 or len(found[0]) < 2 or len(found[1]) < 1:
        raise SystemExit("need two running pods on node-1 and one on node-2 (found "
                         f"{[len(f) for f in found]}); create them with spec.nodeName set")
    return found[0][0], found[0][1], found[1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bytes", type=int, default=200_000_000, help="bytes per throughput run")
    parser.add_argument("--round-trips", type=int, default=2000, help="round trips per latency run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per path (median reported)")
    parser.add_argument("--iperf3", action="store_true", help="also run iperf3 (Debian package iperf3)")
    parser.add_argument("--pod-mtu", type=int, default=None, help="testbed pod MTU (default 1500, as docker0)")
    parser.add_argument("--cluster", action="store_true", help="measure between pods of a running local cluster")
    args = smoke.parse(parser, bytes=5_000_000, round_trips=100, rounds=1)
    if args.iperf3 and shutil.which("iperf3") is None:
        raise SystemExit("iperf3 not found: apt-get install iperf3")
    bed: Testbed | None = None
    try:
        if args.cluster:
            a1, a2, b1 = cluster_pods()
            where = "local cluster"
        else:
            bed = Testbed(TestbedConfig(pods_per_node=2, pod_mtu=args.pod_mtu))
            bed.build()
            for node in bed.nodes:
                vx.setup_node(node.local, [n.peer for n in bed.nodes], bed.vxlan_config, node.netns)
            na, nb = bed.nodes
            a1, a2, b1 = (Endpoint(p.netns, p.ip) for p in (na.pods[0], na.pods[1], nb.pods[0]))
            where = f"testbed (pod MTU {args.pod_mtu or 1500}, mk8s.vx MTU 1450)"
        overlay, base = measure([("vxlan, across nodes", a1, b1), ("same bridge", a1, a2)], args.bytes,
                                args.round_trips, args.rounds, args.iperf3)
        print(f"pod network, {where}: {args.bytes / 1e6:.0f} MB per throughput run, {args.round_trips} round trips "
              f"of 64 B, median of {args.rounds} rounds")
        report(overlay, base)
    finally:
        if bed is not None:
            bed.teardown()


if __name__ == "__main__":
    main()
