"""networking.k8s.io/v1 Ingress through kubectl, served by the same nginx gateway as the `DNS` kind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s import Client
from tests.e2e.conftest import run, sleeper_pod, unique, wait_for, web_app

FETCH = ("import urllib.request, sys\n"
         "req = urllib.request.Request(sys.argv[1], headers={'Host': sys.argv[2]} if len(sys.argv) > 2 else {})\n"
         "print(urllib.request.urlopen(req, timeout=5).read().decode())")
NODE_NETNS = "mk8s-node-1"


def backend(name: str, *files: tuple[str, str]) -> str:
    """A web_app whose busybox httpd serves `files` (path under /www, one word of content)."""
    writes = " && ".join(f"mkdir -p $(dirname /www{p}) && echo {body} > /www{p}" for p, body in files)
    return web_app(name, command=f"{writes} && httpd -f -p 8080 -h /www")


def ingress(name: str, host: str, paths: list[tuple[str, str, str]], default: str | None = None,
            extra_rules: str = "") -> str:
    items = "".join(f"      - {{path: {p}, pathType: {t}, backend: {{service: {{name: {s}, port: {{number: 80}}}}}}}}\n"
                    for p, t, s in paths)
    spec = f"  defaultBackend: {{service: {{name: {default}, port: {{name: http}}}}}}\n" if default else ""
    return (f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n{spec}"
            f"  rules:\n  - host: {host}\n    http:\n      paths:\n{items}{extra_rules}")


def kubectl(kc: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def apps(kubeconfig: Path, module_ns: str) -> Iterator[tuple[str, str]]:
    """Two backends in the module's namespace, where the tests put the Ingresses and DNS objects routing to them."""
    a, b = unique("ing-a"), unique("ing-b")
    kubectl(kubeconfig, "apply", "-n", module_ns, "-f", "-", input=backend(a, ("/app/index.html", "reply-a"),
                                                        ("/exact.txt", "exact-a"), ("/index.html", "root-a"),
                                                        ("/x/index.html", "x-a"))
            + "---\n" + backend(b, ("/index.html", "default-b")))
    for deployment in (a, b):  # routes are only worth probing once their backends serve
        kubectl(kubeconfig, "rollout", "status", "-n", module_ns, f"deployment/{deployment}", "--timeout=180s")
    yield a, b
    kubectl(kubeconfig, "delete", "-n", module_ns, "deploy,svc", a, b, check=False)


@pytest.fixture(scope="module")
def probe(client: Client, module_ns: str) -> Iterator[str]:
    with sleeper_pod(client, "ing-probe", image="python:3", node="node-2", namespace=module_ns) as name:
        yield name


