"""Container lifecycle hooks: ``postStart`` right after a container starts, ``preStop`` before it is stopped.

The actions are the probes' (``probe_actions``): ``exec`` through ``docker exec``, ``httpGet`` from the
kubelet's network namespace to the pod IP, plus ``sleep``. A preStop hook must run even where the kubelet
no longer has the pod's spec (an orphan, a pod deleted while the kubelet was down), so it is resolved
(named port, pod IP) when the container is created and kept in a label, as Kubernetes keeps it in an
annotation. Its time comes out of the termination grace period.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

import docker

from minik8s.api.types import Container, HTTPGetAction, HTTPHeader, LifecycleHandler, Pod, Probe
from minik8s.kubelet import labels as L
from minik8s.kubelet.events import WARNING, EventSink
from minik8s.kubelet.probe_actions import DockerExec, ProbeTarget, http_get, resolve_port

log = logging.getLogger(__name__)

#: The resolved preStop handler of a container (JSON), so it runs without the pod's spec.
PRE_STOP_LABEL = "io.kubernetes.container.preStopHandler"
#: The pod IP an httpGet hook without a host goes to (the sandbox's address for the container's life).
POD_IP_LABEL = "io.minik8s.pod.ip"
#: The kubelet always gives a container this long between SIGTERM and SIGKILL after a preStop hook.
MIN_GRACE_SECONDS = 2
#: Kubernetes sets no timeout on a postStart hook; this only keeps a hung one from holding a sync forever.
POST_START_TIMEOUT_SECONDS = 600.0
#: Kubernetes' lifecycle requests carry this User-Agent unless the hook sets one.
USER_AGENT = "kube-lifecycle/minik8s"
#: How ``http_get`` words a response outside 2xx/3xx: a lifecycle hook, unlike a probe, only needs an answer.
HTTP_STATUS_FAILURE_PREFIX = "HTTP probe failed with statuscode"
REASON_FAILED_POST_START = "FailedPostStartHook"
REASON_FAILED_PRE_STOP = "FailedPreStopHook"


def handler_kind(handler: LifecycleHandler) -> str | None:
    """Which action a handler runs ("exec", "httpGet", "sleep"); None for none or tcpSocket (never run)."""
    for kind in ("exec", "httpGet", "sleep"):
        if getattr(handler, kind) is not None:
            return kind
    return None


def remaining_grace(grace: int, elapsed: float) -> int:
    """Seconds left between SIGTERM and SIGKILL after a preStop hook took ``elapsed`` of ``grace``.

    Whole seconds are taken off (as the kubelet does) and at least ``MIN_GRACE_SECONDS`` is left, so a slow
    hook never turns the stop into an immediate SIGKILL.
    """
    return max(MIN_GRACE_SECONDS, grace - int(elapsed))


def resolve_handler(handler: LifecycleHandler, container: Container) -> LifecycleHandler:
    """The handler with a named httpGet port turned into its number (left as is when the name is unknown:
    running the hook then fails with the reason)."""
    action = handler.httpGet
    if action is None or isinstance(action.port, int):
        return handler
    try:
        port: int | str = resolve_port(action.port, container)
    except ValueError:
        port = action.port
    return handler.model_copy(update={"httpGet": action.model_copy(update={"port": port})})


def pre_stop_labels(spec: Container, pod_ip: str | None) -> dict[str, str]:
    """Labels a container is created with so its preStop hook can run from the container alone."""
    handler = spec.lifecycle.preStop if spec.lifecycle is not None else None
    if handler is None:
        return {}
    out = {PRE_STOP_LABEL: json.dumps(resolve_handler(handler, spec).to_dict(), sort_keys=True)}
    if pod_ip:
        out[POD_IP_LABEL] = pod_ip
    return out


def _with_user_agent(action: HTTPGetAction) -> HTTPGetAction:
    headers = list(action.httpHeaders or [])
    if not any(h.name.lower() == "user-agent" for h in headers):
        headers.insert(0, HTTPHeader(name="User-Agent", value=USER_AGENT))
    return action.model_copy(update={"httpHeaders": headers})


class HookActions(Protocol):
    """Runs one handler; returns why it failed, or None."""

    def run(self, handler: LifecycleHandler, target: ProbeTarget, timeout: float) -> str | None: ...


class DockerHookActions:
    """The real :class:`HookActions`: the probes' exec and httpGet, and a bounded sleep."""

    def __init__(self, docker_client: docker.DockerClient, sleep: Callable[[float], None] = time.sleep) -> None:
        self.exec = DockerExec(docker_client)
        self.sleep = sleep

    def run(self, handler: LifecycleHandler, target: ProbeTarget, timeout: float) -> str | None:
        if handler.exec is not None:
            ok, message = self.exec(Probe(exec=handler.exec), target, timeout)
            return None if ok else f"Exec lifecycle hook ({list(handler.exec.command or [])}) failed - error: {message}"
        if handler.httpGet is not None:
            ok, message = http_get(Probe(httpGet=_with_user_agent(handler.httpGet)), target, timeout)
            if ok or message.startswith(HTTP_STATUS_FAILURE_PREFIX):
                return None
            return f"HTTP lifecycle hook ({handler.httpGet.path or '/'}) failed - error: {message}"
        if handler.sleep is not None:
            self.sleep(max(0.0, min(float(handler.sleep.seconds), timeout)))
            return None
        return "lifecycle hook has no runnable handler (exec, httpGet or sleep)"


