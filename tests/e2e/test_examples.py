"""Every example in examples/ works as its header comment says to try it: applied with the CLI (each in a
namespace of its own), it reaches Running/Available and answers. examples/hpa is driven by
tests/e2e/test_autoscaling.py; test_every_example_is_checked keeps a new example from going untested."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from tests.e2e.conftest import REPO, run, unique, wait_for

EXAMPLES = Path(REPO) / "examples"
CHECKED_HERE = {"two-containers.yaml", "web-service.yaml", "ingress.yaml", "config-and-secret.yaml",
                "python-http.yaml", "hello-image/Dockerfile"}
CHECKED_ELSEWHERE = {"hpa/hpa.yaml", "hpa/load.yaml"}  # tests/e2e/test_autoscaling.py
READY_S = 120.0
NODE_IPS = ("10.200.0.11", "10.200.0.12", "10.200.0.13")


@pytest.fixture
def ns(client: Client) -> Iterator[str]:
    name = unique("ex")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    run("delete", "namespace", name, check=False)


def apply(ns: str, *files: str) -> None:
    args = [a for f in files for a in ("-f", str(EXAMPLES / f))]
    run("apply", *args, "-n", ns)


def ready(client: Client, ns: str, pod: str) -> bool:
    p = client.get("Pod", pod, ns)
    statuses = p.status.containerStatuses or []
    return p.status.phase == "Running" and bool(statuses) and all(s.ready for s in statuses)


def exec_out(ns: str, pod: str, *command: str, container: str | None = None) -> str:
    extra = ["-c", container] if container else []
    return run("exec", pod, "-n", ns, *extra, "--", *command).stdout


def test_every_example_is_checked() -> None:
    present = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*")
               if p.is_file() and (p.suffix == ".yaml" or p.name == "Dockerfile")}
    assert present == CHECKED_HERE | CHECKED_ELSEWHERE


def test_two_containers_share_localhost_and_a_volume(client: Client, ns: str) -> None:
    apply(ns, "two-containers.yaml")
    wait_for("pod web ready", lambda: ready(client, ns, "web"), timeout=READY_S)
    answer = exec_out(ns, "web", "wget", "-qO-", "http://localhost:8080/", container="client")
    assert answer.strip() == "hello from web"


def test_web_service_nodeport_dns_route_and_ingress(client: Client, ns: str) -> None:
    apply(ns, "web-service.yaml", "ingress.yaml")
    try:
        check_web_service(client, ns)
    finally:  # the gateway's routes and the NodePort are cluster-wide: gone before the next test, not later
        run("delete", "-f", str(EXAMPLES / "ingress.yaml"), "-f", str(EXAMPLES / "web-service.yaml"), "-n", ns)


def check_web_service(client: Client, ns: str) -> None:
    wait_for("deployment web available", lambda: (client.get("Deployment", "web", ns).status.availableReplicas
                                                  or 0) == 3, timeout=READY_S)
    pods = {p.metadata.name for p in client.list("Pod", ns).items}

    def answers(url: str, *curl: str) -> str | None:
        proc = subprocess.run(["curl", "-s", "-m", "3", *curl, url], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() in pods else None

    for ip in NODE_IPS:  # the NodePort on every node, from the machine (outside the cluster)
        wait_for(f"NodePort 30080 on {ip}", lambda ip=ip: answers(f"http://{ip}:30080/"), timeout=30)  # type: ignore[misc]
    def address() -> str | None:
        status = client.get("Ingress", "shop", ns).to_dict().get("status") or {}
        return next((i.get("ip") for i in (status.get("loadBalancer") or {}).get("ingress") or []), None)

    gateway = wait_for("the Ingress's address", address, timeout=30)
    for host in ("shop.example.com", "web.example.com"):  # the Ingress and the DNS route, through the gateway
        wait_for(f"{host} through the gateway", lambda h=host: subprocess.run(  # type: ignore[misc]
            ["ip", "netns", "exec", "mk8s-node-1", "curl", "-s", "-m", "3", "-H", f"Host: {h}", f"http://{gateway}/"],
            capture_output=True, text=True).stdout.strip() in pods, timeout=60)


def test_config_and_secret_as_env_and_files(client: Client, ns: str) -> None:
    apply(ns, "config-and-secret.yaml")
    wait_for("pod app-config-demo ready", lambda: ready(client, ns, "app-config-demo"), timeout=READY_S)
    assert "greeting=hello" in exec_out(ns, "app-config-demo", "cat", "/etc/app/app.conf")
    env = exec_out(ns, "app-config-demo", "env")
    assert "LOG_LEVEL=info" in env and "DB_PASSWORD=change-me" in env


def test_python_http_server(client: Client, ns: str) -> None:
    apply(ns, "python-http.yaml")
    wait_for("pod pyhttp ready", lambda: ready(client, ns, "pyhttp"), timeout=READY_S)
    code = exec_out(ns, "pyhttp", "python3", "-c",
                    "import urllib.request; print(urllib.request.urlopen('http://localhost:8000/').status)")
    assert code.strip() == "200"


def test_hello_image_builds_and_runs(client: Client, ns: str) -> None:
    tag = f"{unique('hello')}:v1"
    assert f"built and pushed {tag}" in run("image", "build", "-t", tag, str(EXAMPLES / "hello-image"),
                                            timeout=300).stdout
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
                   "spec": {"containers": [{"name": "hello", "image": tag, "readinessProbe": {
                       "tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}, ns)
    wait_for("pod hello ready", lambda: ready(client, ns, "hello"), timeout=READY_S)
    assert exec_out(ns, "hello", "wget", "-qO-", "http://localhost:8080/").strip() == "hello from a user image"