def from_pod(pod: str, url: str, ns: str) -> str:
    proc = run("exec", "-n", ns, pod, "--", "python3", "-c", FETCH, url, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def from_node(url: str, host: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", NODE_NETNS, "python3", "-c", FETCH, url, host],
                          capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def test_ingress_routes_by_host_and_name_with_exact_prefix_wildcard_and_default_backend(
        client: Client, kubeconfig: Path, apps: tuple[str, str], probe: str, module_ns: str) -> None:
    a, b = apps
    ns = module_ns
    name, host, wild = unique("shop"), f"{unique('shop')}.example.com", f"{unique('w')}.example.com"
    to_a = f"{{service: {{name: {a}, port: {{name: http}}}}}}"
    wildcard_rule = (f"  - host: '*.{wild}'\n    http:\n      paths:\n"
                     f"      - {{path: /, pathType: Prefix, backend: {to_a}}}\n")
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=ingress(
        name, host, [("/app", "Prefix", a), ("/exact.txt", "Exact", a)], default=b, extra_rules=wildcard_rule))
    gateway_ip = client.get("Service", "gateway", "kube-system").spec.clusterIP

    # by DNS name from a pod: the Ingress host resolves to the gateway, the URI reaches the app unchanged
    try:
        wait_for("the Prefix path through the gateway",
                 lambda: from_pod(probe, f"http://{host}/app/index.html", ns) == "reply-a", timeout=180)
    except AssertionError as exc:  # say why: resolution, connection or the answer
        why = run("exec", "-n", ns, probe, "--", "python3", "-c", FETCH, f"http://{host}/app/index.html", check=False)
        raise AssertionError(f"{exc}\n{why.stdout}{why.stderr}") from None
    # by Host header from a node, at the gateway's address
    assert from_node(f"http://{gateway_ip}/exact.txt", host) == "exact-a"
    assert from_node(f"http://{gateway_ip}/", host) == "default-b"  # unmatched path: the default backend
    assert from_node(f"http://{gateway_ip}/exact.txt/more", host) == ""  # Exact is exact (backend b 404s)
    assert wait_for("the wildcard host", lambda: from_pod(probe, f"http://web.{wild}/index.html", ns) == "root-a",
                    timeout=30)

    table = kubectl(kubeconfig, "get", "ing", "-n", ns, name).stdout
    assert table.split("\n")[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], table
    row = table.split("\n")[1].split()
    assert row[:5] == [name, "minik8s", f"{host},*.{wild}", gateway_ip, "80"], table
    classes = kubectl(kubeconfig, "get", "ingressclass").stdout
    assert any(line.split()[:3] == ["minik8s", "minik8s.io/gateway", "<none>"] for line in classes.splitlines())

    kubectl(kubeconfig, "delete", "ing", "-n", ns, name)
    wait_for("the route to go", lambda: from_node(f"http://{gateway_ip}/exact.txt", host) == "", timeout=30)


def test_ingress_cannot_hijack_a_dns_route_and_is_told_why(client: Client, kubeconfig: Path, apps: tuple[str, str],
                                                           probe: str, module_ns: str) -> None:
    a, b = apps
    ns = module_ns
    host, owner, hijack = f"{unique('owned')}.example.com", unique("owner"), unique("hijack")
    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=(
        f"apiVersion: minik8s.io/v1\nkind: DNS\nmetadata: {{name: {owner}}}\n"
        f"spec:\n  host: {host}\n  paths:\n  - {{path: /x, service: {b}, port: 80}}\n"))
    assert wait_for("the DNS route", lambda: from_pod(probe, f"http://{host}/x/", ns) == "default-b", timeout=90)

    kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=ingress(hijack, host, [("/x", "Prefix", a)]))

    def described() -> str | None:
        out = kubectl(kubeconfig, "describe", "ing", "-n", ns, hijack).stdout
        return out if "HostPathConflict" in out else None

    described_text = wait_for("the conflict event", described, timeout=30)
    assert f"already routed by DNS {ns}/{owner}" in described_text, described_text
    assert from_pod(probe, f"http://{host}/x/", ns) == "default-b"  # still the DNS object's route
    lb = (client.get("Ingress", hijack, ns).to_dict().get("status") or {}).get("loadBalancer") or {}
    assert not lb.get("ingress")  # all it asked for is held: no address

    kubectl(kubeconfig, "delete", "dns", "-n", ns, owner)  # the owner goes: the Ingress gets the route and its address
    wait_for("the Ingress to take over", lambda: from_pod(probe, f"http://{host}/x/", ns) == "x-a", timeout=30)
    gateway_ip = client.get("Service", "gateway", "kube-system").spec.clusterIP
    assert wait_for("the address", lambda: gateway_ip in kubectl(kubeconfig, "get", "ing", "-n", ns, hijack).stdout,
                    timeout=30)
    kubectl(kubeconfig, "delete", "ing", "-n", ns, hijack)


def test_bad_ingresses_are_refused_naming_the_field(kubeconfig: Path, ns: str) -> None:
    name = unique("tls")
    manifest = ingress(name, "secure.example.com", [("/", "Prefix", "web")]) + \
        "  tls:\n  - {hosts: [secure.example.com], secretName: cert}\n"
    proc = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1 and "spec.tls" in proc.stderr, proc.stderr
    no_type = ingress(name, "a.example.com", [("/", "Prefix", "web")]).replace("pathType: Prefix, ", "")
    proc = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=no_type, check=False)
    assert proc.returncode == 1 and "spec.rules[0].http.paths[0].pathType" in proc.stderr, proc.stderr
    assert kubectl(kubeconfig, "get", "ing", "-n", ns, name, check=False).returncode == 1  # nothing was created
