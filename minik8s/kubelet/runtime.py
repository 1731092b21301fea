"""Pods on one node's Docker Engine: a pause (sandbox) container plus app containers.

The sandbox holds the pod's network namespace (an address on the node dockerd's bridge,
i.e. the node's pod CIDR) and a shareable IPC namespace; app containers join both, so the
containers of a pod reach each other on localhost. Everything the runtime needs to know
about a pod after a restart is in the containers' labels (see ``labels``), so a new
``DockerRuntime`` over the same dockerd adopts running pods instead of duplicating them.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
from docker.models.containers import Container as DockerContainer

from minik8s.api.podutil import is_sidecar
from minik8s.api.types import Container, Pod, PodStatus
from minik8s.errors import BadRequest, NotFound
from minik8s.kubelet import emptydir, termination
from minik8s.kubelet import labels as L
from minik8s.kubelet import status as S
from minik8s.kubelet.backoff import (
    DEFAULT_BASE_SECONDS,
    DEFAULT_CAP_SECONDS,
    DEFAULT_RESET_AFTER_SECONDS,
    Backoff,
    Clock,
    SystemClock,
)
from minik8s.kubelet.configrefs import ConfigError, ConfigObjects
from minik8s.kubelet.events import NORMAL, WARNING, EventSink, NullSink
from minik8s.kubelet.images import ImagePuller, PullFn, PullState
from minik8s.kubelet.lifecycle import DockerHookActions, LifecycleHooks, pre_stop_labels
from minik8s.kubelet.podnet import NodeFiles, etc_binds, pod_hostname
from minik8s.kubelet.spec import (
    SpecError,
    VolumePaths,
    container_kwargs,
    image_user_needed,
    sandbox_port_bindings,
)
from minik8s.kubelet.volumes import Tokens, has_config_volumes, prepare_volumes

#: How soon a pod waiting on an in-flight pull is looked at again.
PULL_POLL_SECONDS = 2.0

log = logging.getLogger(__name__)

#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_SECONDS = 30
#: The sandbox runs nothing that needs a long grace period.
SANDBOX_STOP_SECONDS = 2
#: Instances kept per container name: the current one and the previous (for ``logs --previous``).
KEEP_INSTANCES = 2
#: Parallel ``docker stop`` calls when killing a pod.
KILL_WORKERS = 8
REASON_RUN_ERROR = "RunContainerError"
REASON_NEVER_PULL = "ErrImageNeverPull"
REASON_CONFIG_ERROR = "CreateContainerConfigError"
#: Resync delay after the sandbox was found dead while starting into it (Kubernetes' SandboxChanged path).
SANDBOX_CHANGED_RESYNC_SECONDS = 0.1


def _labels(c: DockerContainer) -> dict[str, str]:
    """Labels of an inspected container or of a sparse (list-only) one."""
    config = c.attrs.get("Config")
    found = config.get("Labels") if isinstance(config, dict) else c.attrs.get("Labels")
    return dict(found or {})


def record_of(c: DockerContainer) -> S.ContainerRecord:
    """A ContainerRecord from an inspected Docker container."""
    state = c.attrs.get("State", {})
    status = str(state.get("Status", "unknown"))
    error = str(state.get("Error") or "")
    if status == "created" and error:
        status = "exited"  # it failed to start: a crash for restart and status purposes
    started = S.docker_time(state.get("StartedAt"))
    finished = S.docker_time(state.get("FinishedAt"))
    if status == "exited" and finished is None:
        finished = S.docker_time(c.attrs.get("Created"))
    labels = _labels(c)
    exit_code = int(state.get("ExitCode") or 0)
    message = termination.exited_message(c.id or "", labels, exit_code, lambda: _log_tail(c)) \
        if status in ("exited", "dead") else ""
    return S.ContainerRecord(
        id=c.id or "",
        name=labels.get(L.CONTAINER_NAME, ""),
        restart_count=L.restart_count_of(labels),
        image_id=str(c.attrs.get("Image", "")),
        status=status,
        exit_code=exit_code,
        oom_killed=bool(state.get("OOMKilled")),
        error=error,
        started_at=started,
        finished_at=finished,
        spec_hash=labels.get(L.SPEC_HASH, ""),
        termination_message=message,
    )


def _log_tail(c: DockerContainer) -> bytes:
    """The container's last log lines (stdout and stderr) for a FallbackToLogsOnError message."""
    try:
        return bytes(c.logs(stdout=True, stderr=True, tail=termination.MAX_LOG_LINES))
    except docker.errors.APIError as exc:
        log.warning("reading logs for a termination message failed", extra={"container_id": c.id, "error": str(exc)})
        return b""


def _init_labels(pod: Pod, spec: Container) -> dict[str, str]:
    """The init-container labels of ``spec`` if it is one of ``pod``'s init containers, else none."""
    for index, init in enumerate(pod.spec.initContainers or []):
        if init.name == spec.name:
            return L.init_labels(index, is_sidecar(init))
    return {}


