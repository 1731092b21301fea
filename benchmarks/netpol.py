"""NetworkPolicy cost on the data path, and how fast a policy change is enforced, on a running cluster.

Run on a cluster made by `minik8s up` (as root):

    .venv/bin/python -m benchmarks.netpol [--policies 100] [--bytes 200000000] [--round-trips 2000] [--changes 20]

Two pods in a namespace of the benchmark's own: `server` on node-1 and `client` on node-2 (busybox
sleepers; the measuring Python runs from the host inside their network namespaces, found through the
node dockerds, as `benchmarks/pod_network.py --cluster` does).

1. Data path, same run, alternating each round: client -> server TCP throughput (1 MiB writes) and
   64-byte request/response p50/p99 over one connection (TCP_NODELAY), with no NetworkPolicy
   (baseline), then with `--policies` policies in place that allow this traffic: half select the
   server (ingress: one from the client, the others from other address blocks, on the measured ports),
   half select the client (egress: one to the server, the others to other blocks), so each pod's table
   holds ~N/2 rules. Prints the ratio policies/baseline (aim: >= 0.9x throughput).
2. Programming latency: with a default-deny on the server, `--changes` times: create an allow policy
   and time until a new connection from the client gets through, then delete it and time until new
   connections are refused. A prober in the client's netns tries a fresh connection every
   `PROBE_INTERVAL_S` (each attempt waits at most `PROBE_TIMEOUT_S`), so the resolution is ~0.1 s.
   Prints p50/p99 of both (target: p99 <= 2 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import docker

from benchmarks import smoke
from benchmarks.pod_network import RTT_PORT, TPUT_PORT, Endpoint, PathResult, measure, report
from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.local import known_nodes
from minik8s.kubelet import labels as L
from minik8s.netpol import rules
from minik8s.network.netns import nsenter_argv

POD_TIMEOUT_S = 180.0
SETTLE_TIMEOUT_S = 60.0
STABLE_S = 1.0
POLL_S = 0.1
PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 0.1
CHANGE_TIMEOUT_S = 30.0
SERVER_LABELS = {"app": "bench-server"}
CLIENT_LABELS = {"role": "bench-client"}

#: Runs in the client's netns. Reads "ok IP PORT" or "blocked IP PORT" lines; for each, tries fresh
#: connections until the answer is the one asked for and prints the wall time it was first seen.
PROBER = """
import socket, sys, time
for line in sys.stdin:
    want, ip, port = line.split()
    deadline = time.time() + float(sys.argv[1])
    while time.time() < deadline:
        try:
            socket.create_connection((ip, int(port)), timeout=float(sys.argv[2])).close(); got = "ok"
        except OSError:
            got = "blocked"
        if got == want:
            break
        time.sleep(float(sys.argv[3]))
    print(time.time() if got == want else -1, flush=True)
