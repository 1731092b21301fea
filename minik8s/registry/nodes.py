"""Nodes: each gets its own pod CIDR from the cluster pod network, and keeps it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from minik8s.api.strategy import Obj, ServerView, Strategy
from minik8s.api.validation import Causes
from minik8s.errors import Invalid


class NodeStrategy(Strategy):
    def __init__(self, server: ServerView) -> None:
        super().__init__(server)
        self._lock = threading.Lock()  # one pod CIDR per node, even for concurrent creates

    def validate_update(self, new: Obj, old: Obj) -> Causes:
        old_cidr = (old.get("spec") or {}).get("podCIDR")
        new_cidr = (new.get("spec") or {}).get("podCIDR")
        if old_cidr and new_cidr != old_cidr:
            return [("spec.podCIDR", f'Forbidden: the pod CIDR is "{old_cidr}" and cannot change')]
        return []

    @contextmanager
    def write_guard(self, obj: Obj, old: Obj | None) -> Iterator[None]:
        if old is not None:
            yield
            return
        with self._lock:
            self._assign_pod_cidr(obj)
            yield

    def _assign_pod_cidr(self, node: Obj) -> None:
        """Give the node the /N it asks for if no other node has it, else the lowest free one."""
        network = self.server.network
        pod_network = ipaddress.IPv4Network(network.pod_cidr)
        name = node["metadata"]["name"]
        spec = node.setdefault("spec", {})
        taken = {o.get("spec", {}).get("podCIDR"): o["metadata"]["name"] for o in self.server.list_all("Node")
                 if o["metadata"]["name"] != name}
        wanted = spec.get("podCIDR")
        if wanted:
            try:
                net = ipaddress.IPv4Network(wanted)
            except ValueError:
                raise Invalid("Node", name, [("spec.podCIDR", f'Invalid value: "{wanted}": not a CIDR')]) from None
            if not net.subnet_of(pod_network):
                raise Invalid("Node", name, [("spec.podCIDR", f'Invalid value: "{wanted}": not inside the cluster '
                                                              f"pod network {pod_network}")])
            if str(net) in taken:
                raise Invalid("Node", name, [("spec.podCIDR", f'Invalid value: "{wanted}": already assigned to '
                                                              f'node "{taken[str(net)]}"')])
        else:
            subnets = pod_network.subnets(new_prefix=network.node_cidr_prefix)
            next(subnets)  # the first /24 holds no node, as in flannel's default layout
            free = next((str(n) for n in subnets if str(n) not in taken), None)
            if free is None:
                raise Invalid("Node", name, [("spec.podCIDR", f"no free pod CIDR left in {pod_network}")])
            spec["podCIDR"] = free
        spec["podCIDRs"] = [spec["podCIDR"]]
