"""The per-node network agent: keeps this node's VXLAN peers equal to the Nodes in the API.

Shape of the kubelet: ``run()`` blocks until ``stop()``.  It sets up the node (forwarding,
device, nft table), publishes this node's VTEP MAC and underlay IP as Node annotations (other
agents read them), then an Informer on Nodes feeds a work queue holding one key: any add,
update or delete, and every resync, re-runs the same level-triggered :meth:`NetworkAgent.sync`
over the whole informer cache.  The agent holds no state of its own: a restarted agent
re-derives everything from the API and the kernel.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from minik8s.client.informer import Informer
from minik8s.client.workqueue import WorkQueue
from minik8s.errors import NotFound
from minik8s.network import nft
from minik8s.network import vxlan as vx
from minik8s.network.plan import PUBLIC_IP_ANNOTATION, VTEP_MAC_ANNOTATION, LocalNode, Plan, peers_from_nodes

log = logging.getLogger("minik8s.network.agent")

#: The single work-queue key: every event means "recompute all peers".
SYNC_KEY = "peers"
THREAD_JOIN_S = 5.0


@dataclass
class NetworkAgentConfig:
    """Agent tunables; the defaults are the documented ones."""

    resync_seconds: float = 30.0
    """Re-sync the kernel against the API this often even without events (repairs manual damage)."""
    retry_seconds: float = 2.0
    """Wait between attempts while the node set-up or the annotation publish fails (API not up yet)."""
    queue_get_timeout_s: float = 1.0
    """How often the worker wakes to notice :meth:`NetworkAgent.stop`."""
    vxlan: vx.VxlanConfig = field(default_factory=vx.VxlanConfig)


class NetworkAgent:
    def __init__(self, client: Any, node_name: str, node_ip: str, pod_cidr: str, netns: str | None = None,
                 config: NetworkAgentConfig | None = None) -> None:
        """``netns`` None: the process already lives in the node's netns (the Ray worker does)."""
        self.client = client
        self.local = LocalNode(node_name, node_ip, pod_cidr)
        self.netns = netns
        self.config = config or NetworkAgentConfig()
        self.queue = WorkQueue()
        self.informer = Informer(client, "Node", resync_seconds=self.config.resync_seconds)
        self.informer.add_handler(on_add=self._enqueue, on_update=lambda _old, _new: self._enqueue(),
                                  on_delete=self._enqueue)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._published = False

    @property
    def annotations(self) -> dict[str, str]:
        return {VTEP_MAC_ANNOTATION: self.local.vtep_mac, PUBLIC_IP_ANNOTATION: self.local.public_ip}

    def _enqueue(self, _obj: Any = None) -> None:
        self.queue.add(SYNC_KEY)

    # --- lifecycle -------------------------------------------------------------------------------

    def run(self) -> None:
        """Set up the node, publish the annotations, start the informer and worker; block until :meth:`stop`."""
        if not self._retry(self._setup, "node network set-up"):
            return
        self.informer.start()
        th = threading.Thread(target=self._worker, name="network-agent-worker", daemon=True)
        th.start()
        self._threads.append(th)
        log.info("network agent running", extra={"node": self.local.name, "pod_cidr": self.local.pod_cidr,
                                                  "vtep_mac": self.local.vtep_mac})
        self._enqueue()
        while not self._stop.wait(self.config.resync_seconds):
            self._enqueue()

    def stop(self) -> None:
        """Stop the loops.  The kernel state stays: pods keep their network while the agent restarts."""
        self._stop.set()
        self.queue.shutdown()
        self.informer.stop()
        for th in self._threads:
            th.join(THREAD_JOIN_S)

    def _retry(self, fn: Any, what: str) -> bool:
        while not self._stop.is_set():
            try:
                fn()
                return True
            except Exception as exc:  # the API server or the node netns may not be ready yet
                log.warning("%s failed, retrying", what, extra={"node": self.local.name, "error": str(exc)})
                self._stop.wait(self.config.retry_seconds)
        return False

    def _setup(self) -> None:
        cfg = self.config.vxlan
        vx.ensure_ip_forward(self.netns)
        vx.ensure_device(self.local, cfg, self.netns)
        if cfg.masquerade:
            nft.ensure_masquerade(vx.masquerade_spec(self.local, cfg), self.netns)

    # --- reconcile -------------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=self.config.queue_get_timeout_s)
            if key is None:
                continue
            try:
                self.sync()
                self.queue.forget(key)
            except Exception:
                log.exception("network sync failed, requeueing", extra={"node": self.local.name})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def publish(self) -> bool:
        """Write our annotations to our Node if they differ; True if written.  NotFound: the kubelet has
        not registered the Node yet (the next event or resync retries)."""
        node = self.informer.get(self.local.name)
        current = (node.metadata.annotations or {}) if node is not None else {}
        if node is not None and all(current.get(k) == v for k, v in self.annotations.items()):
            return False
        self.client.patch("Node", self.local.name, {"metadata": {"annotations": self.annotations}}, namespace=None)
        log.info("published VTEP annotations", extra={"node": self.local.name, **self.annotations})
        return True

    def sync(self) -> Plan:
        """One level-triggered pass: repair the node set-up, publish, converge the peers to the informer's Nodes."""
        if not self.informer.has_synced():
            return Plan()
        cfg = self.config.vxlan
        self._setup()
        try:
            self.publish()
        except NotFound:
            log.info("own Node not registered yet", extra={"node": self.local.name})
        peers, skipped = peers_from_nodes(self.informer.list(), self.local.name)
        for facts in skipped:
            log.debug("node not on the overlay yet", extra={"peer": facts.name, "missing": list(facts.missing)})
        return vx.sync_peers(self.local, peers, cfg, self.netns)
