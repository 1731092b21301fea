"""Pure computation of a Kubernetes ``PodStatus`` from what Docker reports about a pod.

Nothing here talks to Docker or the API, so phase, conditions and container states are
unit-tested with fake records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

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


def pod_phase(pod: Pod, statuses: list[ContainerStatus]) -> str:
    """Kubernetes' getPhase for pods without init containers."""
    policy = pod.spec.restartPolicy or "Always"
    waiting = running = stopped = succeeded = 0
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
    if waiting > 0:
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


def qos_class(pod: Pod) -> str:
    requests_seen = limits_seen = False
    guaranteed = True
    for c in pod.spec.containers:
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


def pod_status(pod: Pod, obs: PodObservation, now: float, readiness: ReadinessFn = always_ready) -> PodStatus:
    """The PodStatus a kubelet would report for ``pod`` given the observation."""
    previous = pod.status
    stamp = format_time(now)
    statuses = [container_status(pod, c, obs, readiness) for c in pod.spec.containers]
    phase = pod_phase(pod, statuses)
    unready = [s.name for s in statuses if not s.ready]
    if phase in ("Succeeded", "Failed"):
        ready_reason, ready_msg = "PodCompleted", None
    else:
        ready_reason, ready_msg = (
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        )
    conditions = [
        _condition("Initialized", True, stamp, previous),
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
        qosClass=qos_class(pod),
    )
