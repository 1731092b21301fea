"""Pure computation of a Kubernetes ``PodStatus`` from what Docker reports about a pod.

Nothing here talks to Docker or the API, so phase, conditions and container states are
unit-tested with fake records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from minik8s.api.podutil import is_sidecar
from minik8s.api.types import (
    Condition,
    Container,
    ContainerState,
    ContainerStateRunning,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    Pod,
    PodIP,
    PodStatus,
)

RUNTIME_SCHEME = "docker://"
#: Docker's zero time for containers that never started/finished.
DOCKER_ZERO_TIME_PREFIX = "0001-01-01"
REASON_CONTAINER_CREATING = "ContainerCreating"
REASON_CRASH_LOOP = "CrashLoopBackOff"
REASON_ERR_IMAGE_PULL = "ErrImagePull"
REASON_IMAGE_PULL_BACKOFF = "ImagePullBackOff"
REASON_OOM_KILLED = "OOMKilled"
REASON_COMPLETED = "Completed"
REASON_ERROR = "Error"
REASON_CREATE_ERROR = "CreateContainerError"
#: Waiting reason of every not-yet-created container of a pod that has init containers (kubelet's default).
REASON_POD_INITIALIZING = "PodInitializing"
REASON_NOT_INITIALIZED = "ContainersNotInitialized"

#: Readiness hook: (pod, container name) -> ready? Called only for running containers.
#: Readiness probes will plug in here; the default says a running container is ready.
ReadinessFn = Callable[[Pod, str], bool]


def always_ready(pod: Pod, container: str) -> bool:
    return True


@dataclass
class ContainerRecord:
    """One Docker container of a pod, as inspected."""

    id: str
    name: str
    restart_count: int
    image_id: str
    status: str  # docker State.Status: created, running, exited, dead, ...
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str | None = None  # RFC 3339 (seconds) or None
    finished_at: str | None = None
    spec_hash: str = ""
    #: What the container left at its terminationMessagePath (or its log tail), once it exited.
    termination_message: str = ""

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")

    @property
    def exited(self) -> bool:
        return self.status in ("exited", "dead")

    def terminated_state(self) -> ContainerStateTerminated:
        if self.oom_killed:
            reason = REASON_OOM_KILLED
        elif self.exit_code == 0:
            reason = REASON_COMPLETED
        else:
            reason = REASON_ERROR
        return ContainerStateTerminated(
            exitCode=self.exit_code,
            reason=reason,
            # as the kubelet: the runtime's own message, then what the container left
            message=": ".join(m for m in (self.error, self.termination_message) if m) or None,
            startedAt=self.started_at,
            finishedAt=self.finished_at,
            containerID=RUNTIME_SCHEME + self.id,
        )


@dataclass
class PodObservation:
    """Everything the runtime saw for one pod."""

    pod_ip: str | None = None
    host_ip: str | None = None
    #: container name -> its instances, newest (highest restart count) first
    containers: dict[str, list[ContainerRecord]] = field(default_factory=dict)
    #: container name -> (reason, message) for containers the runtime is holding back
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)


def docker_time(value: str | None) -> str | None:
    """Docker's nanosecond RFC 3339 time as Kubernetes' seconds form; None for the zero time."""
    if not value or value.startswith(DOCKER_ZERO_TIME_PREFIX):
        return None
    return value[:19] + "Z"


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_status(
    pod: Pod, spec: Container, obs: PodObservation, readiness: ReadinessFn
) -> ContainerStatus:
    records = obs.containers.get(spec.name, [])
    waiting = obs.waiting.get(spec.name)
    image = spec.image or ""
    if not records:
        reason, message = waiting or (REASON_CONTAINER_CREATING, "")
        return ContainerStatus(
            name=spec.name,
            ready=False,
            restartCount=0,
            image=image,
            imageID="",  # required by Kubernetes' schema (and the official client's models) before a pull
            started=False,
            state=ContainerState(waiting=ContainerStateWaiting(reason=reason, message=message or None)),
            lastState=ContainerState(),
        )
    current = records[0]
    previous = records[1] if len(records) > 1 else None
    last = ContainerState()
    ready = False
    if current.running:
        state = ContainerState(running=ContainerStateRunning(startedAt=current.started_at))
        ready = readiness(pod, spec.name)
        if previous is not None and previous.exited:
            last = ContainerState(terminated=previous.terminated_state())
    elif current.exited and waiting is not None:
        state = ContainerState(waiting=ContainerStateWaiting(reason=waiting[0], message=waiting[1] or None))
        last = ContainerState(terminated=current.terminated_state())
    elif current.exited:
        state = ContainerState(terminated=current.terminated_state())
        if previous is not None and previous.exited:
            last = ContainerState(terminated=previous.terminated_state())
    else:
        reason, message = waiting or (REASON_CONTAINER_CREATING, "")
        state = ContainerState(waiting=ContainerStateWaiting(reason=reason, message=message or None))
    return ContainerStatus(
        name=spec.name,
        ready=ready,
        restartCount=current.restart_count,
        image=image,
        imageID=RUNTIME_SCHEME + current.image_id if current.image_id else "",
        containerID=RUNTIME_SCHEME + current.id,
        started=current.running,
        state=state,
        lastState=last,
    )


def pod_phase(pod: Pod, statuses: list[ContainerStatus], init_statuses: list[ContainerStatus] | None = None) -> str:
    """Kubernetes' getPhase: init containers gate the phase, sidecars count while they run."""
    policy = pod.spec.restartPolicy or "Always"
    waiting = running = stopped = succeeded = 0
    pending_init, failed_init, sidecars_running, sidecars_waiting = _init_counts(pod, init_statuses or [])
    if failed_init and policy == "Never":
        return "Failed"
    running += sidecars_running
    waiting += sidecars_waiting
    for st in statuses:
        state = st.state or ContainerState()
        if state.running is not None:
            running += 1
        elif state.terminated is not None:
            stopped += 1
            succeeded += state.terminated.exitCode == 0
        elif st.lastState is not None and st.lastState.terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting > 0 or (pending_init > 0 and not _any_app_started(statuses)):
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _init_counts(pod: Pod, init_statuses: list[ContainerStatus]) -> tuple[int, int, int, int]:
    """(pending regular init, failed regular init, running sidecars, waiting never-run sidecars), as getPhase
    counts them: a terminated sidecar, or one waiting to restart, does not count towards the phase."""
    specs = {c.name: c for c in pod.spec.initContainers or []}
    pending = failed = running = waiting = 0
    for st in init_statuses:
        spec = specs.get(st.name)
        state = st.state or ContainerState()
        last = (st.lastState or ContainerState()).terminated
        if spec is not None and is_sidecar(spec):
            if state.running is not None:
                running += 1
            elif state.waiting is not None and last is None:
                waiting += 1
            continue
        if state.terminated is not None:
            failed += state.terminated.exitCode != 0
        elif state.waiting is not None and last is not None:
            failed += last.exitCode != 0  # waiting to run again: not pending unless it never ran
        else:
            pending += 1
    return pending, failed, running, waiting


