"""NetworkPolicy semantics: policies + pods + namespaces -> each pod's nftables table (no kernel)."""

from __future__ import annotations

from typing import Any

import pytest

from minik8s.netpol import rules as r
from minik8s.netpol.agent import PolicyAgent, PolicyAgentConfig

Obj = dict[str, Any]


def pod(name: str, ip: str, ns: str = "default", labels: dict[str, str] | None = None,
        ports: list[Obj] | None = None, node: str = "node-1") -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox", "ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip}}


def policy(name: str, spec: Obj, ns: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


SERVER = pod("server", "10.244.1.10", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
CLIENT = pod("client", "10.244.2.20", labels={"role": "client"})
OTHER = pod("other", "10.244.2.21", labels={"role": "other"})
REMOTE = pod("remote", "10.244.3.30", ns="team", labels={"role": "client"})
NAMESPACES = {"default": {}, "team": {"tier": "trusted"}}


def view(*policies: Obj, pods: list[Obj] | None = None, **extra: Any) -> r.ClusterView:
    return r.ClusterView(policies=list(policies), pods=pods or [SERVER, CLIENT, OTHER, REMOTE],
                         namespaces=dict(NAMESPACES), **extra)


def chain(table: str, name: str) -> list[str]:
    """The lines of one chain of a rendered table."""
    lines = table.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1:end]]


WEB = {"matchLabels": {"app": "web"}}


def test_a_pod_no_policy_selects_is_not_isolated() -> None:
    table = r.render_pod_table(SERVER, view())
    assert chain(table, "input") == ["type filter hook input priority filter; policy accept;"]
    assert chain(table, "output") == ["type filter hook output priority filter; policy accept;"]
    assert table.startswith("table inet minik8s-netpol {")


def test_default_deny_ingress_keeps_loopback_established_and_the_node() -> None:
    v = view(policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    table = r.render_pod_table(SERVER, v, host_ips=["10.244.1.1"])
    assert chain(table, "input") == ["type filter hook input priority filter; policy drop;", 'iif "lo" accept',
                                     "ct state established,related accept", "ip saddr 10.244.1.1 accept"]
    assert "policy accept" in chain(table, "output")[0]  # egress is not isolated by an Ingress-only policy
    assert not r.allows_ingress(SERVER, CLIENT["status"]["podIP"], 80, "TCP", v)


def test_pod_selector_peer_lets_only_matching_pods_of_the_policy_namespace_in() -> None:
    v = view(policy("allow", {"podSelector": WEB, "ingress": [{"from": [{"podSelector": {
        "matchLabels": {"role": "client"}}}]}]}))
    assert "ip saddr 10.244.2.20 accept" in chain(r.render_pod_table(SERVER, v), "input")
    assert r.allows_ingress(SERVER, "10.244.2.20", 80, "TCP", v)
    assert not r.allows_ingress(SERVER, "10.244.2.21", 80, "TCP", v)
    assert not r.allows_ingress(SERVER, "10.244.3.30", 80, "TCP", v)  # same label, other namespace
    # the client itself is not selected: not isolated
    assert "policy accept" in chain(r.render_pod_table(CLIENT, v), "input")[0]


def test_namespace_and_pod_selector_together_mean_those_pods_in_those_namespaces() -> None:
    both = {"namespaceSelector": {"matchLabels": {"tier": "trusted"}},
            "podSelector": {"matchLabels": {"role": "client"}}}
    v = view(policy("allow", {"podSelector": WEB, "ingress": [{"from": [both]}]}))
    assert "ip saddr 10.244.3.30 accept" in chain(r.render_pod_table(SERVER, v), "input")
    assert not r.allows_ingress(SERVER, "10.244.2.20", 80, "TCP", v)
    by_name = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}
    v = view(policy("allow", {"podSelector": WEB, "ingress": [{"from": [by_name]}]}))
    line = "ip saddr { 10.244.1.10, 10.244.2.20, 10.244.2.21 } accept"
    assert line in chain(r.render_pod_table(SERVER, v), "input")


