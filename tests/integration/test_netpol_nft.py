"""NetworkPolicy tables in real pod network namespaces: rendered by `minik8s.netpol.rules`, loaded with real
`nft`, checked with real TCP connections.

Root only. One node netns ``mk8snp-a`` with three pod netns on its bridge (``mk8snp-pa`` the server,
``mk8snp-pa2`` the labelled client, ``mk8snp-pa3`` another pod), underlay 10.206.0.0/24 and pods
10.249.1.0/24, so it runs beside a real cluster and the other network tests. Tests share one testbed and
run in file order; the last one tears it down and checks nothing is left.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s.netpol import rules
from minik8s.netpol.agent import apply_table
from minik8s.network.testbed import Testbed, TestbedConfig
from tests.conftest import requires

pytestmark = requires("nft", "nsenter")
BED = TestbedConfig(prefix="mk8snp", underlay_cidr="10.206.0.0/24", pod_cidr="10.249.0.0/16", nodes=1,
                    pods_per_node=3)
HTTP, ADMIN = 8080, 9090
CONNECT_TIMEOUT_S = "0.5"

#: TCP echo on every port given; prints "ready" once listening.  Args: IP, port...
ECHO_SERVER = """
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    with c:
        while (data := c.recv(100)):
            c.sendall(data)
for port in sys.argv[2:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(port))); s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

#: One echo round trip.  Args: IP, port, timeout; prints "ok" or "blocked".
PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        s.sendall(b"x"); print("ok" if s.recv(1) == b"x" else "blocked")
except OSError:
    print("blocked")
"""

#: A long-lived connection: one round trip, then one more per line on stdin.  Args: IP, port.
HOLD = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(b"a"); print(s.recv(1).decode(), flush=True)
for _ in sys.stdin:
    try:
        s.sendall(b"b"); print(s.recv(1).decode() or "closed", flush=True)
    except OSError:
        print("broken", flush=True)
"""


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    tb = Testbed(BED)
    tb.build()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for p in tb.nodes[0].pods:
            proc = tb.popen(p.netns, [sys.executable, "-c", ECHO_SERVER, p.ip, str(HTTP), str(ADMIN)],
                            stdout=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield tb
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        tb.teardown()


def pods(tb: Testbed) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The API view of the three pod netns: server (app=web, port http=8080), client, other."""
    def pod(name: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
                "spec": {"nodeName": "node-a", "containers": [
                    {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": HTTP},
                                                          {"name": "admin", "containerPort": ADMIN}]}]},
                "status": {"phase": "Running", "podIP": ip}}
    server, client, other = tb.nodes[0].pods
    return (pod("server", server.ip, {"app": "web"}), pod("client", client.ip, {"role": "client"}),
            pod("other", other.ip, {"role": "other"}))


def enforce(tb: Testbed, *policies: dict[str, Any]) -> None:
    """What the agent does on a node: every pod's table, rendered and loaded in its netns."""
    view = rules.ClusterView(policies=list(policies), pods=list(pods(tb)), namespaces={"default": {}})
    for bed_pod, api_pod in zip(tb.nodes[0].pods, pods(tb), strict=True):
        apply_table(bed_pod.netns, rules.render_pod_table(api_pod, view, host_ips=[tb.nodes[0].bridge_ip]))


def probe(tb: Testbed, src_ns: str, ip: str, port: int) -> str:
    r = tb.run(src_ns, [sys.executable, "-c", PROBE, ip, str(port), CONNECT_TIMEOUT_S])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


WEB = {"matchLabels": {"app": "web"}}
CLIENTS = {"podSelector": {"matchLabels": {"role": "client"}}}
DENY_INGRESS = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})


def names(tb: Testbed) -> tuple[str, str, str, str]:
    """(server IP, server netns, client netns, other netns)."""
    server, client, other = tb.nodes[0].pods
    return server.ip, server.netns, client.netns, other.netns


