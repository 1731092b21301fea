"""NetworkPolicy end to end, through kubectl as a user drives it: pods on three nodes, policies applied and
removed, reachability seen from inside the pods (`wget` with a 2 s limit).

Layout per test (its own namespace): `web` (app=web, httpd on 8080 named `http`) on node-1, `client`
(role=client) on node-2 and `other` (role=other, also an httpd) on node-3, plus a Service `web` on port 80.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import kubectl, wait_for

HTTPD = "mkdir -p /www && hostname > /www/index.html && httpd -f -p 8080 -h /www"
POLICY_S = 30.0  # generous: the agent applies within ~2 s, the rest is kubectl and exec round trips


@dataclass(frozen=True)
class Layout:
    kc: Path
    ns: str
    web_ip: str
    other_ip: str
    client_ip: str
    vip: str


def pod(name: str, node: str, labels: str, command: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, labels: {{{labels}}}}}
        spec:
          nodeSelector: {{kubernetes.io/hostname: {node}}}
          terminationGracePeriodSeconds: 0
          containers:
          - name: main
            image: busybox
            command: [sh, -c, '{command}']
            ports: [{{name: http, containerPort: 8080}}]
        """)


SERVICE = textwrap.dedent("""\
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{name: http, port: 80, targetPort: http}]
    """)


def apply(layout: Layout, manifest: str) -> None:
    kubectl(layout.kc, "-n", layout.ns, "apply", "-f", "-", input=manifest)


def delete_policy(layout: Layout, *names: str) -> None:
    kubectl(layout.kc, "-n", layout.ns, "delete", "networkpolicy", *names)


def jsonpath(kc: Path, ns: str, kind: str, name: str, path: str) -> str:
    return kubectl(kc, "-n", ns, "get", kind, name, "-o", f"jsonpath={{{path}}}").stdout.strip()


@pytest.fixture
def layout(kubeconfig: Path, ns: str) -> Layout:
    manifest = "---\n".join([pod("web", "node-1", "app: web", HTTPD),
                             pod("client", "node-2", "role: client", "sleep 3600"),
                             pod("other", "node-3", "role: other", HTTPD), SERVICE])
    kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", input=manifest)
    kubectl(kubeconfig, "-n", ns, "wait", "--for=condition=Ready", "pod/web", "pod/client", "pod/other",
            "--timeout=120s")
    ips = {name: jsonpath(kubeconfig, ns, "pod", name, ".status.podIP") for name in ("web", "client", "other")}
    vip = jsonpath(kubeconfig, ns, "service", "web", ".spec.clusterIP")
    wait_for("the web Service's endpoint", lambda: jsonpath(kubeconfig, ns, "endpoints", "web",
                                                            ".subsets[0].addresses[0].ip") == ips["web"])
    layout = Layout(kubeconfig, ns, ips["web"], ips["other"], ips["client"], vip)
    for server in (ips["web"], ips["other"]):  # before any policy both servers answer the client
        becomes(layout, "client", f"http://{server}:8080/", "OK")
    return layout


def reach(layout: Layout, source: str, url: str) -> str:
    """OK or BLOCKED: one HTTP GET from inside pod `source`, given at most 2 s."""
    script = f"timeout 2 wget -qO- {url} >/dev/null 2>&1 && echo OK || echo BLOCKED"
    return kubectl(layout.kc, "-n", layout.ns, "exec", source, "--", "sh", "-c", script).stdout.strip()


def becomes(layout: Layout, source: str, url: str, want: str) -> None:
    wait_for(f"{source} -> {url} {want}", lambda: reach(layout, source, url) == want, timeout=POLICY_S)


def policy(name: str, spec: str) -> str:
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{body}"


DENY_INGRESS = policy("deny-ingress", """\
    podSelector: {}
    policyTypes: [Ingress]
    """)


def test_kubectl_serves_network_policies_and_refuses_bad_ones(kubeconfig: Path, ns: str) -> None:
    kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", input=policy("web", """\
        podSelector: {matchLabels: {app: web}}
        ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: http}]}]
        """))
    table = kubectl(kubeconfig, "-n", ns, "get", "netpol").stdout.splitlines()
    assert table[0].split() == ["NAME", "POD-SELECTOR", "AGE"]
    assert table[1].split()[:2] == ["web", "app=web"]
    assert jsonpath(kubeconfig, ns, "networkpolicy", "web", ".spec.policyTypes") == '["Ingress"]'
    assert jsonpath(kubeconfig, ns, "networkpolicy", "web", ".spec.ingress[0].ports[0].protocol") == "TCP"
    bad = kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", check=False, input=policy("bad", """\
        podSelector: {}
        ingress: [{ports: [{port: 90, endPort: 80}]}]
        """))
    assert bad.returncode == 1 and "spec.ingress[0].ports[0].endPort" in bad.stderr
    names = kubectl(kubeconfig, "-n", ns, "get", "netpol", "-o", "name").stdout.split()
    assert names == ["networkpolicy.networking.k8s.io/web"]


def test_default_deny_ingress_then_allow_by_label(layout: Layout) -> None:
    web = f"http://{layout.web_ip}:8080/"
    assert reach(layout, "other", web) == "OK"
    apply(layout, DENY_INGRESS)
    becomes(layout, "client", web, "BLOCKED")
    assert reach(layout, "other", web) == "BLOCKED"
    apply(layout, policy("clients-to-web", """\
        podSelector: {matchLabels: {app: web}}
        ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: http}]}]
        """))
    becomes(layout, "client", web, "OK")
    assert reach(layout, "other", web) == "BLOCKED"
    delete_policy(layout, "deny-ingress", "clients-to-web")
    becomes(layout, "other", web, "OK")


def test_default_deny_egress_then_allow_by_label_and_through_the_service(layout: Layout) -> None:
    web, other = f"http://{layout.web_ip}:8080/", f"http://{layout.other_ip}:8080/"
    apply(layout, policy("client-egress", """\
        podSelector: {matchLabels: {role: client}}
        policyTypes: [Egress]
        """))
    becomes(layout, "client", web, "BLOCKED")
    assert reach(layout, "client", other) == "BLOCKED"
    assert reach(layout, "other", web) == "OK"  # only the client is isolated
    apply(layout, policy("client-to-web", """\
        podSelector: {matchLabels: {role: client}}
        policyTypes: [Egress]
        egress:
        - to: [{podSelector: {matchLabels: {app: web}}}]
          ports: [{port: 8080}]
        - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
        """))
    becomes(layout, "client", web, "OK")
    assert reach(layout, "client", other) == "BLOCKED"
    # the Service's ClusterIP: every endpoint behind it is allowed, so the ClusterIP is
    becomes(layout, "client", f"http://{layout.vip}/", "OK")
    by_name = f"http://web.{layout.ns}.svc.cluster.local/"
    assert reach(layout, "client", by_name) == "OK"  # by name: DNS (53) is allowed too


def test_ip_block_lets_in_only_its_addresses(layout: Layout) -> None:
    web = f"http://{layout.web_ip}:8080/"
    apply(layout, policy("from-client-ip", f"""\
        podSelector: {{matchLabels: {{app: web}}}}
        ingress: [{{from: [{{ipBlock: {{cidr: {layout.client_ip}/32}}}}]}}]
        """))
    becomes(layout, "other", web, "BLOCKED")
    assert reach(layout, "client", web) == "OK"