def test_ip_block_with_except_and_ports_with_ranges_and_protocols() -> None:
    spec = {"podSelector": WEB, "ingress": [{
        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.2.0/24"]}}],
        "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}, {"protocol": "UDP", "port": 53},
                  {"protocol": "TCP", "port": 80}]}]}
    v = view(policy("blocks", spec))
    lines = chain(r.render_pod_table(SERVER, v), "input")
    assert "ip saddr 10.0.0.0/8 ip saddr != 10.244.2.0/24 tcp dport { 80, 8000-8100 } accept" in lines
    assert "ip saddr 10.0.0.0/8 ip saddr != 10.244.2.0/24 udp dport 53 accept" in lines
    assert r.allows_ingress(SERVER, "10.244.3.30", 8050, "TCP", v)
    assert not r.allows_ingress(SERVER, "10.244.3.30", 8101, "TCP", v)
    assert not r.allows_ingress(SERVER, "10.244.2.20", 80, "TCP", v)  # excepted
    assert not r.allows_ingress(SERVER, "192.168.0.1", 80, "TCP", v)


def test_named_ingress_port_resolves_against_the_selected_pod() -> None:
    v = view(policy("named", {"podSelector": WEB, "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}))
    assert "tcp dport 8080 accept" in chain(r.render_pod_table(SERVER, v), "input")
    v = view(policy("named", {"podSelector": WEB, "ingress": [{"ports": [{"port": "metrics"}]}]}))
    lines = chain(r.render_pod_table(SERVER, v), "input")
    assert lines[-1] == "ct state established,related accept"  # nothing resolves: nothing allowed


def test_empty_rule_allows_everything_and_rules_of_several_policies_add_up() -> None:
    deny = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    allow_all = policy("all", {"podSelector": WEB, "ingress": [{}]})
    assert "accept" in chain(r.render_pod_table(SERVER, view(deny, allow_all)), "input")
    assert r.allows_ingress(SERVER, "1.2.3.4", 1, "UDP", view(deny, allow_all))


def test_policy_types_default_and_egress_only_policies() -> None:
    assert r.policy_types({"spec": {"egress": [{}]}}) == ["Ingress", "Egress"]
    assert r.policy_types({"spec": {}}) == ["Ingress"]
    v = view(policy("out", {"podSelector": {}, "policyTypes": ["Egress"]}))
    table = r.render_pod_table(CLIENT, v, host_ips=["10.244.2.1", "10.200.0.12"])
    assert "policy accept" in chain(table, "input")[0]
    assert chain(table, "output") == ["type filter hook output priority filter; policy drop;", 'oif "lo" accept',
                                      "ct state established,related accept", "ip daddr 10.200.0.12 accept",
                                      "ip daddr 10.244.2.1 accept"]  # to its own node: always allowed


def test_egress_named_port_resolves_per_destination_pod() -> None:
    other_web = pod("web2", "10.244.1.11", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 9090}])
    spec = {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": WEB}], "ports": [{"port": "http", "protocol": "TCP"}]},
                       {"ports": [{"port": 53, "protocol": "UDP"}]}]}
    v = view(policy("egress", spec), pods=[SERVER, CLIENT, other_web])
    lines = chain(r.render_pod_table(CLIENT, v), "output")
    assert "ip daddr 10.244.1.10 tcp dport 8080 accept" in lines
    assert "ip daddr 10.244.1.11 tcp dport 9090 accept" in lines
    assert "udp dport 53 accept" in lines
    assert r.allows_egress(CLIENT, "10.244.1.11", 9090, "TCP", v)
    assert not r.allows_egress(CLIENT, "10.244.1.11", 8080, "TCP", v)


def service(name: str, vip: str, port: int, target: int) -> tuple[Obj, Obj]:
    svc = {"metadata": {"name": name, "namespace": "default"},
           "spec": {"clusterIP": vip, "ports": [{"port": port, "protocol": "TCP", "targetPort": target}]}}
    return svc, {"metadata": {"name": name, "namespace": "default"}, "subsets": []}


