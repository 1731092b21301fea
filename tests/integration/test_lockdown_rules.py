"""The lockdown table in real network namespaces (no cluster): a pod netns behind a node netns behind
a head netns, real listeners, real connections.  Root only (netns, nft)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from minik8s.cluster import lockdown

PREFIX = "mk8slt-"
POD, NODE, HEAD = f"{PREFIX}pod", f"{PREFIX}node", f"{PREFIX}head"
POD_IP, POD_GW, NODE_IP, HEAD_IP = "10.99.1.2", "10.99.1.1", "10.98.0.11", "10.98.0.1"
SPEC = lockdown.LockdownSpec(f"{PREFIX}lockdown", "10.99.0.0/16", (HEAD_IP,), guarded=(lockdown.ANYWHERE,),
                             api_ports=(6443, 10280), pod_bridge="mk8sltn")
#: head: the API, DNS (tcp), etcd, the registry; node: a kubelet and a raylet on wildcard addresses.
HEAD_PORTS, NODE_PORTS, NODE_PORTS6 = (6443, 53, 12379, 5000), (10250, 31000, 40000), (40001,)
CONNECT = textwrap.dedent("""\
    import socket, sys
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print("open")
    except OSError as e:
        print(type(e).__name__)
    """)
LISTEN = textwrap.dedent("""\
    import socket, sys, time
    socks = []
    for port in sys.argv[3:]:
        s = socket.socket(int(sys.argv[2])); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], int(port))); s.listen(16); socks.append(s)
    print("ready", flush=True)
    time.sleep(600)
    """)


def _ns(netns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True, timeout=30)


def _connect(netns: str, host: str, port: int) -> str:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CONNECT, host, str(port)],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def _listen(netns: str, addr: str, ports: tuple[int, ...], family: int = socket.AF_INET) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", LISTEN, addr, str(int(family)),
                             *map(str, ports)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(scope="module")
def topology() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, nftables)")
    for ns in (POD, NODE, HEAD):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        subprocess.run(["ip", "link", "add", "mk8sltp", "netns", POD, "type", "veth", "peer", "mk8sltn", "netns",
                        NODE], check=True)
        subprocess.run(["ip", "link", "add", "mk8slth", "netns", HEAD, "type", "veth", "peer", "mk8sltu", "netns",
                        NODE], check=True)
        _ns(POD, "ip", "addr", "add", f"{POD_IP}/24", "dev", "mk8sltp")
        _ns(NODE, "ip", "addr", "add", f"{POD_GW}/24", "dev", "mk8sltn")
        _ns(NODE, "ip", "addr", "add", f"{NODE_IP}/24", "dev", "mk8sltu")
        _ns(HEAD, "ip", "addr", "add", f"{HEAD_IP}/24", "dev", "mk8slth")
        for ns, dev in ((POD, "mk8sltp"), (NODE, "mk8sltn"), (NODE, "mk8sltu"), (HEAD, "mk8slth")):
            _ns(ns, "ip", "link", "set", dev, "up")
        _ns(POD, "ip", "route", "add", "default", "via", POD_GW)
        _ns(HEAD, "ip", "route", "add", "10.99.0.0/16", "via", NODE_IP)
        _ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        procs = [_listen(HEAD, HEAD_IP, HEAD_PORTS), _listen(NODE, "0.0.0.0", NODE_PORTS),
                 _listen(NODE, "::", NODE_PORTS6, socket.AF_INET6),
                 _listen(POD, POD_IP, (8080,))]
        lockdown.ensure(SPEC, NODE)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in (POD, NODE, HEAD):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_pod_reaches_the_api_and_dns_and_nothing_else(topology: None) -> None:
    got = {(h, p): _connect(POD, h, p) for h, ports in ((HEAD_IP, HEAD_PORTS), (NODE_IP, NODE_PORTS),
                                                        (POD_GW, NODE_PORTS)) for p in ports}
    opened = {k for k, v in got.items() if v == "open"}
    assert opened == {(HEAD_IP, 6443), (HEAD_IP, 53)}, got
    # Refused at once with a reset (never a silent drop: a sweep would hang on every port).
    assert {v for k, v in got.items() if k not in opened} == {"ConnectionRefusedError"}


def _link_local(netns: str, dev: str) -> str:
    deadline = time.monotonic() + 10  # the address appears once duplicate address detection is done
    while True:
        out = subprocess.run(["ip", "netns", "exec", netns, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope",
                              "link"], capture_output=True, text=True, check=True).stdout.split()
        if "inet6" in out and "tentative" not in out:
            return out[out.index("inet6") + 1].split("/")[0]
        assert time.monotonic() < deadline, f"no IPv6 link-local address on {dev} in {netns}"
        time.sleep(0.2)


def test_a_pod_cannot_walk_around_over_ipv6_link_local(topology: None) -> None:
    node_ll = _link_local(NODE, "mk8sltn")
    _link_local(POD, "mk8sltp")  # a tentative source address cannot send yet
    assert _connect(POD, f"{node_ll}%mk8sltp", NODE_PORTS6[0]) == "TimeoutError"  # dropped
    lockdown.remove(SPEC.table, NODE)
    try:  # without the table the listener does answer there: the probe is a real one
        assert _connect(POD, f"{node_ll}%mk8sltp", NODE_PORTS6[0]) == "open"
    finally:
        lockdown.ensure(SPEC, NODE)


def test_nodes_and_the_head_are_not_affected(topology: None) -> None:
    assert _connect(NODE, HEAD_IP, 12379) == "open"  # the node itself (raylet, dockerd pulls) is no pod
    assert _connect(HEAD, NODE_IP, 10250) == "open"  # the API server reaching a kubelet
    assert _connect(HEAD, POD_IP, 8080) == "open"  # toward pods: replies are established traffic
    assert _connect(NODE, POD_IP, 8080) == "open"


def test_the_table_is_what_refuses_and_it_is_removed_cleanly(topology: None) -> None:
    assert _connect(POD, HEAD_IP, 12379) == "ConnectionRefusedError"
    lockdown.remove(SPEC.table, NODE)
    try:
        assert not lockdown.present(SPEC.table, NODE)
        deadline = time.monotonic() + 5
        while _connect(POD, HEAD_IP, 12379) != "open":
            assert time.monotonic() < deadline, "etcd's port stayed closed without the table"
        lockdown.remove(SPEC.table, NODE)  # removing twice is fine (`down` twice)
    finally:
        lockdown.ensure(SPEC, NODE)
    assert _connect(POD, HEAD_IP, 12379) == "ConnectionRefusedError"