"""


def pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}


def netpol(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def _other_peer(i: int) -> dict[str, Any]:
    """A peer that renders a real rule but matches neither pod (an address block outside the pod network)."""
    return {"ipBlock": {"cidr": f"172.{16 + i // 256}.{i % 256}.0/24"}}


def allowing_policies(n: int) -> list[dict[str, Any]]:
    """n policies, one rule each, all in the server's or the client's table: the last two allow client ->
    server on the measured ports, the others other address blocks (so a new connection passes them all)."""
    ports = [{"port": TPUT_PORT, "endPort": RTT_PORT}]
    out = []
    for i in range(n):
        last = i >= n - 2
        if i % 2 == 0:
            peer = {"podSelector": {"matchLabels": CLIENT_LABELS}} if last else _other_peer(i)
            out.append(netpol(f"in-{i}", {"podSelector": {"matchLabels": SERVER_LABELS},
                                          "ingress": [{"from": [peer], "ports": ports}]}))
        else:
            peer = {"podSelector": {"matchLabels": SERVER_LABELS}} if last else _other_peer(i)
            out.append(netpol(f"out-{i}", {"podSelector": {"matchLabels": CLIENT_LABELS}, "policyTypes": ["Egress"],
                                           "egress": [{"to": [peer], "ports": ports}]}))
    return out


def sandbox(cfg: ClusterConfig, uid: str) -> Endpoint:
    """The pod's network namespace (its sandbox's /proc path) and IP, from whichever node dockerd runs it."""
    for node in known_nodes(cfg):  # every node that joined (the default config knows only node-1)
        dc = docker.DockerClient(base_url=node.docker_url)
        try:
            found = dc.containers.list(filters={"label": [f"{L.POD_UID}={uid}",
                                                          f"{L.CONTAINER_TYPE}={L.TYPE_SANDBOX}"]})
            if found:
                attrs = found[0].attrs
                return Endpoint(f"/proc/{attrs['State']['Pid']}/ns/net", attrs["NetworkSettings"]["IPAddress"])
        finally:
            dc.close()
    raise SystemExit(f"no running sandbox found for pod uid {uid}")


def wait_running(client: Client, name: str, ns: str) -> Any:
    deadline = time.monotonic() + POD_TIMEOUT_S
    while time.monotonic() < deadline:
        p = client.get("Pod", name, ns)
        if p.status and p.status.phase == "Running" and p.status.podIP:
            return p
        time.sleep(POLL_S)
    raise SystemExit(f"pod {ns}/{name} did not run within {POD_TIMEOUT_S:.0f}s")


def table(ep: Endpoint) -> str:
    res = subprocess.run(nsenter_argv(ep.netns, ["nft", "list", "table", rules.FAMILY, rules.TABLE]),
                         capture_output=True, text=True, timeout=10)
    return res.stdout if res.returncode == 0 else ""


def settle(*eps: Endpoint) -> None:
    """Wait until the pods' tables stop changing (the agents have caught up with the last change)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, since = "", time.monotonic()
    while time.monotonic() < deadline:
        now = "".join(table(ep) for ep in eps)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= STABLE_S:
            return
        time.sleep(POLL_S)
    raise SystemExit("the policy tables did not settle")


def create_all(client: Client, objs: list[dict[str, Any]], ns: str) -> None:
    for obj in objs:
        client.create(obj, ns)


def delete_all(client: Client, objs: list[dict[str, Any]], ns: str) -> None:
    for obj in objs:
        client.delete("NetworkPolicy", obj["metadata"]["name"], ns)


def data_path(client: Client, ns: str, src: Endpoint, dst: Endpoint, args: argparse.Namespace
              ) -> tuple[PathResult, PathResult]:
    base = PathResult("no policies", [], [], [], [])
    with_policies = PathResult(f"{args.policies} policies", [], [], [], [])
    policies = allowing_policies(args.policies)
    for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both
        settle(src, dst)
        got = measure([("base", src, dst)], args.bytes, args.round_trips, 1, False)[0]
        _extend(base, got)
        create_all(client, policies, ns)
        settle(src, dst)
        got = measure([("policies", src, dst)], args.bytes, args.round_trips, 1, False)[0]
        _extend(with_policies, got)
        delete_all(client, policies, ns)
    return with_policies, base


def _extend(into: PathResult, got: PathResult) -> None:
    into.mbit_s += got.mbit_s
    into.p50_us += got.p50_us
    into.p99_us += got.p99_us