def test_egress_to_a_service_vip_needs_every_endpoint_allowed() -> None:
    svc, eps = service("web", "10.96.0.50", 80, 8080)
    spec = {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": WEB}], "ports": [{"port": 8080}]}]}
    eps["subsets"] = [{"addresses": [{"ip": "10.244.1.10"}], "ports": [{"port": 8080, "protocol": "TCP"}]}]
    v = view(policy("egress", spec), services=[svc], endpoints={("default", "web"): eps})
    assert "ip daddr 10.96.0.50 tcp dport 80 accept" in chain(r.render_pod_table(CLIENT, v), "output")
    # an endpoint the client may not reach (another pod): the VIP is no longer allowed
    eps["subsets"][0]["addresses"].append({"ip": "10.244.2.21"})
    assert "ip daddr 10.96.0.50 tcp dport 80 accept" not in chain(r.render_pod_table(CLIENT, v), "output")
    eps["subsets"] = []  # no endpoints: nothing to allow
    assert not any("10.96.0.50" in line for line in chain(r.render_pod_table(CLIENT, v), "output"))


def test_host_network_finished_and_unaddressed_pods_are_no_peers() -> None:
    done = pod("done", "10.244.2.99", labels={"role": "client"})
    done["status"]["phase"] = "Succeeded"
    waiting = pod("new", "", labels={"role": "client"})
    v = view(policy("allow", {"podSelector": WEB, "ingress": [{"from": [{"podSelector": {
        "matchLabels": {"role": "client"}}}]}]}), pods=[SERVER, CLIENT, done, waiting])
    assert "ip saddr 10.244.2.20 accept" in chain(r.render_pod_table(SERVER, v), "input")
    # a pod that just started here is known by its local address before the API has it
    v.local_ips["uid-default-new"] = "10.244.2.50"
    assert "ip saddr { 10.244.2.20, 10.244.2.50 } accept" in chain(r.render_pod_table(SERVER, v), "input")


def test_replace_script_swaps_the_table_in_one_transaction() -> None:
    script = r.replace_script(r.render_pod_table(SERVER, view()))
    assert script.startswith("table inet minik8s-netpol\ndelete table inet minik8s-netpol\ntable inet")


class _Sandbox:
    attrs = {"State": {"Pid": 4242}, "NetworkSettings": {"IPAddress": "10.244.1.10", "Gateway": "10.244.1.1"}}


def test_a_new_pod_starts_even_when_the_agent_never_synced() -> None:
    written: list[tuple[str, str]] = []
    agent = PolicyAgent(None, "node-1", None, config=PolicyAgentConfig(sandbox_wait_s=0.01),
                        apply=lambda netns, text: written.append((netns, text)))
    agent.program_sandbox(SERVER, _Sandbox())  # returns, nothing written, no exception
    assert written == [] and "10.244.1.1" in agent.host_ips


class _Container:
    def __init__(self, uid: str, pid: int) -> None:
        self.id = f"sandbox-{uid}"
        self.attrs: dict[str, Any] = {"Labels": {"io.kubernetes.pod.uid": uid}}
        self._pid = pid

    def reload(self) -> None:
        self.attrs["State"] = {"Pid": self._pid}


class _Docker:
    def __init__(self, *containers: _Container) -> None:
        self.running = list(containers)
        self.containers = self

    def list(self, **_filters: Any) -> list[_Container]:
        return self.running


def test_agent_sync_writes_changed_tables_of_local_running_pods_only() -> None:
    written: list[str] = []
    failing: set[str] = set()

    def apply(netns: str, text: str) -> None:
        if netns in failing:
            raise RuntimeError("nft -f failed")
        written.append(netns)

    remote_server = pod("server2", "10.244.2.30", labels={"app": "web"}, node="node-2")
    docker = _Docker(_Container("uid-default-server", 11), _Container("uid-default-client", 12))
    agent = PolicyAgent(None, "node-1", docker, apply=apply)
    current = view(pods=[SERVER, CLIENT, remote_server])
    agent.view = lambda: current  # type: ignore[method-assign]
    assert agent.sync() == 2 and sorted(written) == ["/proc/11/ns/net", "/proc/12/ns/net"]
    assert agent.sync() == 0  # nothing changed: nothing rewritten
    current = view(DENY_ALL, pods=[SERVER, CLIENT, remote_server])
    failing.add("/proc/12/ns/net")
    written.clear()
    with pytest.raises(RuntimeError, match="1 pod table"):
        agent.sync()
    assert written == ["/proc/11/ns/net"]  # the other pod's table was still brought up to date


DENY_ALL = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
