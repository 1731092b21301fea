"""A pod's /etc/resolv.conf and /etc/hosts: the kubelet writes both under the pod's directory and mounts
them into every container (what Kubernetes' kubelet and CRI runtime do), so dnsPolicy, dnsConfig,
hostAliases, hostname and subdomain mean what they mean in Kubernetes.

resolv.conf follows the kubelet's `GetPodDNS`: ClusterFirst (and ClusterFirstWithHostNet) is the
cluster DNS with the namespace's search path and then the node's search domains; ClusterFirst on the
host network, Default, and ClusterFirst without a cluster DNS configured are the node's resolv.conf;
None is empty. dnsConfig is then merged: nameservers and searches appended without duplicates,
options replacing those of the same name; what is over glibc's limits is dropped with a warning.

The ndots option is the project's (`minik8s.dns.resolver` explains why 2, not Kubernetes' 5).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from minik8s.api.poddns import MAX_NAMESERVERS, MAX_SEARCH_CHARS, MAX_SEARCHES
from minik8s.api.types import Pod
from minik8s.dns.resolver import DEFAULT_NDOTS, pod_search

POLICY_CLUSTER_FIRST = "ClusterFirst"
POLICY_CLUSTER_FIRST_WITH_HOST_NET = "ClusterFirstWithHostNet"
POLICY_DEFAULT = "Default"
POLICY_NONE = "None"
ETC_HOSTS, ETC_RESOLV_CONF = "/etc/hosts", "/etc/resolv.conf"
HOSTS_FILE, RESOLV_FILE = "etc-hosts", "resolv.conf"
FILE_MODE = 0o644
MAX_HOSTNAME = 63
HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
HOST_ALIASES_HEADER = "# Entries added by HostAliases.\n"
#: The lines Kubernetes puts above the pod's own address.
HOSTS_BOILERPLATE = ("127.0.0.1\tlocalhost\n"
                     "::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\n"
                     "fe00::0\tip6-mcastprefix\n"
                     "fe00::1\tip6-allnodes\n"
                     "fe00::2\tip6-allrouters\n")


@dataclass
class DnsConfig:
    """The three things a resolv.conf says; options as `name` or `name:value`."""

    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        """resolv.conf text, in the CRI runtime's order (search, nameservers, options)."""
        out = ""
        if self.searches:
            out += "search " + " ".join(self.searches) + "\n"
        out += "".join(f"nameserver {ns}\n" for ns in self.nameservers)
        if self.options:
            out += "options " + " ".join(self.options) + "\n"
        return out


