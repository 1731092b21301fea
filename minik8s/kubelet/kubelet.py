"""The kubelet: keeps this node's containers equal to the pods the API binds to it.

Shape (Kubernetes' sample-controller): an Informer on Pods with
``spec.nodeName=<node>`` feeds a WorkQueue of ``namespace/name`` keys; a few workers call
one idempotent :meth:`Kubelet.sync`. Docker ``die``/``oom``/``start`` events and finished
image pulls requeue the pod at once; a periodic resync also finds orphaned containers.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from minik8s.api.types import Pod, PodStatus
from minik8s.client import Informer, WorkQueue
from minik8s.errors import Conflict, NotFound
from minik8s.health import WATCHDOG
from minik8s.kubelet import emptydir
from minik8s.kubelet import labels as L
from minik8s.kubelet.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS, DEFAULT_RESET_AFTER_SECONDS
from minik8s.kubelet.configrefs import ApiConfigObjects, Ref, references
from minik8s.kubelet.downward import EPHEMERAL_STORAGE, ephemeral_storage_capacity
from minik8s.kubelet.events import NORMAL, WARNING, ApiEventSink
from minik8s.kubelet.heartbeat import NodeReporter
from minik8s.kubelet.images import PullFn
from minik8s.kubelet.metrics import DEFAULT_INTERVAL_S as DEFAULT_METRICS_INTERVAL_S
from minik8s.kubelet.metrics import MetricsSampler
from minik8s.kubelet.node import DEFAULT_MAX_PODS, machine_capacity
from minik8s.kubelet.podnet import ETC_RESOLV_CONF, NodeFiles
from minik8s.kubelet.probe_actions import ProbeActions
from minik8s.kubelet.probes import DEFAULT_PROBE_WORKERS, DEFAULT_READINESS_EVENT_SECONDS, Prober
from minik8s.kubelet.runtime import DEFAULT_GRACE_SECONDS, DockerRuntime
from minik8s.kubelet.satokens import TokenManager
from minik8s.kubelet.server import KubeletServer, make_app
from minik8s.kubelet.serviceenv import ServiceEnv
from minik8s.netpol.agent import PolicyAgent, PolicyAgentConfig

try:
    from minik8s.images.base import PAUSE_IMAGE as _PAUSE_IMAGE
except ImportError:  # the images package is optional for the kubelet itself
    _PAUSE_IMAGE = "minik8s/pause:1"

log = logging.getLogger(__name__)

DEFAULT_PAUSE_IMAGE: str = _PAUSE_IMAGE
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
DEFAULT_PODS_DIR = Path("/var/lib/minik8s/pods")
DEFAULT_HEARTBEAT_SECONDS = 10.0
DEFAULT_LEASE_DURATION_SECONDS = 40
DEFAULT_RESYNC_SECONDS = 30.0
DEFAULT_WORKERS = 4
DEFAULT_SERVER_PORT = 10250
#: How long a worker waits on the queue before re-checking for stop.
QUEUE_POLL_SECONDS = 1.0
#: Pause between attempts when the API or dockerd is unreachable.
RETRY_SECONDS = 2.0
#: While dockerd is down, how often the event stream is re-opened (its return ends the NotReady spell).
RUNTIME_RECONNECT_SECONDS = 0.5
#: Containers of a pod already gone from the API (force-deleted) get this long to stop, as in Kubernetes.
ORPHAN_GRACE_SECONDS = 1
KILL_POLL_SECONDS = 0.01
DOCKER_EVENTS = ("die", "oom", "start", "destroy")
TERMINAL_PHASES = ("Succeeded", "Failed")
THREAD_JOIN_SECONDS = 5.0
#: How often disk emptyDirs are measured against their sizeLimit (the eviction manager's housekeeping period).
DEFAULT_EMPTYDIR_CHECK_SECONDS = 10.0


@dataclass
class KubeletConfig:
    """Everything a kubelet needs; the defaults are the documented ones."""

    node_name: str
    node_ip: str
    #: Written to Node.spec.podCIDR; the node's dockerd must hand out addresses from it (``--bip``).
    pod_cidr: str | None = None
    docker_url: str = DEFAULT_DOCKER_URL
    #: emptyDir volumes live under ``pods_dir/<pod uid>/volumes/<name>``.
    pods_dir: Path = DEFAULT_PODS_DIR
    pause_image: str = DEFAULT_PAUSE_IMAGE
    #: Command for the pause container; None runs the image's own (the pause binary).
    pause_command: list[str] | None = None
    #: The cluster registry (``host:port``); when set, images are pulled from it via ``minik8s.images``.
    image_registry: str | None = None
    cpu: str | None = None  # capacity overrides; None = what the machine has
    memory: str | None = None
    max_pods: int = DEFAULT_MAX_PODS
    node_labels: dict[str, str] = field(default_factory=dict)
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    lease_duration_seconds: int = DEFAULT_LEASE_DURATION_SECONDS
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    backoff_base_seconds: float = DEFAULT_BASE_SECONDS
    backoff_cap_seconds: float = DEFAULT_CAP_SECONDS
    backoff_reset_seconds: float = DEFAULT_RESET_AFTER_SECONDS
    workers: int = DEFAULT_WORKERS
    server_port: int = DEFAULT_SERVER_PORT
    #: Where the kubelet server listens; None = ``node_ip``.
    server_host: str | None = None
    #: The kubelet server's certificate and key (from the cluster CA, naming the node's IP and name) and
    #: the CA its clients' certificates must chain to; the server is not started without all three.
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    #: Threads running readiness/liveness/startup probes (a hung probe holds one for its timeout).
    probe_workers: int = DEFAULT_PROBE_WORKERS
    #: At most one "Readiness probe failed" event per container this often.
    readiness_event_seconds: float = DEFAULT_READINESS_EVENT_SECONDS
    #: Nameservers ClusterFirst pods get (the kube-dns Service's ClusterIP); [] leaves Docker's resolv.conf.
    cluster_dns: list[str] = field(default_factory=lambda: ["10.96.0.10"])
    cluster_domain: str = "cluster.local"
    #: The node's resolver settings, for dnsPolicy Default (and ClusterFirst on the host network).
    resolv_conf: Path = Path(ETC_RESOLV_CONF)
    #: How often container usage is sampled from cgroups and pushed to the API (metrics.k8s.io); 0 disables.
    metrics_interval_s: float = DEFAULT_METRICS_INTERVAL_S
    #: Enforce NetworkPolicies in the pods' network namespaces (needs a ``policy_client`` for the agent).
    network_policy: bool = True
    #: How often emptyDir usage is checked against sizeLimit (a pod over it is evicted); 0 disables.
    emptydir_check_seconds: float = DEFAULT_EMPTYDIR_CHECK_SECONDS


class Kubelet:
    def __init__(
        self, config: KubeletConfig, client: Any, docker_client: docker.DockerClient | None = None,
        policy_client: Any | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.docker = docker_client or docker.DockerClient(base_url=config.docker_url)
        # the NetworkPolicy agent, under its own identity (system:minik8s-netpol), not the node's
        self.policy_agent = self._policy_agent(policy_client)
        self.events = ApiEventSink(client, config.node_name)
        # ConfigMaps and Secrets pods consume, watched so a change reaches their volumes at once
        self.config_objects = ApiConfigObjects(client, config.resync_seconds, on_change=self._config_changed)
        self.tokens = TokenManager(client)  # projected ServiceAccount tokens, refreshed at 80% of their lifetime
        self.prober = Prober(
            ProbeActions(self.docker),
            on_change=self._enqueue,
            events=self.events,
            workers=config.probe_workers,
            readiness_event_seconds=config.readiness_event_seconds,
        )
        self.runtime = DockerRuntime(
            self.docker,
            config.node_name,
            config.pods_dir,
            config.pause_image,
            pause_command=config.pause_command,
            host_ip=config.node_ip,
            backoff_base=config.backoff_base_seconds,
            backoff_cap=config.backoff_cap_seconds,
            backoff_reset=config.backoff_reset_seconds,
            events=self.events,
            pull_fn=self._pull_fn(),
            on_image_ready=self._image_ready,
            readiness=self.prober.ready,
            prober=self.prober,
            cluster_dns=config.cluster_dns,
            cluster_domain=config.cluster_domain,
            config_objects=self.config_objects,
            tokens=self.tokens,
            service_env=ServiceEnv(client),
            allocatable=self._allocatable(),
            node_files=NodeFiles(resolv_conf=Path(config.resolv_conf)),
            on_sandbox_started=self.policy_agent.program_sandbox if self.policy_agent else None,
        )
        self.reporter = NodeReporter(
            client,
            self.docker,
            node_name=config.node_name,
            node_ip=config.node_ip,
            pod_cidr=config.pod_cidr,
            capacity=machine_capacity(config.cpu, config.memory, config.max_pods),
            port=config.server_port,
            pods_dir=config.pods_dir,
            lease_duration_seconds=config.lease_duration_seconds,
            labels=config.node_labels,
        )
        self.queue = WorkQueue()
        self.informer = Informer(
            client,
            "Pod",
            field_selector=f"spec.nodeName={config.node_name}",
            resync_seconds=config.resync_seconds,
        )
        self.informer.add_handler(
            on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new), on_delete=self._enqueue
        )
        self.metrics = MetricsSampler(self.docker, config.node_name, client, config.metrics_interval_s,
                                      pod_labels=self._pod_labels)
        self.server: KubeletServer | None = None
        self._stop = threading.Event()
        self._killing: set[str] = set()  # pod uids whose containers are being stopped
        self._killing_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._docker_events: Any = None

    # --- wiring ----------------------------------------------------------------------------------

    def _pull_fn(self) -> PullFn | None:
        registry = self.config.image_registry
        if registry is None:
            return None
        from minik8s.images.registry import pull_image

        def pull(image: str) -> None:
            pull_image(self.docker, image, registry)

        return pull

    def _allocatable(self) -> dict[str, str | int | float]:
        """What a downward API limit a container does not set resolves to: the node's allocatable amount."""
        found = machine_capacity(self.config.cpu, self.config.memory, self.config.max_pods).as_dict()
        try:
            found[EPHEMERAL_STORAGE] = ephemeral_storage_capacity(Path(self.config.pods_dir))
        except OSError as exc:
            log.warning("cannot size the node's ephemeral storage", extra={"error": str(exc)})
        return found

    def _policy_agent(self, policy_client: Any | None) -> PolicyAgent | None:
        if policy_client is None or not self.config.network_policy:
            return None
        # traffic between a pod and its node always passes (Kubernetes): the node bridge, where the node's
        # packets to pods (kubelet probes) come from, and the node's address
        bridge = [str(ipaddress.ip_network(self.config.pod_cidr, strict=False)[1])] if self.config.pod_cidr else []
        hosts = [*bridge, self.config.node_ip]
        return PolicyAgent(policy_client, self.config.node_name, self.docker, host_ips=hosts,
                           config=PolicyAgentConfig(resync_seconds=self.config.resync_seconds))

    @staticmethod
    def key_of(pod: Pod) -> str:
        return f"{pod.metadata.namespace or 'default'}/{pod.name}"

    def _enqueue(self, pod: Pod) -> None:
        self.queue.add(self.key_of(pod))

    def _pod_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        pod = self.informer.get(f"{namespace}/{name}")
        return pod.metadata.labels if pod is not None else None

    def _config_changed(self, ref: Ref) -> None:
        """A ConfigMap or Secret was added, changed or deleted: sync the pods here that use it."""
        for pod in self.informer.list():
            if ref in references(pod):
                self._enqueue(pod)

    def _image_ready(self, image: str) -> None:
        for pod in self.informer.list():
            images = {c.image for c in [*(pod.spec.initContainers or []), *pod.spec.containers]}
            if image == self.config.pause_image or image in images:
                self._enqueue(pod)

    # --- lifecycle -------------------------------------------------------------------------------

    def run(self) -> None:
        """Register, start every loop, and block until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                self.reporter.register()
                self.reporter.renew_lease()
                break
            except Exception as exc:  # the API server may not be up yet
                log.warning(
                    "node registration failed, retrying",
                    extra={"node": self.config.node_name, "error": str(exc)},
                )
                self._stop.wait(RETRY_SECONDS)
        if self._stop.is_set():
            return
        self.informer.start()
        self.config_objects.start()
        if self.policy_agent is not None:
            self.policy_agent.start()
        self.prober.start()
        for i in range(self.config.workers):
            self._spawn(self._worker, f"kubelet-worker-{i}")
        self._spawn(self._watch_docker, "kubelet-docker-events")
        self._spawn(self._heartbeat_loop, "kubelet-heartbeat")
        if self.config.metrics_interval_s > 0:
            self._spawn(lambda: self.metrics.run(self._stop), "kubelet-metrics")
        if self.config.emptydir_check_seconds > 0:
            self._spawn(self._emptydir_loop, "kubelet-emptydir-limits")
        self._start_server()
        log.info("kubelet running", extra={"node": self.config.node_name})
        WATCHDOG.expect("kubelet-resync", self.config.resync_seconds)
        while not self._stop.wait(self.config.resync_seconds):
            WATCHDOG.beat("kubelet-resync")
            self.resync()

    def _spawn(self, target: Any, name: str) -> None:
        th = threading.Thread(target=target, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def _start_server(self) -> None:
        cfg = self.config
        if not (cfg.tls_cert and cfg.tls_key and cfg.client_ca):
            log.warning("no serving certificate configured: kubelet server (logs, exec) not started")
            return
        self.server = KubeletServer(make_app(self.runtime), cfg.server_host or cfg.node_ip, cfg.server_port,
                                    tls_cert=cfg.tls_cert, tls_key=cfg.tls_key, client_ca=cfg.client_ca)
        self.server.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.informer.stop()
        self.config_objects.stop()
        if self.policy_agent is not None:
            self.policy_agent.stop()
        if self._docker_events is not None:
            try:
                self._docker_events.close()
            except Exception as exc:  # closing a half-dead stream may raise; we are leaving anyway
                log.debug("closing docker events failed", extra={"error": str(exc)})
        if self.server is not None:
            self.server.stop()
        for th in self._threads:
            th.join(THREAD_JOIN_SECONDS)
        self.prober.stop()
        self.events.close(THREAD_JOIN_SECONDS)  # what the pod workers reported while stopping
        self.runtime.close()

    # --- loops -----------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.heartbeat_seconds):
            self.reporter.heartbeat()

    def _watch_docker(self) -> None:
        """Follow dockerd's container events.  The stream breaking is also how a dead dockerd is noticed
        at once: the node status is posted then (NotReady), and again when the stream is back (Ready),
        with a resync, since events were missed meanwhile."""
        filters = {"type": "container", "label": [f"{L.MANAGED}=true"], "event": list(DOCKER_EVENTS)}
        lost = False
        while not self._stop.is_set():
            try:
                self._docker_events = self.docker.events(decode=True, filters=filters)
                if lost:
                    lost = False
                    log.info("docker event stream is back", extra={"node": self.config.node_name})
                    self._runtime_changed(back=True)
                for ev in self._docker_events:
                    ref = L.pod_ref_from_labels(dict(ev.get("Actor", {}).get("Attributes", {})))
                    if ref is not None:
                        self.queue.add(ref.key)
            except Exception as exc:  # dockerd died or restarted, or the stream was closed by stop()
                if self._stop.is_set():
                    return
                if not lost:
                    log.warning("docker event stream failed, reconnecting", extra={"error": str(exc)})
            if self._stop.is_set():
                return
            if not lost:
                lost = True
                self._runtime_changed(back=False)
            self._stop.wait(RUNTIME_RECONNECT_SECONDS)

    def _runtime_changed(self, back: bool) -> None:
        """Post the node status now (it probes dockerd itself); once dockerd is back, resync every pod."""
        try:
            self.reporter.update_status()
        except Exception as exc:  # the API may be down too; the heartbeat retries
            log.warning("node status update failed", extra={"node": self.config.node_name, "error": str(exc)})
        if back:
            self.resync()

    def resync(self) -> None:
        """Queue every pod we know of, and every pod that still has containers here (orphans)."""
        for pod in self.informer.list():
            self._enqueue(pod)
        try:
            for ref in self.runtime.list_pods():
                self.queue.add(ref.key)
        except (docker.errors.DockerException, OSError) as exc:
            log.warning("listing containers failed", extra={"error": str(exc)})

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=QUEUE_POLL_SECONDS)
            if key is None:
                continue
            try:
                requeue = self.sync(key)
            except Exception:
                log.exception("pod sync failed", extra={"pod": key})
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
                if requeue is not None:
                    self.queue.add_after(key, requeue)
            finally:
                self.queue.done(key)

    # --- sync ------------------------------------------------------------------------------------

    def sync(self, key: str) -> float | None:
        """Make the node match the pod ``key``; returns seconds after which to sync again, if any."""
        namespace, _, name = key.partition("/")
        pod: Pod | None = self.informer.get(key)
        uid = pod.metadata.uid if pod is not None else None
        for ref in self.runtime.list_pods():
            if ref.namespace == namespace and ref.name == name and ref.uid != uid:
                log.info("removing containers of a deleted pod", extra={"pod": key, "uid": ref.uid})
                self._kill_in_background(ref.uid, ORPHAN_GRACE_SECONDS, key)
                self.tokens.forget(ref.uid)
        if pod is None:
            return None
        if pod.metadata.deletionTimestamp:
            self._terminate(pod)
            return None
        if pod.status is not None and pod.status.phase in TERMINAL_PHASES:
            self.runtime.stop_sandbox(pod.metadata.uid or "")
            return None
        requeue = self.runtime.sync_pod(pod)
        self._write_status(pod, self.runtime.pod_status(pod))
        return requeue

    def _terminate(self, pod: Pod) -> None:
        grace = pod.metadata.deletionGracePeriodSeconds
        if grace is None:
            grace = pod.spec.terminationGracePeriodSeconds
        if grace is None:
            grace = DEFAULT_GRACE_SECONDS
        uid = pod.metadata.uid or ""
        with self._killing_lock:
            if uid in self._killing:
                return
        for c in pod.spec.containers:
            self.events.event(pod, NORMAL, "Killing", f"Stopping container {c.name}", c.name)

        def delete_object() -> None:
            try:
                self.client.delete("Pod", pod.name, pod.metadata.namespace or "default", grace_period_seconds=0)
            except NotFound:
                pass
            log.info("pod terminated", extra={"pod": self.key_of(pod), "uid": uid, "grace": grace})

        self._kill_in_background(uid, grace, self.key_of(pod), delete_object)

    def _emptydir_loop(self) -> None:
        while not self._stop.wait(self.config.emptydir_check_seconds):
            for pod in self.informer.list():
                try:
                    self.check_emptydir_limits(pod)
                except Exception:
                    log.exception("emptyDir limit check failed", extra={"pod": self.key_of(pod)})

    def check_emptydir_limits(self, pod: Pod) -> bool:
        """Evict a running pod whose disk emptyDir is over its sizeLimit, as the kubelet's eviction manager:
        phase Failed, reason Evicted (status first, so no sync restarts what is then killed)."""
        if pod.metadata.deletionTimestamp or (pod.status is not None and pod.status.phase in TERMINAL_PHASES):
            return False
        message = emptydir.over_limit(pod, self.config.pods_dir)
        if message is None:
            return False
        try:
            self.client.patch("Pod", pod.name, {"status": {"phase": "Failed", "reason": "Evicted", "message": message}},
                              pod.metadata.namespace or "default", subresource="status")
        except NotFound:
            return False
        log.warning("evicting pod over its emptyDir sizeLimit", extra={"pod": self.key_of(pod), "why": message})
        self.events.event(pod, WARNING, "Evicted", message)
        grace = pod.spec.terminationGracePeriodSeconds
        self._kill_in_background(pod.metadata.uid or "", DEFAULT_GRACE_SECONDS if grace is None else grace,
                                 self.key_of(pod))
        return True

    def wait_for_kills(self, timeout: float) -> bool:
        """True once no pod is being stopped in the background (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._killing_lock:
                if not self._killing:
                    return True
            time.sleep(KILL_POLL_SECONDS)
        return False

    def _kill_in_background(self, uid: str, grace: int, key: str, then: Callable[[], None] | None = None) -> None:
        """Stop and remove a pod's containers off the work queue: a long grace period never holds a worker."""
        with self._killing_lock:
            if uid in self._killing:
                return
            self._killing.add(uid)

        def kill() -> None:
            try:
                self.runtime.kill_pod(uid, grace)
                self.runtime.remove_pod(uid)
                if then is not None:
                    then()
            except Exception:
                log.exception("killing pod failed", extra={"pod": key, "uid": uid})
            finally:
                with self._killing_lock:
                    self._killing.discard(uid)
                self.queue.add(key)

        threading.Thread(target=kill, name=f"kill-{uid[:8]}", daemon=True).start()

    def _write_status(self, pod: Pod, status: PodStatus) -> None:
        old = pod.status.to_dict() if pod.status is not None else None
        if old == status.to_dict():
            return
        try:
            self.client.update_status(pod.model_copy(update={"status": status}))
        except NotFound:
            return
        except Conflict:
            # Our cached copy is stale: try again once the informer has the newer one.
            log.debug("status write conflicted", extra={"pod": self.key_of(pod)})
            self.queue.add_rate_limited(self.key_of(pod))
