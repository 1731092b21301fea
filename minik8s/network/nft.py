"""The node's own nftables table: masquerade pod traffic leaving the cluster, accept pod forwarding.

One table, ``ip minik8s-nat``, replaced as a whole in one ``nft -f`` transaction (declare,
delete, re-create), so a reader never sees it half-written and no other table is touched.
The text is rendered the way ``nft list table`` prints it, so "is it already right?" is a
string comparison and an unchanged ruleset is not rewritten.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from dataclasses import dataclass

from minik8s.network.netns import nsenter_argv

log = logging.getLogger("minik8s.network.nft")

#: Multicast never leaves through the masquerade (flannel's rule does the same).
MULTICAST_CIDR = "224.0.0.0/4"
NFT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class MasqueradeSpec:
    table: str
    """Table name, family ``ip``; nothing else in the netns is touched."""
    node_pod_cidr: str
    """This node's pod subnet: the sources that are masqueraded."""
    cluster_pod_cidr: str
    """The whole pod network: destinations inside it keep the pod source address."""


def render_ruleset(spec: MasqueradeSpec) -> str:
    """The table body, in ``nft list table`` output form (tabs, canonical keywords)."""
    node = ipaddress.IPv4Network(spec.node_pod_cidr, strict=True)
    cluster = ipaddress.IPv4Network(spec.cluster_pod_cidr, strict=True)
    if not node.subnet_of(cluster):
        raise ValueError(f"node pod CIDR {node} is not inside the cluster pod CIDR {cluster}")
    return (
        f"table ip {spec.table} {{\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        f"\t\tip saddr {node} ip daddr != {cluster} ip daddr != {MULTICAST_CIDR} masquerade\n"
        "\t}\n"
        "\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        f"\t\tip saddr {cluster} accept\n"
        f"\t\tip daddr {cluster} accept\n"
        "\t}\n"
        "}\n"
    )


def replace_script(spec: MasqueradeSpec) -> str:
    """``nft -f`` input replacing the table atomically: declaring it first makes the delete safe when absent."""
    return f"table ip {spec.table}\ndelete table ip {spec.table}\n{render_ruleset(spec)}"


def delete_script(table: str) -> str:
    return f"table ip {table}\ndelete table ip {table}\n"


def _nft(args: list[str], netns: str | None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nsenter_argv(netns, ["nft", *args]), input=stdin, capture_output=True, text=True,
                          timeout=NFT_TIMEOUT_S)


def _normalize(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def current_ruleset(table: str, netns: str | None = None) -> str | None:
    """``nft list table ip TABLE`` in the netns, or None when the table does not exist."""
    res = _nft(["list", "table", "ip", table], netns)
    if res.returncode != 0:
        return None
    return res.stdout


def ensure_masquerade(spec: MasqueradeSpec, netns: str | None = None) -> bool:
    """Make the table match :func:`render_ruleset`; True when it had to be (re)written."""
    want = render_ruleset(spec)
    have = current_ruleset(spec.table, netns)
    if have is not None and _normalize(have) == _normalize(want):
        return False
    res = _nft(["-f", "-"], netns, stdin=replace_script(spec))
    if res.returncode != 0:
        raise RuntimeError(f"nft -f failed for table {spec.table} (netns {netns or 'current'}): {res.stderr.strip()}")
    log.info("nft table written", extra={"table": spec.table, "netns": netns, "pod_cidr": spec.node_pod_cidr})
    return True


def remove_masquerade(table: str, netns: str | None = None) -> bool:
    """Delete the table if present; True when it existed."""
    if current_ruleset(table, netns) is None:
        return False
    res = _nft(["-f", "-"], netns, stdin=delete_script(table))
    if res.returncode != 0:
        raise RuntimeError(f"nft delete table {table} failed (netns {netns or 'current'}): {res.stderr.strip()}")
    log.info("nft table deleted", extra={"table": table, "netns": netns})
    return True