def programming(client: Client, ns: str, src: Endpoint, dst: Endpoint, changes: int
                ) -> tuple[list[float], list[float]]:
    """(allow latencies, revoke latencies) in seconds: API write returned -> first connection that shows it."""
    server = subprocess.Popen(nsenter_argv(dst.netns, [sys.executable, "-c", _LISTEN, dst.ip, str(TPUT_PORT)]),
                              stdout=subprocess.PIPE)
    prober = subprocess.Popen(nsenter_argv(src.netns, [sys.executable, "-c", PROBER, str(CHANGE_TIMEOUT_S),
                                                       str(PROBE_TIMEOUT_S), str(PROBE_INTERVAL_S)]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deny = netpol("deny", {"podSelector": {"matchLabels": SERVER_LABELS}, "policyTypes": ["Ingress"]})
    allow = netpol("allow", {"podSelector": {"matchLabels": SERVER_LABELS},
                             "ingress": [{"from": [{"podSelector": {"matchLabels": CLIENT_LABELS}}]}]})
    allows: list[float] = []
    revokes: list[float] = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        client.create(deny, ns)
        _until(prober, "blocked", dst)
        for _ in range(changes):
            allows.append(_timed(prober, "ok", dst, lambda: client.create(allow, ns)))
            revokes.append(_timed(prober, "blocked", dst, lambda: client.delete("NetworkPolicy", "allow", ns)))
        client.delete("NetworkPolicy", "deny", ns)
    finally:
        for proc in (prober, server):
            proc.kill()
            proc.wait()
    return allows, revokes


_LISTEN = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


def _until(prober: subprocess.Popen[str], want: str, dst: Endpoint) -> float:
    assert prober.stdin is not None and prober.stdout is not None
    prober.stdin.write(f"{want} {dst.ip} {TPUT_PORT}\n")
    prober.stdin.flush()
    seen = float(prober.stdout.readline())
    if seen < 0:
        raise SystemExit(f"the connection was not {want} within {CHANGE_TIMEOUT_S:.0f}s")
    return seen


def _timed(prober: subprocess.Popen[str], want: str, dst: Endpoint, change: Any) -> float:
    assert prober.stdin is not None
    start = time.time()
    change()
    return _until(prober, want, dst) - start


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=int, default=100, help="NetworkPolicies in place for the data path")
    parser.add_argument("--bytes", type=int, default=200_000_000, help="bytes per throughput run")
    parser.add_argument("--round-trips", type=int, default=2000, help="round trips per latency run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per condition (median reported)")
    parser.add_argument("--changes", type=int, default=20, help="allow/revoke cycles timed")
    args = smoke.parse(parser, policies=10, bytes=5_000_000, round_trips=100, rounds=1, changes=2)
    cfg = ClusterConfig()
    client = Client.from_config()
    ns = f"netpol-bench-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        client.create(pod("server", "node-1", SERVER_LABELS), ns)
        client.create(pod("client", "node-2", CLIENT_LABELS), ns)
        dst = sandbox(cfg, str(wait_running(client, "server", ns).metadata.uid))
        src = sandbox(cfg, str(wait_running(client, "client", ns).metadata.uid))
        with_policies, base = data_path(client, ns, src, dst, args)
        print(f"NetworkPolicy data path, client (node-2) -> server (node-1): {args.bytes / 1e6:.0f} MB per "
              f"throughput run, {args.round_trips} round trips of 64 B, median of {args.rounds} rounds")
        report(with_policies, base)
        allows, revokes = programming(client, ns, src, dst, args.changes)
        print(f"\npolicy programming latency, API write -> seen by a new connection ({args.changes} changes, "
              f"probe every {PROBE_INTERVAL_S * 1000:.0f} ms)")
        print(f"{'change':28} {'p50 (ms)':>10} {'p99 (ms)':>10} {'p99 / 2 s target':>18}")
        for label, values in (("allow (deny -> allowed)", allows), ("revoke (allowed -> deny)", revokes)):
            p50, p99 = percentile(values, 50), percentile(values, 99)
            print(f"{label:28} {p50 * 1000:10.0f} {p99 * 1000:10.0f} {p99 / 2.0:17.2f}x")
        print(json.dumps({"throughput_ratio": statistics.median(with_policies.mbit_s) / statistics.median(base.mbit_s),
                          "allow_p99_s": percentile(allows, 99), "revoke_p99_s": percentile(revokes, 99)}))
    finally:
        client.delete("Namespace", ns, None)
        client.close()


if __name__ == "__main__":
    main()
