"""A pod's name resolution without a node: admission of dnsPolicy/dnsConfig/hostAliases/hostname, the
resolv.conf and /etc/hosts the kubelet writes, and cluster DNS answers for headless Services and the
hostname/subdomain of their pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnslib import RCODE, DNSRecord

from minik8s.api.services import Endpoints, Service
from minik8s.api.types import Pod
from minik8s.api.validation import validate_pod
from minik8s.controllers.endpoints import compute_subsets
from minik8s.dns.records import build_snapshot
from minik8s.kubelet.podnet import (
    DnsConfig,
    NodeFiles,
    etc_binds,
    hosts_file,
    parse_resolv_conf,
    pod_dns_config,
)

CLUSTER_DNS = ["10.96.0.10"]
NODE_DNS = DnsConfig(["127.0.0.53", "192.168.1.1"], ["corp.example"], ["edns0"])


def a_pod(name: str = "web-0", ns: str = "team", labels: dict[str, str] | None = None, **spec: Any) -> Pod:
    return Pod.model_validate({"metadata": {"name": name, "namespace": ns, "uid": "u-1", "labels": labels or {}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}})


# --- admission ----------------------------------------------------------------------------------------

def test_dns_policy_none_needs_a_nameserver() -> None:
    assert validate_pod(a_pod(dnsPolicy="None")) == [
        ("spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None")]
    assert validate_pod(a_pod(dnsPolicy="None", dnsConfig={"searches": ["a.example"]})) == [
        ("spec.dnsConfig.nameservers", "Required value: must provide at least one DNS nameserver when `dnsPolicy` "
                                       "is None")]
    assert validate_pod(a_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"]})) == []


def test_bad_dns_settings_are_refused_naming_the_field() -> None:
    found = dict(validate_pod(a_pod(dnsPolicy="Cluster", dnsConfig={
        "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "nope"],
        "searches": [f"s{i}.example" for i in range(32)] + ["Bad_Domain"],
        "options": [{"value": "2"}]})))
    assert found.pop("spec.dnsPolicy").startswith('Unsupported value: "Cluster": supported values: '
                                                  '"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"')
    assert "must not have more than 3 nameservers" in found.pop("spec.dnsConfig.nameservers")
    assert found.pop("spec.dnsConfig.nameservers[3]") == 'Invalid value: "nope": must be valid IP address'
    assert "must not have more than 32 search paths" in found.pop("spec.dnsConfig.searches")
    assert "RFC 1123" in found.pop("spec.dnsConfig.searches[32]")
    assert found.pop("spec.dnsConfig.options[0].name").startswith("Required value")
    assert found == {}
    assert validate_pod(a_pod(dnsConfig={"searches": ["trailing.dot.example."]})) == []


def test_host_aliases_and_hostname_are_checked() -> None:
    found = dict(validate_pod(a_pod(hostname="Web_0", subdomain="a.b", hostAliases=[
        {"ip": "10.0.0.300", "hostnames": ["ok.example"]}, {"ip": "10.0.0.3", "hostnames": ["not ok"]}])))
    assert found.pop("spec.hostAliases[0].ip") == 'Invalid value: "10.0.0.300": must be a valid IP address'
    assert "RFC 1123" in found.pop("spec.hostAliases[1].hostnames[0]")
    assert "RFC 1123 label" in found.pop("spec.hostname") and "RFC 1123 label" in found.pop("spec.subdomain")
    assert found == {}
    # Kubernetes writes hostAliases into a host-network pod's hosts file too (since 1.8): admitted
    assert validate_pod(a_pod(hostNetwork=True, hostAliases=[{"ip": "fd00::1", "hostnames": ["v6.example"]}])) == []


# --- resolv.conf --------------------------------------------------------------------------------------------

def test_dns_config_is_merged_as_the_kubelet_does() -> None:
    pod = a_pod(dnsConfig={"nameservers": ["10.96.0.10", "1.1.1.1"], "searches": ["extra.example", "cluster.local"],
                           "options": [{"name": "ndots", "value": "5"}, {"name": "single-request"}]})
    conf = pod_dns_config(pod, CLUSTER_DNS, "cluster.local", NODE_DNS)
    assert conf.nameservers == ["10.96.0.10", "1.1.1.1"]  # appended without duplicates
    assert conf.searches == ["team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
                             "extra.example"]
    assert conf.options == ["ndots:5", "single-request"]  # same name replaced, new ones appended
    assert conf.render() == ("search team.svc.cluster.local svc.cluster.local cluster.local corp.example "
                             "extra.example\nnameserver 10.96.0.10\nnameserver 1.1.1.1\n"
                             "options ndots:5 single-request\n")


def test_policy_none_is_only_the_dns_config() -> None:
    pod = a_pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "options": [{"name": "timeout",
                                                                                      "value": "1"}]})
    assert pod_dns_config(pod, CLUSTER_DNS, "cluster.local", NODE_DNS).render() == \
        "nameserver 1.1.1.1\noptions timeout:1\n"


def test_default_policy_is_the_nodes_resolver_without_its_loopback_stub() -> None:
    conf = pod_dns_config(a_pod(dnsPolicy="Default"), CLUSTER_DNS, "cluster.local", NODE_DNS)
    assert conf == DnsConfig(["192.168.1.1"], ["corp.example"], ["edns0"])
    # ClusterFirst on the host network falls back to Default; there the node's loopback is the node's
    host = pod_dns_config(a_pod(hostNetwork=True), CLUSTER_DNS, "cluster.local", NODE_DNS)
    assert host.nameservers == ["127.0.0.53", "192.168.1.1"]
    with_host_net = pod_dns_config(a_pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), CLUSTER_DNS,
                                   "cluster.local", NODE_DNS)
    assert with_host_net.nameservers == CLUSTER_DNS


def test_over_the_limits_is_trimmed_with_a_warning() -> None:
    warnings: list[str] = []
    pod = a_pod(dnsConfig={"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"]})
    conf = pod_dns_config(pod, CLUSTER_DNS, "cluster.local", NODE_DNS, warnings)
    assert conf.nameservers == ["10.96.0.10", "1.1.1.1", "8.8.8.8"]
    assert warnings == ["Nameserver limits were exceeded, some nameservers have been omitted, the applied "
                        "nameserver line is: 10.96.0.10 1.1.1.1 8.8.8.8"]


def test_parse_resolv_conf() -> None:
    text = "# generated\nnameserver 10.0.0.2\nnameserver 10.0.0.3 ; second\nsearch a.example b.example\n" \
           "options ndots:1 rotate\ndomain ignored.example\n"
    assert parse_resolv_conf(text) == DnsConfig(["10.0.0.2", "10.0.0.3"], ["a.example", "b.example"],
                                                ["ndots:1", "rotate"])


# --- /etc/hosts -----------------------------------------------------------------------------------------------

BOILERPLATE = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def test_hosts_file_with_fqdn_and_host_aliases() -> None:
    pod = a_pod(hostname="db-0", subdomain="db", hostAliases=[
        {"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}, {"ip": "fd00::1", "hostnames": ["v6.local"]}])
    assert hosts_file(pod, "10.244.1.7", "cluster.local") == BOILERPLATE + (
        "10.244.1.7\tdb-0.db.team.svc.cluster.local\tdb-0\n"
        "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\nfd00::1\tv6.local\n")
    assert hosts_file(a_pod(), "10.244.1.7", "cluster.local") == BOILERPLATE + "10.244.1.7\tweb-0\n"
    long_name = a_pod(name="x" * 62 + "-y" + "z" * 10)
    assert hosts_file(long_name, "10.244.1.7", "cluster.local").endswith("\t" + "x" * 62 + "\n")  # cut, no '-'


def test_host_network_hosts_file_is_the_nodes_plus_aliases() -> None:
    pod = a_pod(hostNetwork=True, hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local"]}])
    assert hosts_file(pod, "192.168.0.2", "cluster.local", "127.0.0.1 localhost\n192.168.0.2 node-1") == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.0.2 node-1\n"
        "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\n")


def test_etc_files_are_written_in_place_and_a_users_own_mount_wins(tmp_path: Path) -> None:
    node = NodeFiles(resolv_conf=tmp_path / "node-resolv.conf", hosts=tmp_path / "node-hosts")
    node.resolv_conf.write_text("nameserver 192.168.1.1\n")
    pod_dir = tmp_path / "pod"
    pod = a_pod(dnsConfig={"searches": ["extra.example"]})
    binds = etc_binds(pod_dir, pod, "10.244.1.7", CLUSTER_DNS, "cluster.local", node, set())
    assert binds == [f"{pod_dir}/etc-hosts:/etc/hosts:rw", f"{pod_dir}/resolv.conf:/etc/resolv.conf:rw"]
    assert "extra.example" in (pod_dir / "resolv.conf").read_text()
    inode = (pod_dir / "etc-hosts").stat().st_ino
    etc_binds(pod_dir, pod, "10.244.1.9", CLUSTER_DNS, "cluster.local", node, set())  # a new sandbox address
    assert (pod_dir / "etc-hosts").stat().st_ino == inode  # running containers' bind mounts see the change
    assert "10.244.1.9\tweb-0\n" in (pod_dir / "etc-hosts").read_text()
    assert etc_binds(pod_dir, pod, "10.244.1.9", CLUSTER_DNS, "cluster.local", node, {"/etc/hosts"}) == \
        [f"{pod_dir}/resolv.conf:/etc/resolv.conf:rw"]


# --- cluster DNS for headless Services --------------------------------------------------------------------

def service(name: str, ip: str, ports: list[dict[str, Any]] | None = None) -> Service:
    spec: dict[str, Any] = {"clusterIP": ip, "selector": {"app": name}}
    if ports is not None:
        spec["ports"] = ports
    return Service.model_validate({"metadata": {"name": name, "namespace": "team"}, "spec": spec})


def running(pod: Pod, ip: str, ready: bool = True) -> Pod:
    return pod.model_copy(update={"status": Pod.model_validate({"spec": {"containers": []}, "status": {
        "phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]}}).status})


def endpoints_of(svc: Service, pods: list[Pod]) -> Endpoints:
    subsets, _ = compute_subsets(svc, pods)
    return Endpoints.model_validate({"metadata": {"name": svc.metadata.name, "namespace": "team"},
                                     "subsets": subsets})


def ask(snap: Any, name: str, qtype: str = "A") -> DNSRecord:
    raw = snap.respond(DNSRecord.question(name, qtype).pack())
    assert raw is not None
    return DNSRecord.parse(raw)


def test_endpoints_carry_the_hostname_of_pods_in_the_services_subdomain() -> None:
    db = service("db", "None", [{"name": "pg", "port": 5432}])
    pods = [running(a_pod("db-0", labels={"app": "db"}, hostname="db-0", subdomain="db"), "10.244.1.3"),
            running(a_pod("db-1", labels={"app": "db"}, hostname="db-1", subdomain="other"), "10.244.1.4")]
    addresses = compute_subsets(db, pods)[0][0]["addresses"]
    assert [(a["ip"], a.get("hostname")) for a in addresses] == [("10.244.1.3", "db-0"), ("10.244.1.4", None)]
    portless = compute_subsets(service("db", "None"), pods)[0]
    assert [a["ip"] for a in portless[0]["addresses"]] == ["10.244.1.3", "10.244.1.4"] and "ports" not in portless[0]


def test_headless_service_answers_with_ready_pods_and_their_hostnames() -> None:
    db = service("db", "None", [{"name": "pg", "port": 5432}])
    web = service("web", "10.96.0.20", [{"port": 80}])
    pods = [running(a_pod("db-0", labels={"app": "db"}, hostname="db-0", subdomain="db"), "10.244.1.3"),
            running(a_pod("db-1", labels={"app": "db"}), "10.244.1.4"),
            running(a_pod("db-2", labels={"app": "db"}, hostname="db-2", subdomain="db"), "10.244.1.5", ready=False)]
    snap = build_snapshot([db, web], [], endpoints=[endpoints_of(db, pods), endpoints_of(web, [])])
    reply = ask(snap, "db.team.svc.cluster.local")
    assert sorted(str(rr.rdata) for rr in reply.rr) == ["10.244.1.3", "10.244.1.4"]  # not the unready db-2
    assert [str(rr.rdata) for rr in ask(snap, "DB-0.db.team.svc.cluster.local").rr] == ["10.244.1.3"]
    assert [str(rr.rdata) for rr in ask(snap, "10-244-1-4.db.team.svc.cluster.local").rr] == ["10.244.1.4"]
    assert ask(snap, "db-2.db.team.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    srv = ask(snap, "_pg._tcp.db.team.svc.cluster.local", "SRV")
    assert sorted((rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr) == [
        (5432, "10-244-1-4.db.team.svc.cluster.local."), (5432, "db-0.db.team.svc.cluster.local.")]
    assert [str(rr.rdata) for rr in ask(snap, "web.team.svc.cluster.local").rr] == ["10.96.0.20"]
    empty = build_snapshot([db], [], endpoints=[endpoints_of(db, [])])
    none = ask(empty, "db.team.svc.cluster.local")
    assert none.header.rcode == RCODE.NOERROR and not none.rr  # the name exists, no ready address: NODATA