def _any_app_started(statuses: list[ContainerStatus]) -> bool:
    """Whether a regular container ever ran in the pod (then init containers no longer gate the phase)."""
    return any((st.state or ContainerState()).waiting is None or (st.lastState or ContainerState()).terminated
               for st in statuses)


def initialized(pod: Pod, init_statuses: list[ContainerStatus], statuses: list[ContainerStatus]) -> list[str]:
    """Init containers that have not done their part (Kubernetes' Initialized condition): a regular one must have
    exited 0, a sidecar must have started; nothing is pending once an app container has run."""
    if _any_app_started(statuses):
        return []
    specs = {c.name: c for c in pod.spec.initContainers or []}
    pending = []
    for st in init_statuses:
        spec = specs.get(st.name)
        state = st.state or ContainerState()
        if spec is not None and is_sidecar(spec):
            done = bool(st.started)
        else:
            done = state.terminated is not None and state.terminated.exitCode == 0
        if not done:
            pending.append(st.name)
    return pending


def init_container_status(
    pod: Pod, spec: Container, obs: PodObservation, readiness: ReadinessFn, started: ReadinessFn = always_ready
) -> ContainerStatus:
    """An init container's status: a regular one is ready once it completed; a sidecar is ready as an app
    container is, and started once its startup probe (if any) succeeded (what lets the next init container run)."""
    st = container_status(pod, spec, obs, readiness)
    if is_sidecar(spec):
        st.started = bool(st.started) and started(pod, spec.name)
    else:
        term = (st.state or ContainerState()).terminated
        st.ready = term is not None and term.exitCode == 0
    return st