def parse_resolv_conf(text: str) -> DnsConfig:
    """The nameservers, search list and options of a resolv.conf (the last search/options line wins)."""
    conf = DnsConfig()
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            conf.nameservers.append(fields[1])
        elif fields[0] == "search":
            conf.searches = [s for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            conf.options = fields[1:]
    return conf


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _option_name(option: str) -> str:
    return option.split(":", 1)[0]


def merge_options(base: list[str], extra: list[tuple[str, str | None]]) -> list[str]:
    """dnsConfig options override the base's of the same name; new names are appended."""
    merged = {_option_name(o): o for o in base}
    for name, value in extra:
        merged[name] = f"{name}:{value}" if value is not None and value != "" else name
    return list(merged.values())


def dns_type(pod: Pod, cluster_dns: list[str]) -> str:
    """Which base the pod's resolv.conf starts from: ClusterFirst, Default (the node's) or None."""
    policy = pod.spec.dnsPolicy or POLICY_CLUSTER_FIRST
    if policy == POLICY_NONE:
        return POLICY_NONE
    cluster = policy == POLICY_CLUSTER_FIRST_WITH_HOST_NET or \
        (policy == POLICY_CLUSTER_FIRST and not pod.spec.hostNetwork)
    return POLICY_CLUSTER_FIRST if cluster and cluster_dns else POLICY_DEFAULT


def _node_config(pod: Pod, node: DnsConfig) -> DnsConfig:
    """The node's resolver as a pod sees it: a loopback nameserver is the pod's own loopback in a pod network
    namespace, so it is dropped there (as Docker does); a host-network pod keeps it."""
    servers = node.nameservers if pod.spec.hostNetwork else \
        [ns for ns in node.nameservers if not _is_loopback(ns)]
    return DnsConfig(list(servers), list(node.searches), list(node.options))


def _is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


def pod_dns_config(pod: Pod, cluster_dns: list[str], cluster_domain: str, node: DnsConfig,
                   warnings: list[str] | None = None) -> DnsConfig:
    """The pod's resolver settings; what goes over glibc's limits is dropped and described in `warnings`."""
    kind = dns_type(pod, cluster_dns)
    if kind == POLICY_NONE:
        conf = DnsConfig()
    elif kind == POLICY_CLUSTER_FIRST:
        namespace = pod.metadata.namespace or "default"
        conf = DnsConfig(list(cluster_dns), _unique(pod_search(namespace, cluster_domain) + node.searches),
                         [f"ndots:{DEFAULT_NDOTS}"])
    else:
        conf = _node_config(pod, node)
    extra = pod.spec.dnsConfig
    if extra is not None:
        conf.nameservers = _unique(conf.nameservers + list(extra.nameservers or []))
        conf.searches = _unique(conf.searches + list(extra.searches or []))
        conf.options = merge_options(conf.options, [(o.name or "", o.value) for o in extra.options or []])
    return _fit_limits(conf, warnings if warnings is not None else [])


def _fit_limits(conf: DnsConfig, warnings: list[str]) -> DnsConfig:
    if len(conf.nameservers) > MAX_NAMESERVERS:
        conf.nameservers = conf.nameservers[:MAX_NAMESERVERS]
        warnings.append("Nameserver limits were exceeded, some nameservers have been omitted, the applied "
                        f"nameserver line is: {' '.join(conf.nameservers)}")
    if len(conf.searches) > MAX_SEARCHES or len(" ".join(conf.searches)) > MAX_SEARCH_CHARS:
        kept: list[str] = []
        for s in conf.searches[:MAX_SEARCHES]:
            if len(" ".join([*kept, s])) > MAX_SEARCH_CHARS:
                break
            kept.append(s)
        conf.searches = kept
        warnings.append("Search Line limits were exceeded, some search paths have been omitted, the applied "
                        f"search line is: {' '.join(kept)}")
    return conf


# --- /etc/hosts ----------------------------------------------------------------------------------

def pod_hostname(pod: Pod) -> str:
    """spec.hostname, else the pod's name cut to a DNS label (63 characters, no trailing '-' or '.')."""
    if pod.spec.hostname:
        return pod.spec.hostname
    name = pod.metadata.name or ""
    return name[:MAX_HOSTNAME].rstrip("-.") if len(name) > MAX_HOSTNAME else name


def pod_domain(pod: Pod, cluster_domain: str) -> str | None:
    """`SUBDOMAIN.NS.svc.DOMAIN` for a pod with a subdomain: its hostname's domain in cluster DNS."""
    if not pod.spec.subdomain:
        return None
    return f"{pod.spec.subdomain}.{pod.metadata.namespace or 'default'}.svc.{cluster_domain}"


def _aliases_section(pod: Pod) -> str:
    aliases = pod.spec.hostAliases or []
    if not aliases:
        return ""
    lines = "".join(f"{a.ip}\t{chr(9).join(a.hostnames or [])}\n" for a in aliases)
    return "\n" + HOST_ALIASES_HEADER + lines


def hosts_file(pod: Pod, pod_ip: str | None, cluster_domain: str, node_hosts: str = "") -> str:
    """The pod's /etc/hosts: Kubernetes' boilerplate and `IP FQDN HOSTNAME` (the node's file on the host
    network), then the hostAliases under their comment."""
    if pod.spec.hostNetwork:
        body = HOSTS_HEADER_HOST_NETWORK + node_hosts
        if body and not body.endswith("\n"):
            body += "\n"
        return body + _aliases_section(pod)
    hostname = pod_hostname(pod)
    domain = pod_domain(pod, cluster_domain)
    body = HOSTS_HEADER + HOSTS_BOILERPLATE
    if pod_ip:
        body += f"{pod_ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{pod_ip}\t{hostname}\n"
    return body + _aliases_section(pod)


# --- on the node ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeFiles:
    """Where the node's own resolver settings and hosts file are read from (the kubelet's --resolv-conf)."""

    resolv_conf: Path = Path(ETC_RESOLV_CONF)
    hosts: Path = Path(ETC_HOSTS)

    def dns(self) -> DnsConfig:
        return parse_resolv_conf(_read(self.resolv_conf))

    def hosts_text(self) -> str:
        return _read(self.hosts)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def write_in_place(path: Path, text: str) -> None:
    """Rewrite `path` when its text changed, keeping its inode: running containers bind-mount the file, and a
    rename would leave them the old one."""
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write(text)
    path.chmod(FILE_MODE)


def etc_binds(pod_dir: Path, pod: Pod, pod_ip: str | None, cluster_dns: list[str], cluster_domain: str,
              node: NodeFiles, own_mounts: set[str], warnings: list[str] | None = None) -> list[str]:
    """Write the pod's hosts and resolv.conf files under `pod_dir` and return Docker binds for the container
    (none for a path the container mounts a volume at)."""
    binds: list[str] = []
    if ETC_HOSTS not in own_mounts:
        hosts = pod_dir / HOSTS_FILE
        write_in_place(hosts, hosts_file(pod, pod_ip, cluster_domain,
                                         node.hosts_text() if pod.spec.hostNetwork else ""))
        binds.append(f"{hosts}:{ETC_HOSTS}:rw")
    if ETC_RESOLV_CONF not in own_mounts:
        resolv = pod_dir / RESOLV_FILE
        write_in_place(resolv, pod_dns_config(pod, cluster_dns, cluster_domain, node.dns(), warnings).render())
        binds.append(f"{resolv}:{ETC_RESOLV_CONF}:rw")
    return binds