def _pod_of(labels: dict[str, str]) -> Pod | None:
    """A stand-in Pod (identity only) for events about a container whose pod spec the caller lacks."""
    ref = L.pod_ref_from_labels(labels)
    if ref is None:
        return None
    return Pod.model_validate({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": []},
                               "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid}})


class LifecycleHooks:
    """Runs a container's hooks at the runtime's start and stop points and reports failures as events."""

    def __init__(self, actions: HookActions, events: EventSink,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.actions = actions
        self.events = events
        self.monotonic = monotonic

    def post_start(self, pod: Pod, spec: Container, container_id: str, pod_ip: str | None) -> str | None:
        """Run the postStart hook (if any) and wait for it; returns why it failed (event recorded), or None."""
        handler = spec.lifecycle.postStart if spec.lifecycle is not None else None
        if handler is None:
            return None
        error = self.actions.run(handler, ProbeTarget(pod_ip, container_id, spec), POST_START_TIMEOUT_SECONDS)
        if error is None:
            return None
        message = f'{error} (container "{spec.name}" in pod "{pod.name}")'
        log.warning("postStart hook failed", extra={"pod": pod.name, "container": spec.name, "error": error})
        self.events.event(pod, WARNING, REASON_FAILED_POST_START, message, spec.name)
        return message

    def pre_stop(self, container_id: str, labels: dict[str, str], grace: int) -> int:
        """Run the container's preStop hook (if any) within ``grace``; returns the grace left for SIGTERM.

        Without a hook, or with no grace to spend (a forced stop), ``grace`` is returned unchanged.
        """
        raw = labels.get(PRE_STOP_LABEL)
        if not raw or grace <= 0:
            return grace
        name = labels.get(L.CONTAINER_NAME, "")
        try:
            handler = LifecycleHandler.model_validate(json.loads(raw))
        except ValueError as exc:
            log.warning("unreadable preStop label", extra={"container": name, "error": str(exc)})
            return grace
        target = ProbeTarget(labels.get(POD_IP_LABEL), container_id, Container(name=name))
        started = self.monotonic()
        error = self.actions.run(handler, target, float(grace))
        elapsed = self.monotonic() - started
        if error is not None:
            log.warning("preStop hook failed", extra={"container": name, "container_id": container_id,
                                                      "error": error})
            pod = _pod_of(labels)
            if pod is not None:
                self.events.event(pod, WARNING, REASON_FAILED_PRE_STOP, f"PreStopHook failed: {error}", name)
        return remaining_grace(grace, elapsed)
