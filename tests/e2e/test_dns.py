"""Cluster DNS and the `DNS` kind with the path-routing gateway, as a user drives them."""

from __future__ import annotations

import subprocess
import time

import pytest

from minik8s import Client
from tests.e2e.conftest import run, sleeper_pod, unique, wait_for, web_app

RESOLVE = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"


def backend(name: str, reply: str) -> str:
    return web_app(name, command=f"mkdir -p /www/x && echo {reply} > /www/index.html && echo {reply}-x > "
                                 "/www/x/index.html && httpd -f -p 8080 -h /www")


def dns_object(name: str, host: str, paths: list[tuple[str, str]]) -> str:
    items = "".join(f"  - {{path: {p}, service: {s}, port: 80}}\n" for p, s in paths)
    return f"apiVersion: minik8s.io/v1\nkind: DNS\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n  paths:\n{items}"


@pytest.fixture(scope="module")
def pyprobe(client: Client, module_ns: str) -> str:
    """A Python pod in the module's namespace, where the tests that use it put their Services (so a Service's
    short name resolves through the pod's search path)."""
    with sleeper_pod(client, "resolver", image="python:3", node="node-2", namespace=module_ns) as name:
        yield name


def resolve(pod: str, host: str, ns: str) -> str:
    proc = run("exec", "-n", ns, pod, "--", "python3", "-c", RESOLVE, host, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def test_service_names_resolve_from_pods_and_nodes(client: Client, pyprobe: str, module_ns: str) -> None:
    ns = module_ns
    svc = unique("named")
    run("apply", "-n", ns, "-f", "-", input=backend(svc, "hello"))
    vip = client.get("Service", svc, ns).spec.clusterIP
    for name in (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc.cluster.local"):
        assert wait_for(f"{name} to resolve", lambda n=name: resolve(pyprobe, n, ns) == vip, timeout=10)
    node = subprocess.run(["ip", "netns", "exec", "mk8s-node-3", "python3", "-c", RESOLVE,
                           f"{svc}.{ns}.svc.cluster.local"], capture_output=True, text=True, timeout=20)
    assert node.stdout.strip() == vip, node.stderr
    t0 = time.monotonic()
    external = run("exec", "-n", ns, pyprobe, "--", "python3", "-c", RESOLVE, "example.org", check=False)
    assert external.returncode != 0 and time.monotonic() - t0 < 5  # NXDOMAIN, answered fast (incl. exec cost)
    run("delete", "-n", ns, "deploy", svc)
    run("delete", "-n", ns, "svc", svc)
    wait_for("the name to go away", lambda: resolve(pyprobe, f"{svc}.{ns}.svc.cluster.local", ns) == "", timeout=10)


def test_host_paths_route_to_services_and_follow_changes(client: Client, pyprobe: str, module_ns: str) -> None:
    ns = module_ns
    a, b, host, obj = unique("sa"), unique("sb"), f"{unique('shop')}.example.com", unique("routes")
    run("apply", "-n", ns, "-f", "-", input=backend(a, "reply-a") + "---\n" + backend(b, "reply-b"))
    run("apply", "-n", ns, "-f", "-", input=dns_object(obj, host, [("/a", a), ("/b", b)]))
    fetch = "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"

    def get(url: str) -> str:
        proc = run("exec", "-n", ns, pyprobe, "--", "python3", "-c", fetch, url, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    assert wait_for("/a through the gateway", lambda: get(f"http://{host}/a") == "reply-a", timeout=90)
    assert get(f"http://{host}/b") == "reply-b"
    assert get(f"http://{host}/b/x/") == "reply-b-x"  # the prefix is stripped
    from_node = subprocess.run(["ip", "netns", "exec", "mk8s-node-1", "python3", "-c", fetch, f"http://{host}/a"],
                               capture_output=True, text=True, timeout=30)
    assert from_node.stdout.strip() == "reply-a", from_node.stderr
    table = run("get", "dns", "-n", ns).stdout
    assert any(obj in line and host in line and "/a,/b" in line for line in table.splitlines()), table
    assert "ready" in run("describe", "dns", "-n", ns, obj).stdout

    run("apply", "-n", ns, "-f", "-", input=dns_object(obj, host, [("/a", b), ("/b", b)]))  # retarget /a
    assert wait_for("/a retargeted", lambda: get(f"http://{host}/a") == "reply-b", timeout=30)
    run("delete", "-n", ns, "dns", obj)
    assert wait_for("the host to be NXDOMAIN", lambda: resolve(pyprobe, host, ns) == "" or None, timeout=10) is not None
    run("delete", "-n", ns, "deploy", a, b)
    run("delete", "-n", ns, "svc", a, b)


@pytest.mark.parametrize("spec, expected", [
    ("host: bad_host!\n  paths: [{path: /a, service: s, port: 80}]", "spec.host"),
    ("host: ok.example.com\n  paths: [{path: a, service: s, port: 80}]", "spec.paths[0].path"),
    ("host: ok.example.com\n  paths: [{path: /a, service: s, port: 80}, {path: /a, service: t, port: 80}]",
     "spec.paths[1].path"),
])
def test_bad_dns_objects_are_rejected(ns: str, spec: str, expected: str) -> None:
    name = unique("baddns")
    proc = run("apply", "-n", ns, "-f", "-", input=f"apiVersion: minik8s.io/v1\nkind: DNS\nmetadata: {{name: {name}}}\n"
                                         f"spec:\n  {spec}\n", check=False)
    assert proc.returncode == 1 and expected in proc.stderr, proc.stderr


def test_two_objects_cannot_claim_one_host_and_path(ns: str) -> None:
    first, second, host = unique("claim"), unique("claim"), f"{unique('h')}.example.com"
    run("apply", "-n", ns, "-f", "-", input=dns_object(first, host, [("/x", "s")]))
    proc = run("apply", "-n", ns, "-f", "-", input=dns_object(second, host, [("/x", "t")]), check=False)
    assert proc.returncode == 1 and first in proc.stderr, proc.stderr
    run("delete", "-n", ns, "dns", first)
