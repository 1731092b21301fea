"""Hairpin mode on the pod bridge's ports, so a pod can reach itself through its Service.

With br_netfilter on (``net.bridge.bridge-nf-call-iptables = 1``, as here), a pod's packet to a
ClusterIP is DNATed while it crosses the bridge; when the chosen endpoint is the sender itself the
bridge must send the frame back out the port it came in on, which it does only in hairpin mode
(kubelet's ``hairpin-veth`` mode does the same). The masquerade of the proxy's postrouting chain
then makes the reply come back through the node.
"""

from __future__ import annotations

import json
import logging
import subprocess

from minik8s.network.netns import nsenter_argv

log = logging.getLogger("minik8s.proxy.hairpin")
IP_TIMEOUT_S = 10.0


def ports_without_hairpin(bridge: str, netns: str | None = None) -> list[str]:
    res = subprocess.run(nsenter_argv(netns, ["ip", "-d", "-j", "link", "show", "master", bridge]),
                         capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if res.returncode != 0 or not res.stdout.strip():
        return []  # no such bridge (yet): nothing to do
    out = []
    for link in json.loads(res.stdout):
        slave = (link.get("linkinfo") or {}).get("info_slave_data") or {}
        if not slave.get("hairpin"):
            out.append(str(link["ifname"]))
    return out


def ensure_hairpin(bridge: str, netns: str | None = None) -> list[str]:
    """Turn hairpin mode on for every port of `bridge`; the ports changed."""
    changed = []
    for port in ports_without_hairpin(bridge, netns):
        res = subprocess.run(nsenter_argv(netns, ["ip", "link", "set", "dev", port, "type", "bridge_slave",
                                                  "hairpin", "on"]), capture_output=True, text=True,
                             timeout=IP_TIMEOUT_S)
        if res.returncode == 0:
            changed.append(port)
        else:  # the port may have gone with its pod meanwhile
            log.info("hairpin not set", extra={"port": port, "error": res.stderr.strip()})
    return changed
