"""What a pod's stub resolver is told (resolv.conf) and which names it then asks, in order.

`lookup_names` follows glibc's `res_search`: a name with at least `ndots` dots (or a trailing
dot) is tried as-is first; otherwise each search domain is appended in turn and the bare name
comes last. The resolver stops at the first answer that is not NXDOMAIN. (getaddrinfo asks A
and AAAA for each candidate; the counts here are per record type.)

Why ndots:2 and not Kubernetes' 5: with ndots:5 every name with fewer than five dots walks the
three search domains first, so `api.github.com` costs 4 queries (5 for a missing name) before it is
tried as-is. With ndots:2 a name with two or more dots (a cluster FQDN, a `DNS` object's host
like `shop.example.com`, most external names) is tried as-is first and costs one query, and a
bare Service name (`web`) still hits the first search domain in one query. The price: `web.prod`
(one dot) goes through the search list and costs two queries (`web.prod.<ns>.svc…` misses, then
`web.prod.svc.cluster.local`); ndots:1 would make it three (as-is first, then two search domains).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NDOTS = 2
DEFAULT_CLUSTER_DNS = "10.96.0.10"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"


@dataclass
class ResolverConf:
    nameservers: list[str] = field(default_factory=lambda: [DEFAULT_CLUSTER_DNS])
    search: list[str] = field(default_factory=list)
    ndots: int = DEFAULT_NDOTS

    @classmethod
    def for_pod(cls, namespace: str, domain: str = DEFAULT_CLUSTER_DOMAIN,
                nameservers: list[str] | None = None) -> ResolverConf:
        """A ClusterFirst pod: its namespace's services first, then every namespace's, then the domain."""
        return cls(list(nameservers or [DEFAULT_CLUSTER_DNS]), pod_search(namespace, domain))

    @classmethod
    def for_node(cls, domain: str = DEFAULT_CLUSTER_DOMAIN, nameservers: list[str] | None = None) -> ResolverConf:
        """A node's own processes: no namespace of their own, so `svc.ns` and full names."""
        return cls(list(nameservers or [DEFAULT_CLUSTER_DNS]), [f"svc.{domain}", domain])

    def render(self) -> str:
        lines = [f"nameserver {ns}" for ns in self.nameservers]
        if self.search:
            lines.append("search " + " ".join(self.search))
        lines.append(f"options ndots:{self.ndots}")
        return "\n".join(lines) + "\n"


def pod_search(namespace: str, domain: str = DEFAULT_CLUSTER_DOMAIN) -> list[str]:
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def lookup_names(name: str, conf: ResolverConf) -> list[str]:
    """The names the resolver asks for `name`, in order, until one is not NXDOMAIN."""
    if name.endswith("."):
        return [name.rstrip(".")]
    dots = name.count(".")
    searched = [f"{name}.{domain}" for domain in conf.search]
    if dots >= conf.ndots:
        return [name, *searched]
    return [*searched, name]
