"""Deployments behind Services: ClusterIP from pods on other nodes, NodePort from the shell, scaling,
replacement, rolling update with zero failed requests, undo, UDP, and rules removed with the Service."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time
from collections import Counter

import httpx
import pytest

from minik8s import Client
from tests.e2e.conftest import run, sleeper_pod, unique, wait_for

NODE_IPS = ["10.200.0.11", "10.200.0.12", "10.200.0.13"]
SERVE = 'mkdir -p /www && echo "$VERSION $(hostname)" > /www/index.html && httpd -f -p 8080 -h /www'


def deployment(name: str, version: str, replicas: int = 3, max_unavailable: int = 0) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: {max_unavailable}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: web
                image: busybox
                command: [sh, -c, '{SERVE}']
                env: [{{name: VERSION, value: {version}}}]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
        """)


def service(name: str, type_: str = "ClusterIP", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec:
          type: {type_}
          selector: {{app: {name}}}
          ports: [{{name: http, port: 80, targetPort: http{extra}}}]
        """)


def ready_endpoints(client: Client, name: str, ns: str) -> list[str]:
    ep = client.get("Endpoints", name, ns)
    return sorted(a.ip for s in ep.subsets or [] for a in s.addresses or [])


@pytest.fixture(scope="module")
def probe(client: Client, module_ns: str) -> str:
    """A client pod on node-3 (the backends may land anywhere, so most traffic crosses nodes), in the module's
    namespace, where the tests that use it put their Deployments and Services too."""
    with sleeper_pod(client, "client", node="node-3", namespace=module_ns) as name:
        yield name


def fetch_many(probe: str, url: str, n: int, ns: str) -> list[str]:
    script = f"for i in $(seq {n}); do timeout 3 wget -qO- {url} || echo FAIL; done"
    return run("exec", "-n", ns, probe, "--", "sh", "-c", script).stdout.split("\n")


def test_deployment_behind_cluster_ip_and_node_port(client: Client, probe: str, module_ns: str) -> None:
    ns = module_ns
    name = unique("web")
    run("apply", "-n", ns, "-f", "-", input=deployment(name, "v1") + "---\n" + service(name, "NodePort"))
    wait_for("3 ready endpoints", lambda: len(ready_endpoints(client, name, ns)) == 3, timeout=120)
    svc = client.get("Service", name, ns)
    vip, node_port = svc.spec.clusterIP, svc.spec.ports[0].nodePort
    assert vip.startswith("10.96.") and 30000 <= node_port <= 32767
    table = run("get", "svc", "-n", ns, name).stdout
    assert "NodePort" in table and vip in table and f"80:{node_port}/TCP" in table
    both = run("get", "deploy,svc", "-n", ns).stdout
    assert f"deployment/{name}" in both and f"service/{name}" in both
    pods = {p.metadata.name for p in client.list("Pod", ns, label_selector=f"app={name}").items}

    def all_replicas_answer() -> bool:
        lines = fetch_many(probe, f"http://{vip}/", 30, ns)
        return {line.split()[1] for line in lines if line.startswith("v1 ")} == pods

    wait_for("every replica to answer through the ClusterIP", all_replicas_answer, timeout=60)
    for ip in NODE_IPS:  # NodePort from the user's shell, on every node
        assert httpx.get(f"http://{ip}:{node_port}/", timeout=3).text.split()[1] in pods
    described = run("describe", "svc", "-n", ns, name).stdout
    assert all(f"{ip}:8080" in described for ip in ready_endpoints(client, name, ns)), described

    # scale to 5: new pods receive traffic
    run("scale", "deploy", "-n", ns, name, "--replicas", "5")
    wait_for("5 ready endpoints", lambda: len(ready_endpoints(client, name, ns)) == 5, timeout=120)
    pods = {p.metadata.name for p in client.list("Pod", ns, label_selector=f"app={name}").items
            if not p.metadata.deletionTimestamp}
    wait_for("all 5 replicas answering", all_replicas_answer, timeout=60)

    # delete a pod: replaced, and its endpoint goes
    victim = sorted(pods)[0]
    victim_ip = client.get("Pod", victim, ns).status.podIP
    run("delete", "-n", ns, "pod", victim, "--grace-period", "0")
    wait_for("the victim's endpoint gone and 5 ready again",
             lambda: victim_ip not in ready_endpoints(client, name, ns) and len(ready_endpoints(client, name, ns)) == 5,
             timeout=120)
    run("delete", "-n", ns, "deploy", name)
    run("delete", "-n", ns, "svc", name)


def test_rolling_update_loses_no_request_and_undo(client: Client, probe: str, module_ns: str) -> None:
    ns = module_ns
    name = unique("roll")
    run("apply", "-n", ns, "-f", "-", input=deployment(name, "v1") + "---\n" + service(name))
    wait_for("3 ready endpoints", lambda: len(ready_endpoints(client, name, ns)) == 3, timeout=120)
    vip = client.get("Service", name, ns).spec.clusterIP
    answers: Counter[str] = Counter()
    stop_file = f"/tmp/stop-{name}"
    # the load runs in the client pod until told to stop (bounded: 150 s), counting every answer
    script = (f"end=$(( $(date +%s) + 150 )); while [ ! -f {stop_file} ] && [ $(date +%s) -lt $end ]; do "
              f"timeout 3 wget -qO- http://{vip}/ || echo FAIL; sleep 0.05; done")

    def load() -> None:
        out = run("exec", "-n", ns, probe, "--", "sh", "-c", script, timeout=200).stdout
        answers.update(line.split()[0] if line.strip() else "EMPTY" for line in out.splitlines())

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(3)
    run("apply", "-n", ns, "-f", "-", input=deployment(name, "v2"))
    run("rollout", "status", "-n", ns, f"deploy/{name}", timeout=180)
    time.sleep(2)
    run("exec", "-n", ns, probe, "--", "touch", stop_file)
    th.join(60)
    assert answers["FAIL"] == 0 and answers["EMPTY"] == 0, answers
    assert answers["v1"] > 0 and answers["v2"] > 0
    tail = fetch_many(probe, f"http://{vip}/", 10, ns)
    assert all(line.startswith("v2 ") for line in tail if line), tail

    run("rollout", "undo", "-n", ns, f"deploy/{name}")
    run("rollout", "status", "-n", ns, f"deploy/{name}", timeout=180)
    wait_for("all v1 again", lambda: all(line.startswith("v1 ") for line in fetch_many(
        probe, f"http://{vip}/", 10, ns) if line), timeout=60)
    history = run("rollout", "history", "-n", ns, f"deploy/{name}").stdout
    assert "REVISION" in history
    run("delete", "-n", ns, "deploy", name)
    run("delete", "-n", ns, "svc", name)


def test_udp_service_and_two_selectors(client: Client, probe: str, module_ns: str) -> None:
    ns = module_ns
    udp = unique("dns")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {udp}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: {udp}}}}}
          template:
            metadata: {{labels: {{app: {udp}}}}}
            spec:
              containers:
              - name: echo
                image: "python:3"
                command: [python3, -c, "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
        s.bind(('0.0.0.0', 5353)); [s.sendto(b'udp-ok', a) for d, a in iter(lambda: s.recvfrom(512), None)]"]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {udp}}}
        spec:
          selector: {{app: {udp}}}
          ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5353}}]
        """))
    web = unique("web")
    run("apply", "-n", ns, "-f", "-", input=deployment(web, "v1", replicas=1) + "---\n" + service(web))
    wait_for("udp endpoints", lambda: len(ready_endpoints(client, udp, ns)) == 2, timeout=120)
    wait_for("web endpoints", lambda: len(ready_endpoints(client, web, ns)) == 1, timeout=120)
    vip = client.get("Service", udp, ns).spec.clusterIP
    send = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); "
            f"s.sendto(b'q', ('{vip}', 53)); print(s.recvfrom(512)[0].decode())")
    out = subprocess.run(["ip", "netns", "exec", "mk8s-node-1", "python3", "-c", send], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "udp-ok", out.stderr
    web_vip = client.get("Service", web, ns).spec.clusterIP
    assert fetch_many(probe, f"http://{web_vip}/", 3, ns)[0].startswith("v1 ")

    # deleting a Service removes its rules on every node
    rules = subprocess.run(["ip", "netns", "exec", "mk8s-node-2", "nft", "list", "ruleset"], capture_output=True,
                           text=True).stdout
    assert web_vip in rules
    run("delete", "-n", ns, "svc", web)
    wait_for("the VIP's rules gone", lambda: web_vip not in subprocess.run(
        ["ip", "netns", "exec", "mk8s-node-2", "nft", "list", "ruleset"], capture_output=True, text=True).stdout,
        timeout=10)
    run("delete", "-n", ns, "deploy", web, udp)
    run("delete", "-n", ns, "svc", udp)


@pytest.mark.parametrize("bad, expected", [
    ("ports: [{port: 70000}]", "spec.ports[0].port"),
    ("type: NodePort\n  ports: [{port: 80, nodePort: 1234}]", "spec.ports[0].nodePort"),
    ("ports: [{port: 80, protocol: SCTPX}]", "spec.ports[0].protocol"),
])
def test_bad_service_specs_are_rejected(client: Client, ns: str, bad: str, expected: str) -> None:
    name = unique("bad")
    proc = run("apply", "-n", ns, "-f", "-", input=f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
                                         f"spec:\n  selector: {{app: x}}\n  {bad}\n", check=False)
    assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
    assert name not in run("get", "svc", "-n", ns).stdout


def test_clashing_node_port_is_rejected(client: Client, ns: str) -> None:
    a, b = unique("np"), unique("np")
    run("apply", "-n", ns, "-f", "-", input=service(a, "NodePort", ", nodePort: 31555"))
    proc = run("apply", "-n", ns, "-f", "-", input=service(b, "NodePort", ", nodePort: 31555"), check=False)
    assert proc.returncode == 1 and "31555" in proc.stderr
    run("delete", "-n", ns, "svc", a)