def test_without_policies_every_pod_has_its_table_and_everything_flows(bed: Testbed) -> None:
    enforce(bed)
    ip, server_ns, client_ns, other_ns = names(bed)
    listed = bed.run(server_ns, ["nft", "list", "table", "inet", rules.TABLE])
    assert listed.returncode == 0 and "hook input" in listed.stdout and "hook output" in listed.stdout
    assert probe(bed, client_ns, ip, HTTP) == "ok"
    assert probe(bed, other_ns, ip, ADMIN) == "ok"


def test_default_deny_blocks_pods_but_not_the_node_or_loopback(bed: Testbed) -> None:
    enforce(bed, DENY_INGRESS)
    ip, server_ns, client_ns, other_ns = names(bed)
    assert probe(bed, client_ns, ip, HTTP) == "blocked"
    assert probe(bed, other_ns, ip, HTTP) == "blocked"
    assert probe(bed, bed.nodes[0].netns, ip, HTTP) == "ok"  # kubelet probes come from the node's bridge
    assert probe(bed, server_ns, ip, HTTP) == "ok"  # the pod to itself


def test_allow_by_label_lets_only_the_labelled_pod_in(bed: Testbed) -> None:
    enforce(bed, DENY_INGRESS, policy("clients", {"podSelector": WEB, "ingress": [{"from": [CLIENTS]}]}))
    ip, _, client_ns, other_ns = names(bed)
    assert probe(bed, client_ns, ip, HTTP) == "ok"
    assert probe(bed, other_ns, ip, HTTP) == "blocked"


def test_named_port_allows_that_port_only(bed: Testbed) -> None:
    enforce(bed, policy("http", {"podSelector": WEB, "ingress": [{"from": [CLIENTS], "ports": [{"port": "http"}]}]}))
    ip, _, client_ns, _ = names(bed)
    assert probe(bed, client_ns, ip, HTTP) == "ok"
    assert probe(bed, client_ns, ip, ADMIN) == "blocked"


def test_ip_block_with_except(bed: Testbed) -> None:
    server, client, other = bed.nodes[0].pods
    enforce(bed, policy("block", {"podSelector": WEB, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.249.1.0/24", "except": [f"{other.ip}/32"]}}]}]}))
    assert probe(bed, client.netns, server.ip, HTTP) == "ok"
    assert probe(bed, other.netns, server.ip, HTTP) == "blocked"


def test_egress_default_deny_then_allow_by_label(bed: Testbed) -> None:
    server, client, other = bed.nodes[0].pods
    deny_out = policy("deny-out", {"podSelector": CLIENTS["podSelector"], "policyTypes": ["Egress"]})
    enforce(bed, deny_out)
    assert probe(bed, client.netns, server.ip, HTTP) == "blocked"
    assert probe(bed, other.netns, server.ip, HTTP) == "ok"  # other pods are not selected
    enforce(bed, deny_out, policy("to-web", {"podSelector": CLIENTS["podSelector"], "policyTypes": ["Egress"],
                                             "egress": [{"to": [{"podSelector": WEB}], "ports": [{"port": HTTP}]}]}))
    assert probe(bed, client.netns, server.ip, HTTP) == "ok"
    assert probe(bed, client.netns, server.ip, ADMIN) == "blocked"
    assert probe(bed, client.netns, other.ip, HTTP) == "blocked"


def test_an_established_connection_survives_a_table_rewrite(bed: Testbed) -> None:
    ip, _, client_ns, _ = names(bed)
    allow = policy("clients", {"podSelector": WEB, "ingress": [{"from": [CLIENTS]}]})
    enforce(bed, DENY_INGRESS, allow)
    hold = bed.popen(client_ns, [sys.executable, "-c", HOLD, ip, str(HTTP)], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
    try:
        assert hold.stdout is not None and hold.stdin is not None
        assert hold.stdout.readline().strip() == b"a"
        enforce(bed, DENY_INGRESS, allow, policy("more", {"podSelector": WEB, "ingress": [{"ports": [{"port": 1}]}]}))
        hold.stdin.write(b"go\n")
        hold.stdin.flush()
        assert hold.stdout.readline().strip() == b"b"
    finally:
        hold.kill()
        hold.wait()


def test_teardown_leaves_nothing(bed: Testbed) -> None:
    bed.teardown()
    assert bed.leftovers() == []
