"""The pod network across nodes: pod to pod (TCP, UDP), node to pod, pod to node, over the VXLAN overlay."""

from __future__ import annotations

import subprocess

import docker
import httpx

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from tests.e2e.conftest import pod_on, run, unique, wait_for, wait_running

HTTPD = "echo from-node-3 > /tmp/index.html; httpd -f -p 8080 -h /tmp"
UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9000))\n"
            "while True:\n    data, peer = s.recvfrom(2048); s.sendto(b'echo:' + data, peer)\n")
UDP_CLIENT = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
              "s.sendto(b'ping', (sys.argv[1], 9000)); print(s.recvfrom(2048)[0].decode())\n")


def test_pods_on_different_nodes_talk_tcp_and_udp(client: Client, ns: str) -> None:
    server, udp, probe = unique("srv"), unique("udp"), unique("probe")
    run("apply", "-n", ns, "-f", "-", input="---\n".join([
        pod_on(server, "node-3", "busybox", ["sh", "-c", HTTPD]),
        pod_on(udp, "node-3", "python:3", ["python3", "-c", UDP_ECHO]),
        pod_on(probe, "node-1", "python:3", ["sleep", "3600"]),
    ]))
    server_ip = wait_running(client, server, namespace=ns).status.podIP
    udp_ip = wait_running(client, udp, namespace=ns).status.podIP
    wait_running(client, probe, namespace=ns)
    assert server_ip.startswith("10.244.3.") and udp_ip.startswith("10.244.3.")
    fetch = (f"import urllib.request; "
             f"print(urllib.request.urlopen('http://{server_ip}:8080/', timeout=3).read().decode())")

    def answer(*cmd: str) -> str | None:
        proc = run("exec", "-n", ns, probe, "--", *cmd, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    assert wait_for("TCP pod-to-pod across nodes", lambda: answer("python3", "-c", fetch)) == "from-node-3"
    assert wait_for("UDP pod-to-pod across nodes", lambda: answer("python3", "-c", UDP_CLIENT, udp_ip)) == "echo:ping"
    # the user's shell (root netns) and another node reach the pod
    assert httpx.get(f"http://{server_ip}:8080/", timeout=3).text.strip() == "from-node-3"
    other_node = subprocess.run(["ip", "netns", "exec", "mk8s-node-2", "python3", "-c", fetch], capture_output=True,
                                text=True, timeout=30)
    assert other_node.stdout.strip() == "from-node-3", other_node.stderr
    # ... but the pod does not reach a node's kubelet: nothing internal is reachable from pods (issue 12,
    # tests/e2e/test_lockdown.py sweeps every port); it is refused at once, not left to time out.
    to_node = ("import socket\ntry:\n    socket.create_connection(('10.200.0.13', 10250), timeout=3)\n"
               "except OSError as e:\n    print(type(e).__name__)\nelse:\n    print('open')\n")
    assert run("exec", "-n", ns, probe, "--", "python3", "-c", to_node).stdout.strip() == "ConnectionRefusedError"
    run("delete", "pod", "-n", ns, server, udp, probe, "--grace-period", "0")


def test_overlay_rules_follow_nodes_and_pod_ips_are_released(client: Client, ns: str) -> None:
    routes = subprocess.run(["ip", "netns", "exec", "mk8s-node-1", "ip", "route"], capture_output=True,
                            text=True).stdout
    assert "10.244.2.0/24 via 10.244.2.0 dev mk8s.vx" in routes and "10.244.3.0/24 via 10.244.3.0 dev mk8s.vx" in routes
    nft = subprocess.run(["ip", "netns", "exec", "mk8s-node-1", "nft", "list", "table", "ip", "minik8s-nat"],
                         capture_output=True, text=True).stdout
    assert "masquerade" in nft
    node = ClusterConfig().node(2)
    bridge = docker.DockerClient(base_url=node.docker_url).networks.get("bridge")

    def addresses() -> set[str]:  # the node's docker bridge: one address per pod (its pause container)
        bridge.reload()
        return {c["IPv4Address"].split("/")[0] for c in (bridge.attrs["Containers"] or {}).values()}

    names = [unique("ip") for _ in range(3)]
    pods = "---\n".join(pod_on(n, "node-2", "busybox", ["sleep", "3600"]) for n in names)
    run("apply", "-n", ns, "-f", "-", input=pods)
    ips = {wait_running(client, n, namespace=ns).status.podIP for n in names}
    assert len(ips) == 3 and ips <= addresses()
    run("delete", "pod", "-n", ns, *names, "--grace-period", "0")
    wait_for("the pod IPs to be released", lambda: not ips & addresses(), timeout=30)
