"""The per-node policy agent: keeps every local pod's `inet minik8s-netpol` table equal to the policies.

It runs inside the kubelet (threads, no process of its own) under its own identity
(`system:minik8s-netpol`, read-only on networkpolicies, pods, namespaces, services and endpoints).
Informers on those five kinds feed a work queue holding one key: any event re-renders every pod on
this node (level-triggered, like the network agent) and rewrites only the tables whose text changed,
each in one `nft -f` transaction inside the pod's network namespace (`/proc/<sandbox pid>/ns/net`).

The kubelet also calls :meth:`PolicyAgent.program_sandbox` right after it starts a pod's sandbox and
before the app containers, so a pod never runs unprotected. If the agent has not synced with the API
by then (API unreachable), it waits at most `sandbox_wait_s`, logs, and lets the pod start: the next
sync writes the table.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minik8s.client.informer import Informer
from minik8s.client.workqueue import WorkQueue
from minik8s.netpol import rules
from minik8s.network.netns import nsenter_argv

log = logging.getLogger("minik8s.netpol.agent")

SYNC_KEY = "pods"
KINDS = ("NetworkPolicy", "Pod", "Namespace", "Service", "Endpoints")
NFT_TIMEOUT_S = 10.0
THREAD_JOIN_S = 5.0
#: A sandbox's address noted at its start is kept at least this long, even if a sync does not see it running.
LOCAL_IP_GRACE_S = 60.0
#: docker label values of a sandbox (minik8s.kubelet.labels; repeated so the agent imports no kubelet code)
SANDBOX_LABELS = ("io.minik8s.managed=true", "io.minik8s.container.type=sandbox")
POD_UID_LABEL = "io.kubernetes.pod.uid"


@dataclass
class PolicyAgentConfig:
    """Agent tunables; the defaults are the documented ones."""

    resync_seconds: float = 30.0
    """Every table is re-checked this often even without events (a restarted sandbox, manual damage)."""
    sandbox_wait_s: float = 5.0
    """How long a starting pod waits for the agent's first sync before it starts without its table."""
    queue_get_timeout_s: float = 1.0


def pod_netns(pid: int) -> str:
    return f"/proc/{pid}/ns/net"


def apply_table(netns: str, table_text: str) -> None:
    """Replace the pod's table in one `nft -f` transaction; RuntimeError with nft's message on failure."""
    res = subprocess.run(nsenter_argv(netns, ["nft", "-f", "-"]), input=rules.replace_script(table_text),
                         capture_output=True, text=True, timeout=NFT_TIMEOUT_S)
    if res.returncode != 0:
        raise RuntimeError(f"nft -f failed in {netns}: {res.stderr.strip()}")