def _default_initializing(pod: Pod, obs: PodObservation) -> PodObservation:
    """With init containers, a container not created yet waits as PodInitializing (not ContainerCreating)."""
    if not pod.spec.initContainers:
        return obs
    waiting = dict(obs.waiting)
    for c in [*pod.spec.initContainers, *pod.spec.containers]:
        if not obs.containers.get(c.name):
            waiting.setdefault(c.name, (REASON_POD_INITIALIZING, ""))
    return PodObservation(pod_ip=obs.pod_ip, host_ip=obs.host_ip, containers=obs.containers, waiting=waiting)


def qos_class(pod: Pod) -> str:
    requests_seen = limits_seen = False
    guaranteed = True
    for c in [*(pod.spec.initContainers or []), *pod.spec.containers]:  # Kubernetes counts init containers too
        res = c.resources
        req = dict(res.requests or {}) if res else {}
        lim = dict(res.limits or {}) if res else {}
        requests_seen = requests_seen or bool(req)
        limits_seen = limits_seen or bool(lim)
        for resource in ("cpu", "memory"):
            if resource not in lim or (resource in req and str(req[resource]) != str(lim[resource])):
                guaranteed = False
    if not requests_seen and not limits_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _condition(
    ctype: str,
    ok: bool,
    now: str,
    previous: PodStatus | None,
    reason: str | None = None,
    message: str | None = None,
) -> Condition:
    status: Literal["True", "False"] = "True" if ok else "False"
    since = now
    for old in (previous.conditions or []) if previous else []:
        if old.type == ctype and old.status == status and old.lastTransitionTime:
            since = old.lastTransitionTime
    return Condition(
        type=ctype,
        status=status,
        lastTransitionTime=since,
        lastProbeTime=None,
        reason=None if ok else reason,
        message=None if ok else message,
    )


def pod_status(
    pod: Pod, obs: PodObservation, now: float, readiness: ReadinessFn = always_ready,
    started: ReadinessFn = always_ready,
) -> PodStatus:
    """The PodStatus a kubelet would report for ``pod`` given the observation (``started``: a running
    container's startup probe, if any, succeeded)."""
    previous = pod.status
    stamp = format_time(now)
    obs = _default_initializing(pod, obs)
    statuses = [container_status(pod, c, obs, readiness) for c in pod.spec.containers]
    init_statuses = [init_container_status(pod, c, obs, readiness, started) for c in pod.spec.initContainers or []]
    phase = pod_phase(pod, statuses, init_statuses)
    not_initialized = initialized(pod, init_statuses, statuses)
    sidecar_names = {c.name for c in pod.spec.initContainers or [] if is_sidecar(c)}
    unready = [s.name for s in init_statuses if s.name in sidecar_names and not s.ready]
    unready += [s.name for s in statuses if not s.ready]
    if phase in ("Succeeded", "Failed"):
        ready_reason, ready_msg = "PodCompleted", None
    else:
        ready_reason, ready_msg = (
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    conditions = [
        _condition("Initialized", not not_initialized, stamp, previous, REASON_NOT_INITIALIZED,
                   f"containers with incomplete status: [{' '.join(not_initialized)}]"),
        _condition("Ready", not unready, stamp, previous, ready_reason, ready_msg),
        _condition("ContainersReady", not unready, stamp, previous, ready_reason, ready_msg),
        _condition("PodScheduled", bool(pod.spec.nodeName), stamp, previous),
    ]
    pod_ip = obs.pod_ip or (previous.podIP if previous else None)
    start = previous.startTime if previous and previous.startTime else stamp
    return PodStatus(
        phase=phase,  # type: ignore[arg-type]
        conditions=conditions,
        hostIP=obs.host_ip,
        podIP=pod_ip,
        podIPs=[PodIP(ip=pod_ip)] if pod_ip else None,
        startTime=start,
        containerStatuses=statuses,
        initContainerStatuses=init_statuses or None,
        qosClass=qos_class(pod),
    )