def _network_of(c: DockerContainer) -> str:
    """The network namespace a container joined (``container:<sandbox id>``)."""
    return str((c.attrs.get("HostConfig") or {}).get("NetworkMode") or "")


def _always(pod: Pod) -> Pod:
    """``pod`` as if its restartPolicy were Always: a sidecar is restarted whatever the pod's policy says."""
    return pod.model_copy(update={"spec": pod.spec.model_copy(update={"restartPolicy": "Always"})})


class ProbeHooks(Protocol):
    """What the runtime needs from the prober (``minik8s.kubelet.probes.Prober``)."""

    def observe(self, pod: Pod, obs: S.PodObservation) -> None: ...

    def unhealthy(self, uid: str, container: str, container_id: str) -> str | None: ...

    def forget(self, uid: str) -> None: ...

    def started(self, pod: Pod, container: str) -> bool: ...


def should_restart(policy: str | None, rec: S.ContainerRecord) -> bool:
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return rec.exit_code != 0
    return True


class DockerRuntime:
    """Runs pods on one dockerd. Thread-safe for different pods; one pod is synced by one thread."""

    def __init__(
        self,
        docker_client: docker.DockerClient,
        node_name: str,
        pods_dir: Path,
        pause_image: str,
        clock: Clock | None = None,
        *,
        pause_command: list[str] | None = None,
        host_ip: str | None = None,
        backoff_base: float = DEFAULT_BASE_SECONDS,
        backoff_cap: float = DEFAULT_CAP_SECONDS,
        backoff_reset: float = DEFAULT_RESET_AFTER_SECONDS,
        events: EventSink | None = None,
        pull_fn: PullFn | None = None,
        on_image_ready: Callable[[str], None] | None = None,
        readiness: S.ReadinessFn = S.always_ready,
        prober: ProbeHooks | None = None,
        cluster_dns: list[str] | None = None,
        cluster_domain: str = "cluster.local",
        config_objects: ConfigObjects | None = None,
        tokens: Tokens | None = None,
        service_env: Callable[[Pod], dict[str, str]] | None = None,
        allocatable: Mapping[str, str | int | float] | None = None,
        node_files: NodeFiles | None = None,
        on_sandbox_started: Callable[[Pod, DockerContainer], None] | None = None,
    ) -> None:
        self.docker = docker_client
        #: The node's allocatable resources: a downward API limit a container does not set.
        self.allocatable = dict(allocatable or {})
        #: The node's resolv.conf and hosts file (dnsPolicy Default, host-network pods).
        self.node_files = node_files or NodeFiles()
        #: Called once a new sandbox runs and before any app container starts in it (NetworkPolicy tables).
        self.on_sandbox_started = on_sandbox_started
        #: ServiceAccount tokens for projected volumes (None: a pod asking for one waits in ContainerCreating).
        self.tokens = tokens
        #: Variables every container gets before its own env (KUBERNETES_SERVICE_HOST/PORT, …).
        self.service_env = service_env
        #: Where ConfigMaps and Secrets the pods consume are read (None: every reference is missing).
        self.config_objects = config_objects
        self.cluster_dns, self.cluster_domain = list(cluster_dns or []), cluster_domain
        self.node_name = node_name
        self.pods_dir = Path(pods_dir)
        self.pause_image = pause_image
        self.pause_command = pause_command
        self.host_ip = host_ip
        self.clock: Clock = clock or SystemClock()
        self.events: EventSink = events or NullSink()
        self.readiness = readiness
        self.prober = prober
        self.hooks = LifecycleHooks(DockerHookActions(docker_client), self.events)
        self.backoff = Backoff(backoff_base, backoff_cap, backoff_reset, self.clock)
        self.puller = ImagePuller(
            docker_client,
            node_name,
            Backoff(backoff_base, backoff_cap, backoff_reset, self.clock),
            pull_fn=pull_fn,
            on_done=on_image_ready,
        )
        self._lock = threading.Lock()
        self._waiting: dict[str, dict[str, tuple[str, str]]] = {}  # uid -> container -> (reason, message)
        self._pull_seen: dict[tuple[str, str], float] = {}  # (uid, container) -> failure time reported

    # --- listing -------------------------------------------------------------------------------

    def _containers(self, sparse: bool = False, **selector: str) -> list[DockerContainer]:
        """Managed containers matching ``selector`` (inspected unless ``sparse``: labels only, no State)."""
        found: list[DockerContainer] = self.docker.containers.list(
            all=True, sparse=sparse, filters=L.label_filter(**selector), ignore_removed=True
        )
        return found

    def list_pods(self) -> list[L.PodRef]:
        """Every pod that has at least one container on this node (running or not)."""
        refs = {L.pod_ref_from_labels(_labels(c)) for c in self._containers(sparse=True)}
        return sorted((r for r in refs if r is not None), key=lambda r: (r.namespace, r.name, r.uid))

    def list_pod_uids(self) -> list[str]:
        return sorted({r.uid for r in self.list_pods()})

    def _split(
        self, containers: list[DockerContainer]
    ) -> tuple[list[DockerContainer], dict[str, list[DockerContainer]]]:
        """(sandboxes newest first, app containers by name newest first)."""
        sandboxes: list[DockerContainer] = []
        apps: dict[str, list[DockerContainer]] = {}
        for c in containers:
            labels = _labels(c)
            if labels.get(L.CONTAINER_TYPE) == L.TYPE_SANDBOX:
                sandboxes.append(c)
            else:
                apps.setdefault(labels.get(L.CONTAINER_NAME, ""), []).append(c)

        def order(c: DockerContainer) -> tuple[int, str]:
            return (L.restart_count_of(_labels(c)), str(c.attrs.get("Created", "")))

        sandboxes.sort(key=order, reverse=True)
        for group in apps.values():
            group.sort(key=order, reverse=True)
        return sandboxes, apps

    # --- status --------------------------------------------------------------------------------

    def observe(self, pod: Pod) -> S.PodObservation:
        uid = pod.metadata.uid or ""
        sandboxes, apps = self._split(self._containers(uid=uid))
        obs = S.PodObservation(host_ip=self.host_ip)
        if sandboxes and sandboxes[0].status == "running":
            obs.pod_ip = self._sandbox_ip(pod, sandboxes[0])
        obs.containers = {name: [record_of(c) for c in group] for name, group in apps.items()}
        with self._lock:
            obs.waiting = dict(self._waiting.get(uid, {}))
        return obs

    def _sandbox_ip(self, pod: Pod, sandbox: DockerContainer) -> str | None:
        if pod.spec.hostNetwork:
            return self.host_ip
        ip = sandbox.attrs.get("NetworkSettings", {}).get("IPAddress")
        return str(ip) if ip else None

    def pod_status(self, pod: Pod) -> PodStatus:
        obs = self.observe(pod)
        if self.prober is not None:
            self.prober.observe(pod, obs)
        started = self.prober.started if self.prober is not None else S.always_ready
        return S.pod_status(pod, obs, self.clock.now(), self.readiness, started)

    # --- sync ------------------------------------------------------------------------------------

    def sync_pod(self, pod: Pod) -> float | None:
        """Make the node match ``pod``'s spec; returns seconds after which to sync again, if any."""
        uid = pod.metadata.uid or ""
        ref = L.PodRef(uid=uid, namespace=pod.metadata.namespace or "default", name=pod.name)
        sandboxes, apps = self._split(self._containers(uid=uid))
        waiting: dict[str, tuple[str, str]] = {}
        requeue: list[float] = []
        to_start: dict[str, int] = {}  # container name -> restart count to create it with
        running = 0
        for spec in pod.spec.containers:
            group = apps.get(spec.name, [])
            self._prune(group)
            decision = self._decide(pod, ref, spec, group, waiting, requeue)
            if decision == "running":
                running += 1
            elif isinstance(decision, int):
                to_start[spec.name] = decision
        if pod.spec.initContainers and (to_start or running or waiting) and not self._sync_init(
                pod, ref, sandboxes, apps, waiting, requeue):
            self._set_waiting(uid, waiting)  # still initializing: no app container starts yet
            return min(requeue) if requeue else None
        sandbox = sandboxes[0] if sandboxes else None
        if sandbox is not None and sandbox.status == "running" and has_config_volumes(pod):
            self._refresh_volumes(pod)
        if not to_start and running == 0 and not waiting:
            # Every container finished for good: release the pod's address, as Kubernetes does.
            self._stop_sidecars(pod.metadata.uid or "", pod.spec.terminationGracePeriodSeconds)
            if sandbox is not None and sandbox.status == "running":
                self._stop(sandbox, SANDBOX_STOP_SECONDS)
            self._set_waiting(uid, waiting)
            return None
        if to_start:
            sandbox = self._ensure_sandbox(pod, ref, sandboxes, apps, waiting, requeue)
            if sandbox is not None:
                for spec in pod.spec.containers:
                    if spec.name in to_start and not self._start_container(
                            pod, ref, spec, to_start[spec.name], sandbox, waiting, requeue):
                        break  # the sandbox died under us: the next sync re-creates it
        self._set_waiting(uid, waiting)
        return min(requeue) if requeue else None

    # --- init containers and sidecars ----------------------------------------------------------------

    def _sync_init(
        self,
        pod: Pod,
        ref: L.PodRef,
        sandboxes: list[DockerContainer],
        apps: dict[str, list[DockerContainer]],
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> bool:
        """Run the init containers one at a time in the live sandbox; True once the pod is initialized.

        Only instances that joined the live sandbox count, so a new sandbox runs them all again. Sidecars are
        kept running (restarted with back-off) on every sync, also after initialization.
        """
        sandbox = sandboxes[0] if sandboxes and sandboxes[0].status == "running" else None
        if sandbox is None:
            sandbox = self._ensure_sandbox(pod, ref, sandboxes, apps, waiting, requeue)
            if sandbox is None:
                return False
            sandboxes[:] = [sandbox]  # the caller starts app containers into this one
        for spec in pod.spec.initContainers or []:
            self._prune(apps.get(spec.name, []))
        joined = f"container:{sandbox.id}"
        current = {name: [c for c in group if _network_of(c) == joined] for name, group in apps.items()}
        app_started = any(current.get(c.name) for c in pod.spec.containers)
        for spec in pod.spec.initContainers or []:
            group, older = current.get(spec.name, []), apps.get(spec.name, [])
            if is_sidecar(spec):
                ok = self._sync_sidecar(pod, ref, spec, group, older, sandbox, waiting, requeue)
            else:
                ok = app_started or self._sync_regular_init(pod, ref, spec, group, older, sandbox, waiting, requeue)
            if not ok and not app_started:
                return False
        return True

    def _sync_regular_init(
        self,
        pod: Pod,
        ref: L.PodRef,
        spec: Container,
        group: list[DockerContainer],
        older: list[DockerContainer],
        sandbox: DockerContainer,
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> bool:
        """True when ``spec`` completed (exit 0) in this sandbox; otherwise start, restart or wait for it."""
        if not group:
            count = L.restart_count_of(_labels(older[0])) + 1 if older else 0
            self._start_container(pod, ref, spec, count, sandbox, waiting, requeue)
            return False
        rec = record_of(group[0])
        if rec.exited and rec.exit_code == 0:
            return True
        if rec.exited and pod.spec.restartPolicy == "Never":
            return False  # the pod failed: its status says so, nothing runs after it
        decision = self._decide(pod, ref, spec, group, waiting, requeue)
        if isinstance(decision, int):
            self._start_container(pod, ref, spec, decision, sandbox, waiting, requeue)
        return False

    def _sync_sidecar(
        self,
        pod: Pod,
        ref: L.PodRef,
        spec: Container,
        group: list[DockerContainer],
        older: list[DockerContainer],
        sandbox: DockerContainer,
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> bool:
        """True when the sidecar runs in this sandbox and has started (startup probe passed, if it has one)."""
        if not group:
            count = L.restart_count_of(_labels(older[0])) + 1 if older else 0
            self._start_container(pod, ref, spec, count, sandbox, waiting, requeue)
            return False
        decision = self._decide(_always(pod), ref, spec, group, waiting, requeue)
        if isinstance(decision, int):
            self._start_container(pod, ref, spec, decision, sandbox, waiting, requeue)
            return False
        if decision != "running":
            return False
        return spec.startupProbe is None or self.prober is None or self.prober.started(pod, spec.name)

    def _stop_sidecars(self, uid: str, grace_seconds: int | None) -> None:
        """Stop the pod's running sidecars one by one, last declared first (after its app containers)."""
        running = [(index, c) for c in self._containers(uid=uid)
                   if c.status == "running" and (index := L.sidecar_index(_labels(c))) is not None]
        for _, c in sorted(running, key=lambda pair: pair[0], reverse=True):
            grace = grace_seconds
            if grace is None:
                grace = int(_labels(c).get(L.GRACE_PERIOD, DEFAULT_GRACE_SECONDS))
            self._stop(c, grace)

    def _refresh_volumes(self, pod: Pod) -> None:
        """Publish changed ConfigMap/Secret contents into a running pod's volumes (what its containers see
        changes without a restart). A required object that went away keeps the last contents, as in Kubernetes."""
        try:
            prepare_volumes(pod, self.pods_dir, self.config_objects, self.tokens, self.allocatable)
        except ConfigError as exc:
            self._mount_failed(pod, exc)
        except (SpecError, OSError) as exc:
            log.warning("refreshing volumes failed", extra={"pod": pod.name, "error": str(exc)})

    def _mount_failed(self, pod: Pod, exc: ConfigError) -> str:
        message = f'MountVolume.SetUp failed for volume "{exc.volume}" : {exc}'
        self.events.event(pod, WARNING, "FailedMount", message)
        return message

    def _set_waiting(self, uid: str, waiting: dict[str, tuple[str, str]]) -> None:
        with self._lock:
            self._waiting[uid] = waiting

    def _prune(self, group: list[DockerContainer]) -> None:
        for old in group[KEEP_INSTANCES:]:
            self._remove(old)
        del group[KEEP_INSTANCES:]

    def _decide(
        self,
        pod: Pod,
        ref: L.PodRef,
        spec: Container,
        group: list[DockerContainer],
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> str | int | None:
        """ "running", a restart count to start the container with, or None (done / backing off)."""
        if not group:
            return 0
        current = group[0]
        rec = record_of(current)
        if rec.running:
            if rec.spec_hash and rec.spec_hash != L.spec_hash(spec.to_dict()):
                self.events.event(
                    pod,
                    NORMAL,
                    "Killing",
                    f"Container {spec.name} definition changed, will be restarted",
                    spec.name,
                )
                self._stop(current, pod.spec.terminationGracePeriodSeconds or DEFAULT_GRACE_SECONDS)
                return rec.restart_count + 1
            if not self._kill_unhealthy(pod, spec, current, rec):
                return "running"
            rec = record_of(current)  # now exited: restarted below per restartPolicy and back-off
            if rec.running:
                return "running"  # the stop failed; the next sync tries again
        if not rec.exited:  # created but never started (a kubelet crash in between): start it afresh
            self._remove(current)
            group.pop(0)
            return rec.restart_count
        if not should_restart(pod.spec.restartPolicy, rec):
            return None
        key = (ref.uid, spec.name)
        finished = S.parse_time(rec.finished_at) or self.clock.now()
        started = S.parse_time(rec.started_at) or finished
        remaining = self.backoff.remaining(key, finished, finished - started)
        if remaining > 0:
            delay = self.backoff.delay(key)
            message = (
                f"back-off {delay:g}s restarting failed container={spec.name} pod={ref.name}_{ref.namespace}({ref.uid})"
            )
            waiting[spec.name] = (S.REASON_CRASH_LOOP, message)
            self.events.event(pod, WARNING, "BackOff", "Back-off restarting failed container", spec.name)
            requeue.append(remaining)
            return None
        return rec.restart_count + 1

    def _kill_unhealthy(self, pod: Pod, spec: Container, current: DockerContainer, rec: S.ContainerRecord) -> bool:
        """Stop a container whose liveness or startup probe failed; True if it was asked to stop."""
        failed = self.prober.unhealthy(pod.metadata.uid or "", spec.name, rec.id) if self.prober else None
        if failed is None:
            return False
        self.events.event(
            pod, NORMAL, "Killing", f"Container {spec.name} failed {failed} probe, will be restarted", spec.name
        )
        probe = spec.startupProbe if failed == "startup" else spec.livenessProbe
        grace = probe.terminationGracePeriodSeconds if probe is not None else None
        if grace is None:
            grace = pod.spec.terminationGracePeriodSeconds
        self._stop(current, grace if grace is not None else DEFAULT_GRACE_SECONDS)
        try:
            current.reload()
        except docker.errors.NotFound:
            pass
        return True

    def _ensure_sandbox(
        self,
        pod: Pod,
        ref: L.PodRef,
        sandboxes: list[DockerContainer],
        apps: dict[str, list[DockerContainer]],
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> DockerContainer | None:
        if sandboxes and sandboxes[0].status == "running":
            return sandboxes[0]
        # No live sandbox: containers still running in a dead one's namespace must go with it.
        for group in apps.values():
            for c in group:
                if c.status == "running":
                    self._stop(c, pod.spec.terminationGracePeriodSeconds or DEFAULT_GRACE_SECONDS)
        attempt = L.restart_count_of(_labels(sandboxes[0])) + 1 if sandboxes else 0
        for old in sandboxes:
            self._remove(old)
        if not self._image_ready(pod, ref, L.SANDBOX_NAME, self.pause_image, None, waiting, requeue):
            for spec in pod.spec.containers:
                waiting.setdefault(spec.name, waiting.get(L.SANDBOX_NAME, (S.REASON_CONTAINER_CREATING, "")))
            waiting.pop(L.SANDBOX_NAME, None)
            return None
        try:
            volumes = prepare_volumes(pod, self.pods_dir, self.config_objects, self.tokens, self.allocatable)
            return self._create_sandbox(pod, ref, attempt, volumes)
        except ConfigError as exc:
            # volumes are set up before the sandbox: the pod waits in ContainerCreating (FailedMount events)
            message = self._mount_failed(pod, exc)
            for spec in pod.spec.containers:
                waiting[spec.name] = (S.REASON_CONTAINER_CREATING, message)
            requeue.append(self.backoff.base)
            return None
        except (docker.errors.APIError, SpecError, OSError) as exc:
            message = f"failed to create pod sandbox: {exc}"
            log.warning("sandbox creation failed", extra={"pod": ref.key, "error": str(exc)})
            self.events.event(pod, WARNING, "FailedCreatePodSandBox", message)
            for spec in pod.spec.containers:
                waiting[spec.name] = (S.REASON_CONTAINER_CREATING, message)
            requeue.append(self.backoff.base)
            return None

    def _create_sandbox(self, pod: Pod, ref: L.PodRef, attempt: int, volumes: VolumePaths) -> DockerContainer:
        grace = pod.spec.terminationGracePeriodSeconds or DEFAULT_GRACE_SECONDS
        kwargs: dict[str, Any] = {
            "name": L.docker_name(ref, L.SANDBOX_NAME, attempt),
            "labels": L.container_labels(ref, self.node_name, L.SANDBOX_NAME, attempt, "", grace),
            "hostname": pod_hostname(pod),
            "ipc_mode": "shareable",
            "detach": True,
        }
        if pod.spec.hostNetwork:
            kwargs["network_mode"] = "host"
            kwargs.pop("hostname")
        else:
            ports = sandbox_port_bindings(pod)
            if ports:
                kwargs["ports"] = ports
        if self.pause_command is not None:
            kwargs["command"] = list(self.pause_command)
        sandbox: DockerContainer = self.docker.containers.create(self.pause_image, **kwargs)
        sandbox.start()
        sandbox.reload()
        log.info("started sandbox", extra={"pod": ref.key, "uid": ref.uid, "container_id": sandbox.id})
        if self.on_sandbox_started is not None and not pod.spec.hostNetwork:
            self.on_sandbox_started(pod, sandbox)  # must not raise (PolicyAgent.program_sandbox never does)
        return sandbox

    def _image_ready(
        self,
        pod: Pod,
        ref: L.PodRef,
        name: str,
        image: str,
        policy: str | None,
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> bool:
        result = self.puller.check(image, policy)
        if result.state is PullState.PRESENT:
            if self._pull_seen.pop((ref.uid, name), None) is not None:
                self.events.event(pod, NORMAL, "Pulled", f'Container image "{image}" is now present', name)
            return True
        if result.state is PullState.PULLING:
            if (ref.uid, name) not in self._pull_seen:
                self._pull_seen[(ref.uid, name)] = 0.0
                self.events.event(pod, NORMAL, "Pulling", f'Pulling image "{image}"', name)
            waiting[name] = (S.REASON_CONTAINER_CREATING, f'pulling image "{image}"')
            requeue.append(PULL_POLL_SECONDS)  # a safety net: the pull's callback normally requeues first
            return False
        if result.state is PullState.NEVER:
            waiting[name] = (REASON_NEVER_PULL, result.message)
            self.events.event(pod, WARNING, REASON_NEVER_PULL, result.message, name)
            return False
        if self._pull_seen.get((ref.uid, name)) == result.failed_at:
            waiting[name] = (
                S.REASON_IMAGE_PULL_BACKOFF,
                f'Back-off pulling image "{image}": {result.message}',
            )
            self.events.event(pod, NORMAL, "BackOff", f'Back-off pulling image "{image}"', name)
        else:
            self._pull_seen[(ref.uid, name)] = result.failed_at
            waiting[name] = (S.REASON_ERR_IMAGE_PULL, result.message)
            self.events.event(pod, WARNING, "Failed", f"Failed to pull image: {result.message}", name)
        requeue.append(result.retry_in)
        return False

    def _image_user(self, image: str) -> str:
        """The user the image runs as (its config's `User`, "" for root by default)."""
        try:
            return str(self.docker.images.get(image).attrs.get("Config", {}).get("User") or "")
        except docker.errors.ImageNotFound:
            raise SpecError(f'image "{image}" is not on this node: cannot check its user') from None

    def _start_container(
        self,
        pod: Pod,
        ref: L.PodRef,
        spec: Container,
        restart_count: int,
        sandbox: DockerContainer,
        waiting: dict[str, tuple[str, str]],
        requeue: list[float],
    ) -> bool:
        """Create and start one container in ``sandbox``; False when the sandbox turned out to be dead."""
        image = spec.image or ""
        if not self._image_ready(pod, ref, spec.name, image, spec.imagePullPolicy, waiting, requeue):
            return True
        grace = pod.spec.terminationGracePeriodSeconds or DEFAULT_GRACE_SECONDS
        name = L.docker_name(ref, spec.name, restart_count)
        skipped_env: list[str] = []
        try:
            kwargs = container_kwargs(
                pod,
                spec,
                sandbox.id or "",
                prepare_volumes(pod, self.pods_dir, self.config_objects, self.tokens, self.allocatable),
                self._sandbox_ip(pod, sandbox),
                self.host_ip,
                self.config_objects,
                skipped_env,
                self._image_user(image) if image_user_needed(spec, pod) else "",
                self.allocatable,
            )
            kwargs["volumes"] += self._etc_binds(pod, spec, sandbox)
            if self.service_env is not None:  # the container's own env wins, as in Kubernetes
                kwargs["environment"] = {**self.service_env(pod), **kwargs["environment"]}
            message_bind, message_labels = termination.prepare(self.pods_dir, ref.uid, spec, restart_count)
            kwargs["volumes"] = [*kwargs["volumes"], message_bind]
            self._remove_named(name)
            created: DockerContainer = self.docker.containers.create(
                image,
                name=name,
                labels={
                    **L.container_labels(
                        ref, self.node_name, spec.name, restart_count, L.spec_hash(spec.to_dict()), grace
                    ),
                    **message_labels,
                    **pre_stop_labels(spec, self._sandbox_ip(pod, sandbox)),
                    **_init_labels(pod, spec),
                },
                **kwargs,
            )
        except ConfigError as exc:
            # the pod is fine, the cluster lacks what it references: retried, and synced at once when it appears
            message = str(exc)
            waiting[spec.name] = (REASON_CONFIG_ERROR, message)
            self.events.event(pod, WARNING, "Failed", f"Error: {message}", spec.name)
            requeue.append(self.backoff.base)
            return True
        except (docker.errors.APIError, SpecError, OSError) as exc:
            if isinstance(exc, docker.errors.APIError) and not self._alive(sandbox):
                return self._sandbox_changed(pod, ref, requeue)
            message = str(exc)
            waiting[spec.name] = (S.REASON_CREATE_ERROR, message)
            self.events.event(pod, WARNING, "Failed", f"Error: {message}", spec.name)
            requeue.append(self.backoff.base)
            return True
        if skipped_env:
            self.events.event(pod, WARNING, "InvalidEnvironmentVariableNames",
                              f"Keys [{', '.join(sorted(skipped_env))}] from the EnvFrom of container {spec.name} "
                              "were skipped since they are considered invalid environment variable names.", spec.name)
        self.events.event(pod, NORMAL, "Created", f"Created container {spec.name}", spec.name)
        if restart_count > 0:
            self.backoff.restarted((ref.uid, spec.name))
        try:
            created.start()
        except docker.errors.APIError as exc:
            if not self._alive(sandbox):
                # "cannot join network of a non running container": not the container's failure, so no
                # back-off and no restart counted; the pod gets a new sandbox at once.
                self._remove(created)
                return self._sandbox_changed(pod, ref, requeue)
            message = str(exc)
            waiting[spec.name] = (REASON_RUN_ERROR, message)
            self.events.event(pod, WARNING, "Failed", f"Error: {message}", spec.name)
            if restart_count == 0:
                self.backoff.restarted((ref.uid, spec.name))
            requeue.append(self.backoff.delay((ref.uid, spec.name)))
            return True
        self.events.event(pod, NORMAL, "Started", f"Started container {spec.name}", spec.name)
        if self.hooks.post_start(pod, spec, created.id or "", self._sandbox_ip(pod, sandbox)) is not None:
            # as the kubelet: the container is killed (preStop included) and restartPolicy/back-off take over
            self._stop(created, grace)
            requeue.append(self.backoff.base)
            return True
        log.info(
            "started container",
            extra={"pod": ref.key, "container": spec.name, "restart_count": restart_count},
        )
        return True

    def _etc_binds(self, pod: Pod, spec: Container, sandbox: DockerContainer) -> list[str]:
        """The pod's kubelet-written /etc/hosts and /etc/resolv.conf (hostAliases, hostname/subdomain, dnsPolicy,
        dnsConfig) for one container; a dnsConfig over glibc's limits is trimmed with a DNSConfigForming event."""
        warnings: list[str] = []
        binds = etc_binds(self.pods_dir / (pod.metadata.uid or ""), pod, self._sandbox_ip(pod, sandbox),
                          self.cluster_dns, self.cluster_domain, self.node_files,
                          {m.mountPath for m in spec.volumeMounts or []}, warnings)
        for message in warnings:
            self.events.event(pod, WARNING, "DNSConfigForming", message)
        return binds

    def _alive(self, sandbox: DockerContainer) -> bool:
        """Whether ``sandbox`` runs now (the listing a sync works from can be older than its death)."""
        try:
            sandbox.reload()
        except docker.errors.NotFound:
            return False
        return bool(sandbox.status == "running")

    def _sandbox_changed(self, pod: Pod, ref: L.PodRef, requeue: list[float]) -> bool:
        log.info("pod sandbox died while starting containers into it", extra={"pod": ref.key})
        self.events.event(pod, NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
        requeue.append(SANDBOX_CHANGED_RESYNC_SECONDS)
        return False

    # --- teardown --------------------------------------------------------------------------------

    def _stop(self, c: DockerContainer, grace: int) -> None:
        """Stop a running container: its preStop hook, SIGTERM, what is left of ``grace``, SIGKILL."""
        grace = self.hooks.pre_stop(c.id or "", _labels(c), grace)
        try:
            c.stop(timeout=max(0, grace))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            log.warning("docker stop failed", extra={"container_id": c.id, "error": str(exc)})

    def _remove(self, c: DockerContainer) -> None:
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            # 409 "removal already in progress" is fine; anything else is retried on the next sync
            log.warning("docker rm failed", extra={"container_id": c.id, "error": str(exc)})

    def _remove_named(self, name: str) -> None:
        try:
            self._remove(self.docker.containers.get(name))
        except docker.errors.NotFound:
            return

    def kill_pod(self, uid: str, grace_seconds: int | None = None) -> None:
        """Stop every container of the pod: SIGTERM, wait up to the grace period, SIGKILL; sandbox last.

        ``grace_seconds`` None uses the grace period recorded on the containers.
        """
        sandboxes, apps = self._split(self._containers(uid=uid))
        live = [c for group in apps.values() for c in group
                if c.status == "running" and L.sidecar_index(_labels(c)) is None]  # sidecars stop last
        if live:
            with ThreadPoolExecutor(max_workers=min(KILL_WORKERS, len(live)), thread_name_prefix="kill") as pool:
                for c in live:
                    grace = grace_seconds
                    if grace is None:
                        grace = int(_labels(c).get(L.GRACE_PERIOD, DEFAULT_GRACE_SECONDS))
                    pool.submit(self._stop, c, grace)
        self._stop_sidecars(uid, grace_seconds)
        for sandbox in sandboxes:
            if sandbox.status == "running":
                self._stop(
                    sandbox,
                    min(
                        SANDBOX_STOP_SECONDS,
                        grace_seconds if grace_seconds is not None else SANDBOX_STOP_SECONDS,
                    ),
                )
        log.info("killed pod", extra={"uid": uid, "containers": len(live)})

    def stop_sandbox(self, uid: str) -> None:
        """Release a finished pod's network namespace (its app containers have all exited; sidecars go first)."""
        self._stop_sidecars(uid, None)
        sandboxes, _ = self._split(self._containers(uid=uid, container=L.SANDBOX_NAME))
        for sandbox in sandboxes:
            if sandbox.status == "running":
                self._stop(sandbox, SANDBOX_STOP_SECONDS)

    def remove_pod(self, uid: str) -> None:
        """Remove the pod's containers (running ones are killed) and its emptyDir volumes."""
        for c in self._containers(uid=uid):
            self._remove(c)
        pod_dir = self.pods_dir / uid
        if pod_dir.exists():
            emptydir.unmount_volumes(pod_dir)  # else rmtree would empty the tmpfs and leave it mounted
            shutil.rmtree(pod_dir, ignore_errors=True)
        self.backoff.forget_prefix(uid)
        if self.prober is not None:
            self.prober.forget(uid)
        with self._lock:
            self._waiting.pop(uid, None)
            for key in [k for k in list(self._pull_seen) if k[0] == uid]:
                del self._pull_seen[key]

    # --- logs and exec ---------------------------------------------------------------------------

    def _instances(self, namespace: str, pod: str, container: str) -> list[DockerContainer]:
        found = self._containers(namespace=namespace, name=pod, container=container)
        if not found:
            raise NotFound(
                f'container "{container}" in pod "{pod}" (namespace {namespace}) not found on node {self.node_name}'
            )
        found.sort(key=lambda c: (str(c.attrs.get("Created", "")), L.restart_count_of(_labels(c))), reverse=True)
        return found

    def logs(
        self,
        namespace: str,
        pod: str,
        container: str,
        follow: bool = False,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> Iterator[bytes]:
        instances = self._instances(namespace, pod, container)
        if previous:
            if len(instances) < 2:
                raise BadRequest(f'previous terminated container "{container}" in pod "{pod}" not found')
            target = instances[1]
        else:
            target = instances[0]
        tail: int | str = tail_lines if tail_lines is not None else "all"
        stream: Iterator[bytes] = target.logs(stream=True, follow=follow, tail=tail)
        return stream

    def running_container(self, namespace: str, pod: str, container: str) -> DockerContainer:
        """The container's current instance, for exec and attach; BadRequest when it is not running."""
        target = self._instances(namespace, pod, container)[0]
        if target.status != "running":
            raise BadRequest(f'container "{container}" in pod "{pod}" is not running')
        return target

    def exec(self, namespace: str, pod: str, container: str, cmd: list[str]) -> tuple[int, bytes]:
        result = self.running_container(namespace, pod, container).exec_run(cmd)
        return int(result.exit_code or 0), bytes(result.output or b"")

    def sandbox_pid(self, namespace: str, pod: str) -> int:
        """The pid of the pod's running sandbox: port-forward dials from its network namespace."""
        sandbox = self._instances(namespace, pod, L.SANDBOX_NAME)[0]
        pid = int((sandbox.attrs.get("State") or {}).get("Pid") or 0)
        if sandbox.status != "running" or not pid:
            raise BadRequest(f'pod "{pod}" has no running sandbox on node {self.node_name}')
        return pid

    def close(self) -> None:
        self.puller.shutdown()