class PolicyAgent:
    def __init__(self, client: Any, node_name: str, docker_client: Any, host_ips: list[str] | None = None,
                 config: PolicyAgentConfig | None = None,
                 apply: Callable[[str, str], None] = apply_table) -> None:
        self.node_name = node_name
        self.docker = docker_client
        self.host_ips = list(host_ips or [])
        self.config = config or PolicyAgentConfig()
        self._apply = apply
        self.informers = {kind: Informer(client, kind, resync_seconds=self.config.resync_seconds) for kind in KINDS}
        for informer in self.informers.values():
            informer.add_handler(on_add=self._changed, on_update=lambda old, new: self._changed(new),
                                 on_delete=self._changed)
        self.queue = WorkQueue()
        self._lock = threading.Lock()  # one writer of tables at a time (worker and kubelet hook)
        self._applied: dict[str, tuple[int, str]] = {}  # pod uid -> (sandbox pid, table text written)
        # pod uid -> (IP, when noted): addresses of sandboxes started here that the API may not have yet
        self._local_ips: dict[str, tuple[str, float]] = {}
        self._ips_lock = threading.Lock()
        self._gave_up_waiting = False  # once the first sync timed out, later pods do not wait again
        self._pids: dict[str, int] = {}  # sandbox container id -> pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()
        self._thread = threading.Thread(target=self._worker, name="netpol-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        for informer in self.informers.values():
            informer.stop()
        if self._thread is not None:
            self._thread.join(THREAD_JOIN_S)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and all(
            i.alive() for i in self.informers.values())

    def synced(self) -> bool:
        return all(i.has_synced() for i in self.informers.values())

    def _changed(self, _obj: Any) -> None:
        self.queue.add(SYNC_KEY)

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=self.config.queue_get_timeout_s)
            if key is None:
                continue
            try:
                if self.synced():
                    self.sync()
                self.queue.forget(key)
            except Exception as exc:  # kernel or docker hiccup: retry with back-off, keep the agent alive
                log.warning("network policy sync failed", extra={"node": self.node_name, "error": str(exc)})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    # --- the view --------------------------------------------------------------------------------

    def view(self) -> rules.ClusterView:
        def dicts(kind: str) -> list[dict[str, Any]]:
            return [o.to_dict() for o in self.informers[kind].list()]

        namespaces = {str(n["metadata"]["name"]): dict(n["metadata"].get("labels") or {})
                      for n in dicts("Namespace")}
        endpoints = {(str(e["metadata"].get("namespace") or "default"), str(e["metadata"]["name"])): e
                     for e in dicts("Endpoints")}
        return rules.ClusterView(policies=dicts("NetworkPolicy"), pods=dicts("Pod"), namespaces=namespaces,
                                 services=dicts("Service"), endpoints=endpoints, local_ips=self._ips())

    def _ips(self) -> dict[str, str]:
        with self._ips_lock:
            return {uid: ip for uid, (ip, _noted) in self._local_ips.items()}

    def _local_pods(self, view: rules.ClusterView) -> list[dict[str, Any]]:
        return [p for p in view.pods if (p.get("spec") or {}).get("nodeName") == self.node_name
                and not (p.get("spec") or {}).get("hostNetwork")]

    def _sandbox_pids(self) -> dict[str, int]:
        """pod uid -> pid of its running sandbox (an inspect only for sandboxes not seen before)."""
        found = self.docker.containers.list(sparse=True, filters={"label": list(SANDBOX_LABELS),
                                                                  "status": "running"})
        out: dict[str, int] = {}
        live: set[str] = set()
        for c in found:
            live.add(c.id)
            if c.id not in self._pids:
                c.reload()
                self._pids[c.id] = int((c.attrs.get("State") or {}).get("Pid") or 0)
            labels = c.attrs.get("Labels") or (c.attrs.get("Config") or {}).get("Labels") or {}  # sparse: no Config
            uid = labels.get(POD_UID_LABEL)
            if uid and self._pids[c.id]:
                out[uid] = self._pids[c.id]
        self._pids = {cid: pid for cid, pid in self._pids.items() if cid in live}
        return out

    # --- writing tables --------------------------------------------------------------------------

    def sync(self) -> int:
        """Re-render every local pod; returns how many tables were rewritten. One pod's failure (its sandbox
        died meanwhile) does not keep the others stale: they are written, then the error is raised (requeue)."""
        view = self.view()
        pids = self._sandbox_pids()
        written = 0
        failed: list[str] = []
        with self._lock:
            for pod in self._local_pods(view):
                uid = str(pod["metadata"].get("uid") or "")
                if uid not in pids:
                    continue
                try:
                    written += self._write(uid, pids[uid], rules.render_pod_table(pod, view, self.host_ips))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    failed.append(f"{uid}: {exc}")
            for uid in set(self._applied) - set(pids):
                self._applied.pop(uid, None)
        self._forget_local_ips(view, set(pids))
        if failed:
            raise RuntimeError(f"{len(failed)} pod table(s) not written: {'; '.join(failed)}")
        return written

    def _forget_local_ips(self, view: rules.ClusterView, running: set[str]) -> None:
        """Drop the addresses noted at sandbox start once the API has them, or once their sandbox is gone
        (after a grace: a sandbox started while this sync listed containers is not gone)."""
        known = {str(p["metadata"].get("uid")) for p in view.pods if (p.get("status") or {}).get("podIP")}
        now = time.monotonic()
        with self._ips_lock:
            for uid, (_ip, noted) in list(self._local_ips.items()):
                if uid in known or (uid not in running and now - noted > LOCAL_IP_GRACE_S):
                    del self._local_ips[uid]

    def _write(self, uid: str, pid: int, text: str) -> bool:
        if self._applied.get(uid) == (pid, text):
            return False
        self._apply(pod_netns(pid), text)
        self._applied[uid] = (pid, text)
        log.info("network policy table written", extra={"node": self.node_name, "pod_uid": uid, "pid": pid})
        return True

    def program_sandbox(self, pod: Any, sandbox: Any) -> None:
        """The kubelet's hook: the pod's table, written after its sandbox started and before its containers.

        Never raises: a pod whose table could not be written starts anyway (logged), and the agent's
        next sync writes it."""
        try:
            pod_dict = pod.to_dict() if hasattr(pod, "to_dict") else dict(pod)
            if (pod_dict.get("spec") or {}).get("hostNetwork"):
                return
            uid = str(pod_dict["metadata"].get("uid") or "")
            attrs = sandbox.attrs or {}
            pid = int((attrs.get("State") or {}).get("Pid") or 0)
            ip = (attrs.get("NetworkSettings") or {}).get("IPAddress")
            gateway = (attrs.get("NetworkSettings") or {}).get("Gateway")
            if gateway and gateway not in self.host_ips:
                self.host_ips.append(str(gateway))
            if ip:
                with self._ips_lock:
                    self._local_ips[uid] = (str(ip), time.monotonic())
            wait = 0.0 if self._gave_up_waiting else self.config.sandbox_wait_s
            if not all(i.wait_synced(wait) for i in self.informers.values()):
                self._gave_up_waiting = True
                log.warning("network policy agent not synced: pod starts before its policy table",
                            extra={"node": self.node_name, "pod_uid": uid})
                return
            self._gave_up_waiting = False
            view = self.view()
            view.pods = [p for p in view.pods if str(p["metadata"].get("uid")) != uid] + [pod_dict]
            with self._lock:
                self._write(uid, pid, rules.render_pod_table(pod_dict, view, self.host_ips))
        except Exception as exc:  # the pod must not be held by the agent: log, start, repair on the next sync
            log.warning("writing a new pod's policy table failed", extra={"node": self.node_name,
                                                                         "error": str(exc)})
        finally:
            self.queue.add(SYNC_KEY)  # other local pods may now allow (or must refuse) the new address
