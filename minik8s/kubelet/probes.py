"""Readiness, liveness and startup probes with Kubernetes' semantics (the kubelet's prober manager).

One worker record per (pod uid, container, probe kind) of a running container. A scheduler thread
hands due probes to a thread pool, so a slow probe never holds the sync path or another pod's probes;
each result updates the worker's consecutive success/failure run and, once ``successThreshold`` /
``failureThreshold`` is reached, its cached result. A flip calls ``on_change(pod)`` (the kubelet
requeues the pod), so status and restarts follow within a moment.

The runtime feeds the prober what it observed (:meth:`Prober.observe`, which also drops the state of
restarted or exited containers), asks :meth:`Prober.ready` while computing status (the ``ReadinessFn``
hook) and :meth:`Prober.unhealthy` while syncing, to kill containers that failed liveness/startup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from minik8s.api.podutil import long_running
from minik8s.api.types import Container, Pod, Probe
from minik8s.kubelet import status as S
from minik8s.kubelet.backoff import Clock, SystemClock
from minik8s.kubelet.events import WARNING, EventSink, NullSink
from minik8s.kubelet.probe_actions import ProbeTarget

log = logging.getLogger(__name__)

READINESS = "readiness"
LIVENESS = "liveness"
STARTUP = "startup"
#: Kubernetes' defaults for unset Probe fields.
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_INITIAL_DELAY_SECONDS = 0
#: Threads running probes at once; a hung probe holds one for at most its timeout.
DEFAULT_PROBE_WORKERS = 16
#: At most one "Readiness probe failed" event per container this often (they repeat every period).
DEFAULT_READINESS_EVENT_SECONDS = 30.0
#: The scheduler looks at the workers at least this often.
MAX_IDLE_SECONDS = 1.0
THREAD_JOIN_SECONDS = 5.0
REASON_UNHEALTHY = "Unhealthy"


class ProbeRunner(Protocol):
    def run(self, probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
        """(success?, failure message) of one probe attempt; bounded by ``timeout`` seconds."""
        ...


@dataclass
class _Worker:
    uid: str
    kind: str
    probe: Probe
    spec: Container
    container_id: str
    pod: Pod
    pod_ip: str | None
    next_due: float
    #: Cached result: None until a threshold is first reached (liveness starts out healthy).
    result: bool | None = None
    last: bool | None = None
    run: int = 0
    in_flight: bool = False
    #: A liveness/startup failure is being acted on: no more probes of this container instance.
    on_hold: bool = False
    last_event: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.uid, self.spec.name, self.kind)


def _probes(spec: Container) -> list[tuple[str, Probe]]:
    found = [(STARTUP, spec.startupProbe), (READINESS, spec.readinessProbe), (LIVENESS, spec.livenessProbe)]
    return [(kind, probe) for kind, probe in found if probe is not None]


def _positive(value: int | None, default: int) -> int:
    return value if value is not None and value > 0 else default


class Prober:
    """Runs every probe of this node's running containers; thread-safe."""

    def __init__(
        self,
        runner: ProbeRunner,
        on_change: Callable[[Pod], None] | None = None,
        events: EventSink | None = None,
        clock: Clock | None = None,
        executor: Executor | None = None,
        workers: int = DEFAULT_PROBE_WORKERS,
        readiness_event_seconds: float = DEFAULT_READINESS_EVENT_SECONDS,
    ) -> None:
        self.runner = runner
        self.on_change = on_change
        self.events: EventSink = events or NullSink()
        self.clock: Clock = clock or SystemClock()
        self._own_executor = executor is None
        self.executor: Executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self.readiness_event_seconds = readiness_event_seconds
        self._workers: dict[tuple[str, str, str], _Worker] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- hooks for the runtime ---------------------------------------------------------------------

    def observe(self, pod: Pod, obs: S.PodObservation) -> None:
        """Track the probes of ``pod``'s running containers; forget those of restarted or exited ones."""
        uid = pod.metadata.uid or ""
        now = self.clock.now()
        seen: set[tuple[str, str, str]] = set()
        added = False
        with self._lock:
            for spec in long_running(pod):  # sidecars are probed like app containers
                records = obs.containers.get(spec.name) or []
                if not records or not records[0].running:
                    continue
                current = records[0]
                for kind, probe in _probes(spec):
                    key = (uid, spec.name, kind)
                    seen.add(key)
                    w = self._workers.get(key)
                    if w is None or w.container_id != current.id:
                        started = S.parse_time(current.started_at) or now
                        delay = probe.initialDelaySeconds or DEFAULT_INITIAL_DELAY_SECONDS
                        w = _Worker(uid, kind, probe, spec, current.id, pod, obs.pod_ip, started + max(0, delay))
                        if kind == LIVENESS:
                            w.result = True  # Kubernetes: a container is alive until proven otherwise
                        self._workers[key] = w
                        added = True
                    w.pod, w.pod_ip = pod, obs.pod_ip
            for key in [k for k in self._workers if k[0] == uid and k not in seen]:
                del self._workers[key]
        if added:
            self._wake.set()

    def ready(self, pod: Pod, container: str) -> bool:
        """The ``ReadinessFn``: started, and the readiness probe (if any) succeeded."""
        spec = next((c for c in long_running(pod) if c.name == container), None)
        if spec is None:
            return False
        uid = pod.metadata.uid or ""
        with self._lock:
            if not self._started(uid, spec):
                return False
            if spec.readinessProbe is None:
                return True
            w = self._workers.get((uid, container, READINESS))
            return w is not None and w.result is True

    def started(self, pod: Pod, container: str) -> bool:
        """Whether the startup probe (if any) of a running container has succeeded."""
        spec = next((c for c in long_running(pod) if c.name == container), None)
        with self._lock:
            return spec is not None and self._started(pod.metadata.uid or "", spec)

    def unhealthy(self, uid: str, container: str, container_id: str) -> str | None:
        """"liveness" or "startup" when that probe failed for this container instance: kill it."""
        with self._lock:
            for kind in (STARTUP, LIVENESS):
                w = self._workers.get((uid, container, kind))
                if w is not None and w.container_id == container_id and w.result is False:
                    return kind
        return None

    def forget(self, uid: str) -> None:
        """Drop all probe state of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._workers if k[0] == uid]:
                del self._workers[key]

    def _started(self, uid: str, spec: Container) -> bool:
        if spec.startupProbe is None:
            return True
        w = self._workers.get((uid, spec.name, STARTUP))
        return w is not None and w.result is True

    # --- scheduling --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kubelet-prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(THREAD_JOIN_SECONDS)
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delay = self.tick()
            except Exception:
                log.exception("probe scheduling failed")
                delay = MAX_IDLE_SECONDS
            self._wake.wait(delay)

    def tick(self) -> float:
        """Hand every due probe to the executor; returns seconds until the next one is due."""
        now = self.clock.now()
        next_wake = now + MAX_IDLE_SECONDS
        due: list[_Worker] = []
        with self._lock:
            for w in self._workers.values():
                if w.in_flight or w.on_hold:
                    continue
                if w.kind == STARTUP and w.result is True:
                    continue  # a started container is never probed for startup again
                if w.kind != STARTUP and not self._started(w.uid, w.spec):
                    continue  # the startup probe gates the others
                if w.next_due <= now:
                    w.in_flight = True
                    due.append(w)
                else:
                    next_wake = min(next_wake, w.next_due)
        for w in due:
            try:
                self.executor.submit(self._probe, w)
            except RuntimeError:  # the executor was shut down: we are stopping
                with self._lock:
                    w.in_flight = False
        return max(0.0, next_wake - now)

    def _probe(self, w: _Worker) -> None:
        started = self.clock.now()
        timeout = float(_positive(w.probe.timeoutSeconds, DEFAULT_TIMEOUT_SECONDS))
        try:
            ok, message = self.runner.run(w.probe, ProbeTarget(w.pod_ip, w.container_id, w.spec), timeout)
        except Exception as exc:  # a bug or an unexpected runtime error counts as a failed probe
            log.warning(
                "probe errored: %s", exc, extra={"pod": w.pod.name, "container": w.spec.name, "error": str(exc)}
            )
            ok, message = False, f"probe errored: {exc}"
        self.record(w, ok, message, started)

    def record(self, w: _Worker, ok: bool, message: str, started: float) -> None:
        """Count one probe result against the thresholds; on a flip, tell the kubelet."""
        period = _positive(w.probe.periodSeconds, DEFAULT_PERIOD_SECONDS)
        success = _positive(w.probe.successThreshold, DEFAULT_SUCCESS_THRESHOLD)
        failure = _positive(w.probe.failureThreshold, DEFAULT_FAILURE_THRESHOLD)
        now = self.clock.now()
        changed = emit = False
        with self._lock:
            w.in_flight = False
            w.next_due = max(started + period, now)
            if self._workers.get(w.key) is not w:
                return  # the container restarted or the pod went away meanwhile
            if w.last is ok:
                w.run += 1
            else:
                w.last, w.run = ok, 1
            if not ok:
                if w.kind != READINESS:
                    emit = True
                elif w.last_event is None or now - w.last_event >= self.readiness_event_seconds:
                    emit = True
                if emit:
                    w.last_event = now
            if w.run >= (success if ok else failure) and w.result is not ok:
                w.result = ok
                changed = True
                if not ok and w.kind != READINESS:
                    w.on_hold = True  # the runtime kills this instance; its successor gets a new worker
        self._wake.set()
        if emit:
            self.events.event(
                w.pod, WARNING, REASON_UNHEALTHY, f"{w.kind.capitalize()} probe failed: {message}", w.spec.name
            )
        if changed:
            log.info(
                "probe result changed",
                extra={"pod": w.pod.name, "container": w.spec.name, "probe": w.kind, "success": ok},
            )
            if self.on_change is not None:
                self.on_change(w.pod)
